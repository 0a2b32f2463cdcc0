#!/usr/bin/python3
"""bench/lib/capture_bench.py — the timed part of bench/capture.sh.

    capture_bench.py DISKSWARM SOURCE TMPDIR [--repeat R] [--threads "1 N"] [--cgroup DIR] [--backing FILE]
                     [--baseline BIN]

SOURCE is what gets captured (a loop device or an image file). Every figure is the median of R runs, the kinds
of run interleaved so that load from other jobs on the machine spreads over all of them. For each cache state:

  cold  before every run the page cache of SOURCE (and of --backing, the loop device's file) is dropped with
        posix_fadvise(DONTNEED): only these files, never the whole machine's cache;
  hot   SOURCE was read once just before, so every read comes from the page cache.

it times, as separate processes:

  dd whole      `dd bs=4M` of all of SOURCE: what imaging the whole device costs;
  dd used       `dd bs=4M` of as many bytes as the filesystem uses, from the start: the same byte count as a
                capture, read in one sequential stream;
  read extents  a plain read (1 MiB preads, no hashing) of exactly the extents the capture reads, in the same
                order: the I/O a capture cannot avoid — the baseline for the 90 % target;
  capture -tN   `diskswarm capture SOURCE --threads N` (whole command: scan, hash, write torrent and manifest).

MB/s are over the used bytes (dd whole: over the device size); "vs read" = capture MB/s / read-extents MB/s
under the same cache state; "CPU%" = (user+sys CPU seconds) / wall seconds of that process (200 % = 2 cores).
SHA-1 MB/s (OpenSSL's `openssl speed -evp sha1` on 1 MiB buffers, the same libcrypto diskswarm uses) on 1 thread
and on all threads gives the CPU ceiling: capture ≤ min(read extents, SHA-1 all threads).

--nice N (default -10, root only): niceness of this process and so of every run, as bench/cluster.sh does.
--caches "cold hot": which cache states to measure.
--baseline BIN: also time another diskswarm binary ("baseline -tN" rows), e.g. a build before a change.
--cgroup DIR: a blkio/io cgroup directory (bench/capture.sh --throttle makes one); this process moves itself in,
so every run reads through the same bandwidth limit (an emulated disk).
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def arg(name, default):
    if name in sys.argv:
        i = sys.argv.index(name)
        v = sys.argv[i + 1]
        del sys.argv[i:i + 2]
        return v
    return default


REPEAT = int(arg("--repeat", "3"))
THREADS = arg("--threads", "1 %d" % os.cpu_count()).split()
CGROUP = arg("--cgroup", "")
BASELINE = arg("--baseline", "")
NICE = int(arg("--nice", "-10"))
CACHES = arg("--caches", "cold hot").split()
BACKING = arg("--backing", "")
DS, SRC, TMP = sys.argv[1:4]


def load():
    return "%.2f %.2f %.2f" % os.getloadavg()


def src_size(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def drop(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def drop_all():
    drop(SRC)
    if BACKING:
        drop(BACKING)


def timed(cmd):
    """Run cmd; (wall seconds, CPU seconds of the child, stdout)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit("failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), p.stderr.decode(errors="replace")))
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, p.stdout.decode()


def read_extents(extents):
    """Plain read of the extents in order, 1 MiB preads into one buffer: (wall, CPU) of this process."""
    buf = bytearray(1 << 20)
    mv = memoryview(buf)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    fd = os.open(SRC, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    try:
        for off, length in extents:
            while length:
                n = os.preadv(fd, [mv[:min(length, len(buf))]], off)
                if n <= 0:
                    sys.exit("short read at %d" % off)
                off += n
                length -= n
    finally:
        os.close(fd)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def torrent_extents(torrent):
    """(device offset, length) of an Ezio torrent's files, in torrent order (the order capture reads)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lib"))
    from dstool import bdecode  # pylint: disable=import-outside-toplevel
    t, _ = bdecode(open(torrent, "rb").read())
    info = t[b"info"]
    return [(int(f[b"path"][-1], 16), f[b"length"]) for f in info[b"files"]]


def sha1_speed(multi):
    cmd = ["openssl", "speed", "-elapsed", "-evp", "sha1", "-bytes", "1048576", "-seconds", "2"]
    if multi > 1:
        cmd += ["-multi", str(multi)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout.decode()
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] == "sha1" and f[-1].endswith("k"):
            return float(f[-1][:-1]) * 1000 / 1e6
    sys.exit("cannot parse openssl speed output")


def main():
    if NICE and os.geteuid() == 0:
        os.nice(NICE)  # every run inherits it: other people's jobs at nice 0 disturb the figures less
    if CGROUP:
        with open(os.path.join(CGROUP, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    size = src_size(SRC)
    out = os.path.join(TMP, "cap")
    # one capture to learn the extents and the used byte count (also checks the binary works)
    subprocess.run([DS, "capture", SRC, "-o", out, "--name", "bench", "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    used = manifest["partitions"][0]["used_bytes"]
    extents = torrent_extents(os.path.join(out, "bench.torrent"))
    assert sum(l for _, l in extents) == used
    info_hash = manifest["torrents"][0]["info_hash"]
    ncpu = os.cpu_count()
    print("source %s: %d MiB, %d MiB used in %d extents; %d CPUs; nice %d; load %s%s" %
          (SRC, size >> 20, used >> 20, len(extents), ncpu, os.nice(0), load(),
           "; reads limited by the cgroup %s" % CGROUP if CGROUP else ""))

    sha = {1: [], ncpu: []}
    for _ in range(REPEAT):
        for n in sha:
            sha[n].append(sha1_speed(n))
    s1, sn = statistics.median(sha[1]), statistics.median(sha[ncpu])
    print("SHA-1 (openssl speed, 1 MiB buffers): %.0f MB/s on 1 thread, %.0f MB/s on %d threads (%.0f MB/s per core)"
          % (s1, sn, ncpu, sn / ncpu))

    dd_blocks = (used + (4 << 20) - 1) >> 22
    runs = [("dd whole", ["dd", "if=" + SRC, "of=/dev/null", "bs=4M", "status=none"], size),
            ("dd used", ["dd", "if=" + SRC, "of=/dev/null", "bs=4M", "count=%d" % dd_blocks, "status=none"],
             dd_blocks << 22),
            ("read extents", None, used)]
    for t in THREADS:
        runs.append(("capture -t%s" % t, [DS, "capture", SRC, "-o", out, "--name", "bench", "--threads", t,
                                           "--json", "--quiet"], used))
    if BASELINE:
        for t in THREADS:
            runs.append(("baseline -t%s" % t, [BASELINE, "capture", SRC, "-o", out, "--name", "bench", "--threads",
                                                t, "--json", "--quiet"], used))
    print("\n%-5s %-14s %9s %9s %6s %8s %9s  %s" % ("cache", "what", "MB/s", "seconds", "CPU%", "vs read",
                                                   "hash MB/s", "(median of %d; min-max MB/s)" % REPEAT))
    for cache in CACHES:
        res = {name: [] for name, _, _ in runs}
        for _ in range(REPEAT):
            for name, cmd, nbytes in runs:
                if cache == "cold":
                    drop_all()
                else:
                    subprocess.run(["dd", "if=" + SRC, "of=/dev/null", "bs=4M", "status=none"], check=True)
                hash_mbps = None
                if cmd is None:
                    wall, cpu = read_extents(extents)
                else:
                    wall, cpu, stdout = timed(cmd)
                    for line in stdout.splitlines():
                        o = json.loads(line)
                        if o.get("type") == "torrent" and o["info_hash"] != info_hash:
                            sys.exit("info-hash differs with %s: %s vs %s" % (name, o["info_hash"], info_hash))
                        if o.get("type") == "done":
                            hash_mbps = o["mbps"]
                res[name].append((nbytes / 1e6 / wall, wall, 100 * cpu / wall, hash_mbps))
        base = statistics.median(r[0] for r in res["read extents"])
        for name, _, _ in runs:
            r = res[name]
            mbps = statistics.median(x[0] for x in r)
            hm = [x[3] for x in r if x[3] is not None]
            print("%-5s %-14s %9.0f %9.3f %6.0f %7.0f%% %9s  %.0f-%.0f" %
                  (cache, name, mbps, statistics.median(x[1] for x in r), statistics.median(x[2] for x in r),
                   100 * mbps / base, "%.0f" % statistics.median(hm) if hm else "-",
                   min(x[0] for x in r), max(x[0] for x in r)))
        ceiling = min(base, sn)
        best = max(statistics.median(x[0] for x in res["capture -t%s" % t]) for t in THREADS)
        print("%-5s ceiling min(read %.0f, SHA-1 x%d %.0f) = %.0f MB/s (%s-bound); best capture %.0f MB/s = %.0f %% "
              "of it; load %s" % (cache, base, ncpu, sn, ceiling, "I/O" if base < sn else "CPU", best,
                                  100 * best / ceiling, load()))
    print("info-hash %s identical in every run" % info_hash)


main()
