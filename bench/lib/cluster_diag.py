#!/usr/bin/python3
"""bench/lib/cluster_diag.py RESULTS.jsonl [METHOD-PREFIX]

Diagnosis of swarm runs from bench/cluster.sh logs (timeline.csv: per-link byte counters every 0.25 s;
flows.json with --diag: bytes each node sent to each other node; mN.out: diskswarm JSON progress):
  - how much the server sent (in images: 1.00 = each byte once) and when its uplink was busy
  - how busy the machines' uplinks were, per second (sum over machines / (N * RATE))
  - when the first and the last machine finished (tail), and how long the last 5 % took
  - per-node download rate timeline (1-s buckets) for the slowest node
"""
import csv
import json
import os
import sys


def load_timeline(path):
    with open(path) as f:
        r = csv.reader(f)
        hdr = next(r)
        rows = [[float(x) for x in row] for row in r]
    return hdr, rows


def buckets(rows, col, width=1.0):
    """bytes per bucket of `width` seconds for counter column col"""
    out = []
    j = 0
    t = width
    start_val = rows[0][col]
    while j < len(rows) and t <= rows[-1][0] + width:
        k = j
        while k < len(rows) and rows[k][0] < t:
            k += 1
        v = rows[min(k, len(rows) - 1)][col]
        out.append(v - start_val)
        start_val = v
        j = k
        t += width
    return out


def main():
    res = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    prefix = sys.argv[2] if len(sys.argv) > 2 else "diskswarm"
    for r in res:
        if not r["method"].startswith(prefix) and prefix != "all":
            continue
        n = r["n"]
        tl = os.path.join(r["logdir"], "timeline.csv")
        if not os.path.exists(tl):
            continue
        hdr, rows = load_timeline(tl)
        rate_Bps = r["rate_bps"] / 8
        U = r["used"]
        total = r["seconds"] or rows[-1][0]
        up0 = hdr.index("up0")
        down1 = hdr.index("down1")
        print("=== %s N=%d: %.2f s = %.3fx limit (%.2f s)" % (r["method"], n, total, r["ratio"] or 0, r["limit"]))
        srv = buckets(rows, up0)
        nb = int(total) + 1
        srv = srv[:nb]
        print("  server sent %.2f images on the wire (%.1f MiB); uplink use per second (%% of RATE): %s" % (
            r["server_up_bytes"] / U, r["server_up_bytes"] / 1048576,
            " ".join("%d" % (100 * b / rate_Bps) for b in srv)))
        if n > 1:
            peers = [buckets(rows, up0 + i) for i in range(1, n + 1)]
            agg = [sum(p[s] for p in peers if s < len(p)) for s in range(nb)]
            print("  machines' uplinks, sum / (N*RATE) per second (%%): %s" % (
                " ".join("%d" % (100 * b / (n * rate_Bps)) for b in agg)))
            print("  machines sent %.2f images in all (%.2f per machine)" % (
                r["peers_up_bytes"] / U, r["peers_up_bytes"] / U / n))
        dt = r.get("done_times", {})
        if dt:
            ts = sorted(dt.values())
            print("  first machine done %.2f s, median %.2f s, last %.2f s" % (ts[0], ts[len(ts) // 2], ts[-1]))
        # the slowest machine: its download per second and when it reached 95 %
        if dt:
            slow = max(dt, key=lambda k: dt[k])
            col = down1 + int(slow) - 1
            d = buckets(rows, col)[:nb]
            print("  slowest (m%s) download per second (%% of RATE): %s" % (
                slow, " ".join("%d" % (100 * b / rate_Bps) for b in d)))
            t95 = None
            try:
                for line in open(os.path.join(r["logdir"], "m%s.out" % slow)):
                    if line.startswith("{"):
                        e = json.loads(line)
                        if e.get("type") == "progress" and e.get("percent", 0) >= 95 and t95 is None:
                            t95 = e["t"]
            except (OSError, ValueError):
                pass
            if t95 is not None:
                print("  slowest machine reached 95 %% at %.1f s (its clock), done at %.2f s: last 5 %% took %.1f s" % (
                    t95, dt[slow], dt[slow] - t95))
        fl = os.path.join(r["logdir"], "flows.json")
        if os.path.exists(fl):
            m = json.load(open(fl))
            from_srv = sum(v for k, v in m.items() if k.startswith("0->"))
            p2p = sum(v for k, v in m.items() if not k.startswith("0->") and not k.endswith("->0"))
            print("  TCP bytes (ss): server->machines %.1f MiB, machine->machine %.1f MiB" % (
                from_srv / 1048576, p2p / 1048576))
            for i in range(1, min(n, 4) + 1):
                row = [m.get("%d->%d" % (j, i), 0) / 1048576 for j in range(0, n + 1)]
                print("    m%d received from [srv, m1..]: %s" % (i, " ".join("%.0f" % x for x in row)))
        print()


if __name__ == "__main__":
    main()
