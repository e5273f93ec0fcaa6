#!/usr/bin/env python3
"""The soak section of BENCHMARKS.md, from the runs of bench/soak kept in bench/figures/.

usage: soak_report.py [BENCHMARKS.md] [SHAPE-MINUTES ...]   (default: single-60 cluster-60)
Writes bench/SOAK.md from bench/figures/soak-SHAPE-MINUTESmin.{json,png} (and the run.txt lines
saved beside them), then puts it in BENCHMARKS.md between its markers (before "## Commands (as
run)" when the file has none yet). bench/report.py appends bench/SOAK.md as it is.
"""
import json
import sys
from pathlib import Path

from reportlib import SOAK_BEGIN as BEGIN, SOAK_END as END

root = Path(__file__).resolve().parent.parent
COMMANDS = "## Commands (as run)"
MOMENTS = (("before", "before the pages opened"), ("connected", "every page open"),
           ("warmed_up", "after warm-up"), ("end_of_churn", "end of the churn"),
           ("after_everyone_left", "after everyone left"))
SHAPES = {"single": "one node (SQLite, in-process layer)",
          "cluster": "3 nodes, one PostgreSQL, one Redis (restarted empty half-way)"}


def n(v):
    return f"{v:,}"


def mib(kib):
    return f"{kib / 1024:,.1f}"


def kinds_diff(before, after):
    """What kinds of descriptors the node holds after everyone left and did not hold before."""
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    return {k: v for k, v in sorted(diff.items()) if v}


def shape_section(shape, minutes):
    stem = root / f"bench/figures/soak-{shape}-{minutes}min"
    d = json.loads(stem.with_suffix(".json").read_text())
    run = stem.with_suffix(".run.txt")
    run_lines = run.read_text().splitlines() if run.exists() else []
    L = [f"### {SHAPES[shape]}: {n(d['users'])} users, {minutes} minute{'s' if minutes != '1' else ''}\n"]
    flag = " --cluster" if shape == "cluster" else ""
    L.append(f"`bench/soak{flag} --minutes {minutes}`"
             + "".join("; " + x for x in run_lines if x.startswith(("commit", "started", "finished",
                                                                     "redis restart")))
             + f". Plot: [bench/figures/soak-{shape}-{minutes}min.png]"
             f"(bench/figures/soak-{shape}-{minutes}min.png), samples in the `.csv` beside it.\n")
    L.append(f"![soak {shape} {minutes} min](bench/figures/soak-{shape}-{minutes}min.png)\n")
    L.append("| node | moment | t (s) | RSS (MiB) | descriptors | tasks | sockets open | users online |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for i, node in enumerate(d["nodes"]):
        for key, label in MOMENTS:
            m = node[key]
            L.append(f"| {i + 1} | {label} | {m['t_s']:.0f} | {mib(m['rss_kib'])} | {n(m['fds'])} "
                     f"| {n(m['tasks'])} | {n(m['sockets_open'])} | {n(m['users_online'])} |")
    L.append("")
    L.append("After warm-up (from the warm-up sample to the end of the churn), per node:\n")
    L.append("| node | RSS min–max (MiB) | RSS slope (KiB/min) | descriptors min–max | tasks min–max "
             "| descriptors left | tasks left | slow readers resynced / closed |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for i, node in enumerate(d["nodes"]):
        r, f, t = node["rss_kib_range_after_warmup"], node["fds_range_after_warmup"], node["tasks_range_after_warmup"]
        L.append(f"| {i + 1} | {mib(r[0])}–{mib(r[1])} | {node['rss_slope_kib_per_min_after_warmup']:,.0f} "
                 f"| {n(f[0])}–{n(f[1])} | {n(t[0])}–{n(t[1])} | {node['fds_left_after_everyone_left']} "
                 f"| {node['tasks_left_after_everyone_left']} | {n(node['lagging_resyncs'])} / "
                 f"{n(node['lagging_closes'])} |")
    L.append("")
    for i, (b, a) in enumerate(zip(d["fd_kinds_before"], d["fd_kinds_after_everyone_left"])):
        diff = kinds_diff(b, a)
        what = ", ".join(f"{k} {v:+d}" for k, v in diff.items()) if diff else "none"
        L.append(f"- node {i + 1}: descriptors after everyone left that were not there before, by kind: {what}")
    c = d["churn"]
    fails = {k: v for k, v in c.items() if k.endswith("_failures") and v}
    L.append(f"- churn over {d['churn_seconds'] / 60:.0f} min ({d['churn_per_s']} actions/s, "
             f"{d['signups_per_min']} sign-ups/min, mix {d['mix']}): {n(c['connects'])} socket opens, "
             f"{n(c['page_loads'])} page loads, {n(c['reloads'])} reloads, {n(c['closes'])} closes, "
             f"{n(c['logins'])} form log-ins, {n(c['logouts'])} log-outs, {n(c['signups'])} sign-ups; "
             f"failures: {', '.join(f'{k} {v}' for k, v in fails.items()) or 'none'}; "
             f"load-generator errors: {len(d['generator_errors'])}")
    k, s = d["keepup"], d["slow"]
    L.append(f"- deliveries of the trigger's {d['trigger_changes']} changes to the readers that keep up: "
             f"{n(k['delivered'])} of {n(k['expected'])}, **{n(k['missing'])} missing**; latency p50/p99 "
             f"Online {k['online_p50_ms']}/{k['online_p99_ms']} ms, Offline {k['offline_p50_ms']}/"
             f"{k['offline_p99_ms']} ms (Offline includes the 5 s grace); sequence gaps {k['seq_gaps']}, "
             f"view gaps {k['view_gaps']}, resyncs {k['resyncs']}")
    L.append(f"- slow readers (one in {d['slow_every']}, stalling 5–40 s): {n(s['delivered'])} of "
             f"{n(s['expected'])} delivered while open ({n(s['missing'])} missed while stalled past their "
             f"ring: the server resynced or closed them, as designed)")
    snaps = d["server_snapshots"]
    L.append(f"- the end: {n(d['pages_checked'])} open pages checked against the truth "
             f"({n(d['truth_online'])} online, {n(d['truth_registered'])} accounts): "
             f"{d['pages_wrong_keepup']} wrong among those that kept up, {d['pages_wrong_slow']} among the "
             f"slow; every node's `/api/users/` equal to the truth: "
             f"{sum(1 for x in snaps if x['matches'])} of {len(snaps)}")
    L.append("")
    return "\n".join(L)


def main():
    args = sys.argv[1:]
    bench_md = Path(args.pop(0)) if args and args[0].endswith(".md") else root / "BENCHMARKS.md"
    runs = [a.rsplit("-", 1) for a in args] or [("single", "60"), ("cluster", "60")]
    parts = [BEGIN, "## Soak (`bench/soak`)\n",
             "Users hold one page each (8 in 10 the built-in page's `roster.v2` window, 1 in 10 "
             "`roster.v1`, 1 in 10 tutorial frames), held under continuous churn while the server's RSS, "
             "open descriptors and live tasks (`roster_tasks_alive`) are sampled every 5 s. What the "
             "load generator does and how deliveries are counted: bench/README.md (\"Soak\"). "
             "The server allocates with jemalloc since the soak showed glibc's malloc keeping freed "
             "memory (docs/decisions.md, \"The allocator is jemalloc\"); the tables above this section "
             "were measured before that, with glibc's malloc.\n"]
    for shape, minutes in runs:
        parts.append(shape_section(shape, minutes))
    parts.append(END)
    text = "\n".join(parts) + "\n"
    (root / "bench/SOAK.md").write_text(text)
    old = bench_md.read_text()
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + text.rstrip("\n") + rest.split(END, 1)[1]
    elif COMMANDS in old:
        head, rest = old.split(COMMANDS, 1)
        new = head + text + "\n" + COMMANDS + rest
    else:
        new = old.rstrip("\n") + "\n\n" + text
    bench_md.write_text(new)
    print(f"wrote bench/SOAK.md and its section of {bench_md}", file=sys.stderr)


if __name__ == "__main__":
    main()
