#!/usr/bin/python3
"""bench/cluster_plot.py RESULTS.jsonl OUTDIR [--rate RATE] [--extents N]

Table (method x N: seconds, ratio to the physical limit U*8/RATE, CPU %) on stdout, OUTDIR/results.csv and
OUTDIR/cluster.png (time vs N per method, with the limit as a line).  Run by bench/cluster.sh; can be rerun
on a kept results.jsonl.
"""
import argparse
import json
import os

CPU_BOUND = 85.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("out")
    ap.add_argument("--rate", default="")
    ap.add_argument("--extents", default="")
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.results) if l.strip().startswith("{")]
    if not rows:
        print("no results")
        return 1
    used = rows[0]["used"]
    limit = rows[0]["limit"]
    rate = rows[0]["rate_bps"]
    methods = []
    for r in rows:
        if r["method"] not in methods:
            methods.append(r["method"])
    ns = sorted({r["n"] for r in rows})
    print()
    print("image: %.1f MiB used%s, every link %s (%.0f Mbit/s); physical limit U*8/RATE = %.2f s" % (
        used / 1048576, " in %s extents" % a.extents if a.extents else "", a.rate or "", rate / 1e6, limit))
    print("TCP over 1500-byte frames carries at most 1448/1514 of the link rate: the floor for TCP methods is "
          "about %.3fx the limit" % (1514 / 1448))
    print()
    print("CPU%: system-wide busy over the run (all cores, includes other work on the machine); bg%: the same "
          "over 1 s just before the run; own: CPU-seconds of the run's processes")
    hdr = "%-22s %4s %9s %7s %6s %6s %5s %6s  %s" % ("method", "N", "seconds", "ratio", "CPU%", "peak%", "bg%",
                                                     "own s", "notes")
    print(hdr)
    print("-" * len(hdr))
    for m in methods:
        for r in sorted((r for r in rows if r["method"] == m), key=lambda r: r["n"]):
            notes = []
            if r["cpu"] > CPU_BOUND:
                notes.append("CPU-bound")
                if r.get("bg_cpu", 0) > 50:
                    notes.append("machine already busy before the run (bg %.0f%%)" % r["bg_cpu"])
            if not r["ok"]:
                notes.append("FAILED")
            if r.get("notes"):
                notes.append(r["notes"])
            print("%-22s %4d %9s %7s %6.1f %6.1f %5.0f %6.1f  %s" % (
                m, r["n"], "%.2f" % r["seconds"] if r["seconds"] else "-",
                "%.3f" % r["ratio"] if r["ratio"] else "-", r["cpu"], r.get("cpu_peak1s", 0), r.get("bg_cpu", 0),
                r.get("proc_cpu_s", 0), "; ".join(notes)))
    print()
    os.makedirs(a.out, exist_ok=True)
    csv = os.path.join(a.out, "results.csv")
    with open(csv, "w") as f:
        f.write("method,n,seconds,limit_s,ratio,cpu_pct,cpu_peak1s_pct,proc_cpu_s,cpu_bound,ok,first_done_s,"
                "server_up_bytes,peers_up_bytes,used_bytes,rate_bps,piece,notes\n")
        for r in rows:
            f.write(",".join(str(x) for x in [
                r["method"], r["n"], r["seconds"] or "", r["limit"], r["ratio"] or "", r["cpu"],
                r.get("cpu_peak1s", ""), r.get("bg_cpu", ""), r.get("proc_cpu_s", ""), int(r["cpu"] > CPU_BOUND), int(r["ok"]),
                r.get("first_done") or "", r.get("server_up_bytes", ""), r.get("peers_up_bytes", ""), r["used"],
                r["rate_bps"], r.get("piece", ""), '"%s"' % r.get("notes", "").replace('"', "'")]) + "\n")
    print("csv:  " + csv)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: no plot")
        return 0
    fig, ax = plt.subplots(figsize=(8, 5.5))
    marks = "os^vDxP*"
    for k, m in enumerate(methods):
        pts = sorted(((r["n"], r["seconds"]) for r in rows if r["method"] == m and r["seconds"]), key=lambda x: x[0])
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marks[k % len(marks)], label=m)
        for r in rows:
            if r["method"] == m and r["seconds"] and r["cpu"] > CPU_BOUND:
                ax.annotate("CPU", (r["n"], r["seconds"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(limit, color="k", ls="--", lw=1, label="limit U·8/RATE = %.1f s" % limit)
    ax.axhline(limit * 1.10, color="gray", ls=":", lw=1, label="1.10 × limit")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator
    fmt = FuncFormatter(lambda v, _: "%g" % v)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 1.5, 2, 3, 5, 7)))
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xticks(ns)
    ax.set_xticklabels([str(n) for n in ns])
    ax.set_xlabel("machines N")
    ax.set_ylabel("seconds until all N targets hold the image")
    ax.set_title("One %.0f MiB image to N machines, every link %s" % (used / 1048576, a.rate or "%.0f Mbit/s" % (rate / 1e6)))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = os.path.join(a.out, "cluster.png")
    fig.savefig(png, dpi=110)
    print("plot: " + png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
