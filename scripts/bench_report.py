#!/usr/bin/env python3
"""Renders bench-results.jsonl (JSON lines from the bench/ programs) as docs/benchmarks.md:
a table of the numbers, the machine they were taken on and the command that reproduces
them. Usage: scripts/bench_report.py RESULTS.jsonl OUT.md COMMAND"""
import json, os, platform, subprocess, sys, datetime

def machine():
    cpu = "unknown cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = "%.0f GiB" % (int(line.split()[1]) / 1048576)
    except OSError:
        pass
    return "%s, %d cores, %s, %s %s" % (cpu, os.cpu_count() or 0, mem, platform.system(), platform.release())

# The targets the issues set, checked against the rows of this run. W1's reference is
# differential-dataflow with one worker on the same data and machine (the dataflow issue):
# (init ms, p50 us, p99 us, peak RSS MB) per (nodes, batch); the bar is 1.2x each.
DD_W1 = {(100000, 1): (178, 139, 1200, 21), (1000000, 1): (2000, 156, 2100, 194),
         (100000, 1000): (None, 45000, None, None)}

def find(rows, bench, **want):
    """The first row of `bench` whose params and top-level fields match `want`."""
    for r in rows:
        if r.get("bench") != bench:
            continue
        fields = dict(r.get("params", {}))
        fields.update({k: v for k, v in r.items() if k != "params"})
        if all(fields.get(k) == v for k, v in want.items()):
            return r
    return None

def targets(rows):
    """(what, target, measured, ok) for every target whose row is in this run."""
    out = []
    def add(what, target, value, ok, fmt="%.4g"):
        if value is not None:
            out.append((what, target, fmt % value, ok))
    for (n, b), ref in sorted(DD_W1.items()):
        r = find(rows, "w1", nodes=n, batch=b, via="dataflow")
        if not r:
            continue
        for key, unit, refv in (("init_ms", "ms", ref[0]), ("p50_us", "us", ref[1]),
                                ("p99_us", "us", ref[2]), ("peak_rss_mb", "MB", ref[3])):
            if refv is not None and r.get(key) is not None:
                add("W1 N=%d B=%d dataflow %s" % (n, b, key), "<= %.4g %s (1.2x DD %g)" % (
                    1.2 * refv, unit, refv), r[key], r[key] <= 1.2 * refv)
    small, big = find(rows, "w1", via="dataflow", nodes=100000, batch=1), find(
        rows, "w1", via="dataflow", nodes=1000000, batch=1)
    if small and big:
        ratio = big["p50_us"] / small["p50_us"]
        add("W1 dataflow p50 at N=1e6 / at N=1e5", "<= 1.5x", ratio, ratio <= 1.5, "%.2fx")
    # bench_datalog --w1 (its params have no batch) against bench_w1 --via dataflow
    w1d = next((r for r in rows if r.get("bench") == "w1" and r.get("via") == "datalog"
                and "batch" not in r.get("params", {})), None)
    w1h = find(rows, "w1", via="dataflow", nodes=100000, batch=1)
    if w1d and w1h:
        for key in ("init_ms", "p50_us"):
            ratio = w1d[key] / w1h[key]
            add("W1 Datalog / hand-built, %s" % key, "<= 1.3x", ratio, ratio <= 1.3, "%.2fx")
    r = find(rows, "datalog_compile")
    if r:
        add("Datalog compile, 20 clauses + 3 rules (p50)", "< 1000 us", r["p50_us"], r["p50_us"] < 1000)
    # The targets are for W2 at 1e6 orders; a small run says its size.
    r = find(rows, "datalog_w2_engine")
    if r:
        w2 = "W2 %g orders" % r.get("orders", 0)
        add(w2 + ": cold one-shot grouped aggregate (p50)", "< 100 ms", r.get("cold_p50_ms"),
            r.get("cold_p50_ms", 1e9) < 100)
        add(w2 + ": point query by indexed attribute (p50)", "< 1 ms", r.get("point_warm_p50_ms"),
            r.get("point_warm_p50_ms", 1e9) < 1)
    r = find(rows, "w2", via="inprocess")
    if r:
        add("W2 %g orders: commit to dashboard diff (p99)" % r["params"].get("orders", 0),
            "< 5000 us", r["p99_us"], r["p99_us"] < 5000)
    r = find(rows, "w2_fanout")
    if r:
        add("1000 subscriptions / 100 queries on W2 (%s): commit to last callback p99"
            % os.path.basename(str(r.get("params", {}).get("data", "?"))), "< 5000 us",
            r.get("all_tx_p99_us"), r.get("all_tx_p99_us", 1e9) < 5000)
        add("bytes per extra subscriber", "< 4096", r.get("bytes_per_extra_subscriber"),
            r.get("bytes_per_extra_subscriber", 1e9) < 4096)
    r = find(rows, "coalesce_slow_consumer")
    if r:
        add("slow consumer under coalesce: queued / result", "<= 2x",
            r.get("worst_queued_over_result"), r.get("worst_queued_over_result", 9) <= 2, "%.2fx")
    for bench, what, target in (("w3_pipelined_batched", "W3 batched 1000/tx, pipelined (events/s)", 1e6),
                                ("w3_batched", "W3 batched 1000/tx, sequential (events/s)", None),
                                ("w3_single", "W3 one event per transaction (events/s)", 1e5)):
        r = find(rows, bench)
        if r:
            v = r["throughput_per_s"]
            add(what, ">= %g" % target if target else "(no target)", v,
                (v >= target) if target else None)
    for bench, key, what, target in (("df_map_filter", "throughput_per_s", "map/filter updates/s", 1e7),
                                     ("df_join", "throughput_per_s", "join updates/s", 2e6),
                                     ("df_count", "throughput_per_s", "count updates/s", 2e6)):
        r = find(rows, bench)
        if r:
            add(what, ">= %g" % target, r[key], r[key] >= target)
    return out

def main():
    results, out, command = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = [json.loads(l) for l in open(results) if l.strip().startswith("{")]
    keys = ["init_ms", "p50_us", "p99_us", "throughput_per_s", "peak_rss_mb"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    with open(out, "w") as f:
        f.write("# Benchmarks\n\n")
        f.write("Generated by `scripts/bench` (do not edit by hand). Medians are p50.\n\n")
        try:
            load = open("/proc/loadavg").read().split()[:3]
        except OSError:
            load = ["?"]
        f.write("- machine: %s\n- commit: %s\n- date: %s\n- load average when written "
                "(1, 5, 15 min; the machine is shared): %s\n- reproduce: `%s`\n\n" % (
            machine(), commit, datetime.date.today().isoformat(), " ".join(load), command))
        t = targets(rows)
        if t:
            f.write("## Targets\n\n| what | target | measured | met |\n|---|---|---|---|\n")
            for what, target, value, ok in t:
                f.write("| %s | %s | %s | %s |\n" % (what, target, value,
                                                  "" if ok is None else "yes" if ok else "**no**"))
            f.write("\n## All rows\n\n")
        f.write("| bench | params | " + " | ".join(keys) + " | other |\n")
        f.write("|---|---|" + "---|" * len(keys) + "---|\n")
        for r in rows:
            other = {k: v for k, v in r.items() if k not in keys + ["bench", "params"]}
            def fmt(v):
                if isinstance(v, float):
                    return "%.4g" % v
                return "" if v is None else str(v)
            f.write("| %s | %s | %s | %s |\n" % (
                r.get("bench", "?"), json.dumps(r.get("params", {}), separators=(",", ":")),
                " | ".join(fmt(r.get(k)) for k in keys),
                json.dumps(other, separators=(",", ":")) if other else ""))

if __name__ == "__main__":
    main()
