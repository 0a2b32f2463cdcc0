#!/usr/bin/python3
"""bench/lib/cluster_run.py — one timed run of bench/cluster.sh: METHOD to N machines.

Called by bench/cluster.sh once per (method, N) with the JSON config it wrote (namespaces, addresses,
interfaces, image paths, rate).  The network (bridge, namespaces, shaped veths) already exists; this
script starts the server side, waits until it is ready, starts the N receivers at t0, waits (bounded)
until every receiver has the whole image, stops everything it started, checks every target (outside
the timed part) and appends one JSON result line to CONFIG['results'].

While the run goes it samples, every SAMPLE_S:
  /proc/stat                       system CPU busy % (all cores)
  bridge-side veth counters        tx = bytes towards a machine (its download), rx = its upload
and with --diag also `ss -tin` in every machine namespace (bytes each TCP connection delivered), so the
diskswarm diagnosis can tell who sent how much to whom.  The timeline goes to LOGDIR/timeline.csv.

Completion per machine:
  diskswarm  the fetcher's {"type":"complete"} JSON line (every piece SHA-1 verified on the target);
             its "seconds" field plus the fetcher's launch offset from t0
  unicast    curl exits 0 (then the file is compared with the packed image, untimed)
  udpcast    udp-receiver exits 0 (then compared, untimed)
  aria2      aria2c's --on-bt-download-complete hook (aria2c hash-checks every piece), then compared

Every wait is bounded by CONFIG timeout; every process is started in its own session and killed
(TERM, then KILL) in a finally block.
"""
import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time

SAMPLE_S = 0.25
# every process of a run gets this niceness (bench/cluster.sh --nice, default -10): on a shared machine, other
# people's jobs at nice 0 then disturb the runs less (they still show in the CPU and bg% columns)
NICE = int(os.environ.get("CLUSTER_NICE", "-10"))


def log(*a):
    print("[cluster]", *a, file=sys.stderr, flush=True)


class Procs:
    """Processes started by this run; all stopped in stop_all()."""

    def __init__(self):
        self.procs = []

    def start(self, ns, argv, out, err=None, cwd=None, timeout=None):
        cmd = []
        if ns:
            cmd += ["ip", "netns", "exec", ns]
        if NICE:
            cmd += ["nice", "-n", str(NICE)]
        if timeout:
            cmd += ["timeout", "-k", "5", str(int(timeout))]
        cmd += argv
        fo = open(out, "wb")
        fe = open(err, "wb") if err else subprocess.STDOUT
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, cwd=cwd,
                             start_new_session=True)
        fo.close()
        if err:
            fe.close()
        p.t_launch = time.monotonic()
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for p in self.procs:
            while p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v[:8]), idle


def read_counter(iface, what):
    try:
        with open(f"/sys/class/net/{iface}/statistics/{what}") as f:
            return int(f.read())
    except OSError:
        return 0


SS_RE = re.compile(r"^\S+\s+\d+\s+\d+\s+(\S+):(\d+)\s+(\S+):(\d+)")


class Sampler(threading.Thread):
    def __init__(self, cfg, n, diag):
        super().__init__(daemon=True)
        self.cfg, self.n, self.diag = cfg, n, diag
        self.rows = []
        self.stop_ev = threading.Event()
        self.t0 = None
        # ss: (src_node, local_port, peer_ip, peer_port) -> max bytes_acked seen (bytes this node sent)
        self.flows = {}
        self.last_ss = 0.0

    def snapshot(self):
        tot, idle = cpu_times()
        ifs = self.cfg["veths"][: self.n + 1]
        return (time.monotonic(), tot, idle, [read_counter(i, "tx_bytes") for i in ifs],
                [read_counter(i, "rx_bytes") for i in ifs])

    def sample_ss(self):
        for i in range(self.n + 1):
            ns = self.cfg["netns"][i]
            try:
                out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Htin", "state", "established"],
                                     capture_output=True, text=True, timeout=5).stdout
            except subprocess.TimeoutExpired:
                continue
            key = None
            for line in out.splitlines():
                m = re.match(r"^\s*\d+\s+\d+\s+(\S+):(\d+)\s+(\S+):(\d+)", line)
                if m:
                    key = (i, int(m.group(2)), m.group(3), int(m.group(4)))
                    continue
                if key:
                    m = re.search(r"bytes_acked:(\d+)", line)
                    if m:
                        self.flows[key] = max(self.flows.get(key, 0), int(m.group(1)))
                    key = None

    def ss_loop(self):
        # in its own thread: ~N+1 `ip netns exec ss` per second must not delay the counter samples
        while not self.stop_ev.is_set():
            t = time.monotonic()
            self.sample_ss()
            self.stop_ev.wait(max(0.0, 1.0 - (time.monotonic() - t)))

    def run(self):
        ss_thread = None
        if self.diag:
            ss_thread = threading.Thread(target=self.ss_loop, daemon=True)
            ss_thread.start()
        while not self.stop_ev.is_set():
            self.rows.append(self.snapshot())
            self.stop_ev.wait(SAMPLE_S)
        if ss_thread:
            ss_thread.join(30)

    def stop(self):
        self.stop_ev.set()
        self.join(40)
        self.rows.append(self.snapshot())
        if self.diag:
            self.sample_ss()


def sha256_file(path, chunk=4 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha256_dir(d):
    """sha256 of the Ezio directory's files concatenated in offset order (= the packed image)."""
    h = hashlib.sha256()
    names = sorted(os.listdir(d))
    for name in names:
        with open(os.path.join(d, name), "rb") as f:
            while True:
                b = f.read(4 << 20)
                if not b:
                    break
                h.update(b)
    return h.hexdigest(), len(names)


def wait_listen(ns, port, secs, proc=None):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}"],
                             capture_output=True, text=True).stdout
        if out.strip():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def wait_file_re(path, regex, secs, proc=None):
    deadline = time.monotonic() + secs
    r = re.compile(regex)
    while time.monotonic() < deadline:
        try:
            with open(path, errors="replace") as f:
                if r.search(f.read()):
                    return True
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def json_events(path):
    ev = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        ev.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    return ev


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("method")  # diskswarm | diskswarm-tracker | unicast | udpcast | aria2
    ap.add_argument("n", type=int)
    ap.add_argument("--piece", default="")  # diskswarm piece size label (torrent key in config)
    ap.add_argument("--diag", action="store_true")
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    cfg = json.load(open(a.config))
    n, method = a.n, a.method
    label = a.label or method
    logdir = os.path.join(cfg["logdir"], f"{label}-n{n}")
    os.makedirs(logdir, exist_ok=True)
    work = os.path.join(cfg["work"], "run")
    subprocess.run(["rm", "-rf", work], check=True)
    os.makedirs(work)
    ns, addr = cfg["netns"], cfg["addrs"]
    limit_s = cfg["used"] * 8 / cfg["rate_bps"]
    expect = limit_s * (n if method == "unicast" else 1)
    timeout = max(60.0, 4 * expect + 30)
    ds = cfg["diskswarm"]
    procs = Procs()
    sampler = Sampler(cfg, n, a.diag)
    done_at = {}  # node -> seconds after t0
    clients = {}
    notes = []
    result = {"method": label, "n": n, "ok": False}
    bg = 0.0
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        piece = a.piece or cfg["default_piece"]
        # ---------------- server side ----------------
        plain = method == "diskswarm-plain"  # no compressed pieces on the wire, seed from the raw image
        if plain:
            method = "diskswarm"
        zargs = ["--no-wire-compress"] if plain else []
        if method in ("diskswarm", "diskswarm-tracker", "diskswarm-mesh"):
            tkey = ("trk-" if method == "diskswarm-tracker" else "pex-") + piece
            torrent = cfg["torrents"][tkey]
            if method == "diskswarm-tracker":
                tr = procs.start(ns[0], [ds, "tracker", "--listen", f"{addr[0]}:6970", "--torrent", torrent,
                                         "--interval", "30", "--min-interval", "2"],
                                 os.path.join(logdir, "tracker.out"), timeout=timeout + 60)
                if not wait_listen(ns[0], 6970, 15, tr):
                    raise RuntimeError("diskswarm tracker did not start")
            src = cfg["image"] if plain else cfg.get("seed_from", {}).get(piece, cfg["image"])
            # --super-seed: what `diskswarm serve` does by default (each piece leaves the server about once)
            argv = [ds, "seed", torrent, "--from", src, "--listen", f"{addr[0]}:6881", "--expect", str(n),
                    "--json", "--seed-time", str(int(timeout + 30)), "--super-seed"] + zargs
            if src != cfg["image"]:
                notes.append("seed from " + os.path.basename(src) + " (" + cfg.get("compress", "") + ")")
            if method != "diskswarm-tracker":
                argv.append("--no-tracker")
            argv += os.environ.get("CLUSTER_SEED_ARGS", "").split()
            srv = procs.start(ns[0], argv, os.path.join(logdir, "server.out"), os.path.join(logdir, "server.err"),
                              timeout=timeout + 60)
            if not wait_listen(ns[0], 6881, 15, srv):
                raise RuntimeError("diskswarm seed did not start")
        elif method == "unicast":
            srv = procs.start(ns[0], ["/usr/bin/python3", "-m", "http.server", "--bind", addr[0], "8000",
                                      "--directory", os.path.dirname(cfg["packed"])],
                              os.path.join(logdir, "server.out"), timeout=timeout + 60)
            if not wait_listen(ns[0], 8000, 15, srv):
                raise RuntimeError("http.server did not start")
        elif method == "aria2":
            otd = os.path.join(work, "opentracker")
            os.makedirs(otd)
            os.chmod(otd, 0o755)
            with open(os.path.join(otd, "whitelist"), "w") as f:
                f.write(cfg["aria2_infohash"] + "\n")
            ot = procs.start(ns[0], ["opentracker", "-i", addr[0], "-p", "6969", "-P", "6969", "-d", otd,
                                     "-w", "whitelist", "-u", "nobody"], os.path.join(logdir, "opentracker.out"),
                             timeout=timeout + 60)
            if not wait_listen(ns[0], 6969, 15, ot):
                raise RuntimeError("opentracker did not start")
            time.sleep(1.0)  # it loads the whitelist in a thread after start
            srv = procs.start(ns[0], ["aria2c"] + cfg["aria2_opts"] + [
                "-V", "--seed-ratio=0.0", "--bt-seed-unverified=false", f"--dir={cfg['ezio_dir']}",
                "--listen-port=6881", f"--bt-external-ip={addr[0]}", cfg["torrents"]["aria2"]],
                os.path.join(logdir, "server.out"), timeout=timeout + 60)
            if not wait_file_re(os.path.join(logdir, "server.out"), r"Verification finished successfully|"
                                r"SEED\(", 60, srv) or not wait_listen(ns[0], 6881, 15, srv):
                raise RuntimeError("aria2c seeder did not verify/listen")
            time.sleep(1.5)  # first announce of the seeder
        elif method == "udpcast":
            pass  # the sender starts after the receivers
        else:
            raise SystemExit(f"unknown method {method}")

        # ---------------- receivers ----------------
        # background load (other work on this machine) over 1 s before t0
        b0 = cpu_times()
        time.sleep(1.0)
        b1 = cpu_times()
        bg = 100.0 * ((b1[0] - b0[0]) - (b1[1] - b0[1])) / max(1, b1[0] - b0[0])
        sampler.start()
        t0 = time.monotonic()
        t0_wall = time.time()
        if method == "udpcast":
            for i in range(1, n + 1):
                tgt = os.path.join(work, f"m{i}.img")
                clients[i] = procs.start(ns[i], ["udp-receiver", "--file", tgt, "--nokbd", "--interface", "eth0"],
                                         os.path.join(logdir, f"m{i}.out"), timeout=timeout)
            mbr = cfg["udpcast_bitrate"]
            argv = ["udp-sender", "--file", cfg["packed"], "--nokbd", "--min-receivers", str(n), "--interface",
                    "eth0", "--full-duplex", "--max-bitrate", mbr, "--max-wait", str(int(timeout))]
            srv = procs.start(ns[0], argv, os.path.join(logdir, "server.out"), timeout=timeout + 30)
            notes.append(f"udp-sender --max-bitrate {mbr} --full-duplex")
        for i in range(1, n + 1) if method != "udpcast" else []:
            if method.startswith("diskswarm"):
                tgt = os.path.join(work, f"m{i}.img")
                with open(tgt, "wb") as f:
                    f.truncate(cfg["image_size"])
                argv = [ds, "fetch", torrent, "--to", tgt, "--listen", f"{addr[i]}:6881", "--expect", str(n),
                        "--json", "--seed-time", str(int(timeout))] + zargs
                if method != "diskswarm-tracker":
                    argv += ["--no-tracker", "--peer", f"{addr[0]}:6881"]
                if method == "diskswarm-mesh":  # every other machine too: no wait for PEX
                    for j in range(1, n + 1):
                        if j != i:
                            argv += ["--peer", f"{addr[j]}:6881"]
                argv += os.environ.get("CLUSTER_FETCH_ARGS", "").split()
                clients[i] = procs.start(ns[i], argv, os.path.join(logdir, f"m{i}.out"),
                                         os.path.join(logdir, f"m{i}.err"), timeout=timeout)
            elif method == "unicast":
                tgt = os.path.join(work, f"m{i}.img")
                clients[i] = procs.start(ns[i], ["curl", "-sS", "--fail", "-o", tgt, "--max-time", str(int(timeout)),
                                                 f"http://{addr[0]}:8000/{os.path.basename(cfg['packed'])}"],
                                         os.path.join(logdir, f"m{i}.out"), timeout=timeout)
            elif method == "aria2":
                d = os.path.join(work, f"m{i}")
                os.makedirs(d)
                hook = os.path.join(work, f"m{i}.hook")
                with open(hook, "w") as f:
                    f.write(f"#!/bin/sh\ndate +%s.%N > {work}/m{i}.done\n")
                os.chmod(hook, 0o755)
                clients[i] = procs.start(ns[i], ["aria2c"] + cfg["aria2_opts"] + [
                    f"--dir={d}", "--listen-port=6881", f"--bt-external-ip={addr[i]}",
                    "--seed-ratio=0.0", f"--seed-time={int(timeout / 60) + 2}",
                    f"--on-bt-download-complete={hook}", cfg["torrents"]["aria2"]],
                    os.path.join(logdir, f"m{i}.out"), timeout=timeout)

        if clients:
            log(f"receivers launched {min(p.t_launch for p in clients.values()) - t0:.3f}.."
                f"{max(p.t_launch for p in clients.values()) - t0:.3f} s after t0")
        # ---------------- wait (bounded) ----------------
        deadline = t0 + timeout
        failed = {}
        while time.monotonic() < deadline and len(done_at) + len(failed) < n:
            for i, p in clients.items():
                if i in done_at or i in failed:
                    continue
                if method.startswith("diskswarm"):
                    for e in json_events(os.path.join(logdir, f"m{i}.out")):
                        if e.get("type") == "complete":
                            done_at[i] = p.t_launch - t0 + float(e.get("seconds", 0))
                            break
                    if i not in done_at and p.poll() is not None:
                        failed[i] = f"exit {p.returncode}"
                elif method == "aria2":
                    try:
                        with open(f"{work}/m{i}.done") as f:
                            done_at[i] = float(f.read().strip()) - t0_wall
                    except (OSError, ValueError):
                        if p.poll() is not None:
                            failed[i] = f"exit {p.returncode}"
                else:
                    rc = p.poll()
                    if rc is not None:
                        if rc == 0:
                            done_at[i] = time.monotonic() - t0
                        else:
                            failed[i] = f"exit {rc}"
            time.sleep(0.05)
        t_end = time.monotonic()
        sampler.stop()
        if len(done_at) < n:
            notes.append(f"{n - len(done_at)} of {n} not done ({failed or 'timeout'}) after {t_end - t0:.0f}s")
        # diskswarm: let the swarm end by itself (--expect) for its server/upload statistics
        if method.startswith("diskswarm"):
            end_by = time.monotonic() + 15
            while time.monotonic() < end_by and any(p.poll() is None for p in [srv] + list(clients.values())):
                time.sleep(0.1)
    finally:
        if sampler.is_alive():
            sampler.stop()
        procs.stop_all()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)

    # ---------------- results ----------------
    rows = sampler.rows
    total = max(done_at.values()) if len(done_at) == n else None
    # CPU busy over [t0, t0 + total] (or the whole sampled span)
    tend = rows[0][0] + (total if total else rows[-1][0] - rows[0][0])
    first = rows[0]
    last = next((r for r in rows if r[0] >= tend - 1e-6), rows[-1])
    dtot, didle = last[1] - first[1], last[2] - first[2]
    cpu = 100.0 * (dtot - didle) / dtot if dtot > 0 else 0.0
    # peak 1-s CPU
    peak = 0.0
    for j in range(len(rows)):
        k = j
        while k < len(rows) and rows[k][0] - rows[j][0] < 1.0:
            k += 1
        if k < len(rows) and rows[k][0] <= tend + 0.5:
            dt, di = rows[k][1] - rows[j][1], rows[k][2] - rows[j][2]
            if dt > 0:
                peak = max(peak, 100.0 * (dt - di) / dt)
    with open(os.path.join(logdir, "timeline.csv"), "w") as f:
        hdr = ["t", "cpu_total", "cpu_idle"] + [f"down{i}" for i in range(n + 1)] + [f"up{i}" for i in range(n + 1)]
        f.write(",".join(hdr) + "\n")
        for r in rows:
            f.write(",".join([f"{r[0] - first[0]:.3f}", str(r[1]), str(r[2])] + [str(x) for x in r[3]] +
                             [str(x) for x in r[4]]) + "\n")
    up_bytes = [last[4][i] - first[4][i] for i in range(n + 1)]
    if a.diag and sampler.flows:
        ip2node = {addr[i]: i for i in range(n + 1)}
        mat = {}
        for (src, lport, pip, pport), b in sampler.flows.items():
            dst = ip2node.get(pip)
            if dst is not None:
                mat[f"{src}->{dst}"] = mat.get(f"{src}->{dst}", 0) + b
        with open(os.path.join(logdir, "flows.json"), "w") as f:
            json.dump(mat, f)

    # check every target (untimed)
    checked = 0
    bad = []
    for i in sorted(done_at):
        if method.startswith("diskswarm"):
            r = subprocess.run([ds, "verify", torrent, os.path.join(work, f"m{i}.img")], capture_output=True)
            ok = r.returncode == 0
        elif method == "aria2":
            h, nf = sha256_dir(os.path.join(work, f"m{i}", cfg["name"]))
            ok = h == cfg["packed_sha256"]
        else:
            ok = sha256_file(os.path.join(work, f"m{i}.img")) == cfg["packed_sha256"]
        checked += 1
        if not ok:
            bad.append(i)
    if bad:
        notes.append(f"targets {bad} differ from the image")
    result.update({
        "ok": total is not None and not bad,
        "seconds": round(total, 2) if total else None,
        "first_done": round(min(done_at.values()), 2) if done_at else None,
        "limit": round(limit_s, 2),
        "ratio": round(total / limit_s, 3) if total else None,
        "cpu": round(cpu, 1),
        "cpu_peak1s": round(peak, 1),
        "proc_cpu_s": round(proc_cpu, 1),
        "bg_cpu": round(bg, 1),
        "done_times": {str(k): round(v, 2) for k, v in sorted(done_at.items())},
        "server_up_bytes": up_bytes[0],
        "peers_up_bytes": sum(up_bytes[1:]),
        "used": cfg["used"],
        "rate_bps": cfg["rate_bps"],
        "piece": piece if method.startswith("diskswarm") or method == "aria2" else "",
        "checked": checked,
        "notes": "; ".join(notes),
        "logdir": logdir,
    })
    if method.startswith("diskswarm"):
        for e in json_events(os.path.join(logdir, "server.out")):
            if e.get("type") == "done":
                result["seed_uploaded"] = e.get("uploaded")
                result["seed_wire_up"] = e.get("wire_up")
        # bytes on the wire vs payload over all machines, and the decompression speed they saw
        wd = pd = zd = 0
        dec_s = 0.0
        for i in range(1, n + 1):
            for e in json_events(os.path.join(logdir, f"m{i}.out")):
                if e.get("type") == "done":
                    wd += e.get("wire_down") or 0
                    pd += e.get("downloaded") or 0
                    zd += e.get("zpieces_down") or 0
                    dec_s += e.get("zdecomp_cpu_s") or 0
        if pd:
            result["wire_ratio"] = round(wd / pd, 3)
            result["zpieces_down"] = zd
            if dec_s > 0:
                result["decomp_mbps"] = round(pd / 1e6 / dec_s)
    with open(cfg["results"], "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result))
    subprocess.run(["rm", "-rf", work])
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
