#!/usr/bin/env python3
"""The cluster section of BENCHMARKS.md, from the cluster-*.json results of one bench/run.

usage: report_cluster.py RESULTS_DIR BENCHMARKS.md
Rewrites that file in place, touching only the cluster section (between its markers; placed
before the findings when the file has none yet), the cluster row of the targets table, and the
findings (bench/FINDINGS.md as it is now). The single-node tables stay as they are: this is what
`bench/run --cluster` writes. bench/report.py calls section() and target_row() for a full report.
"""
import json
import os
import statistics
import sys
from pathlib import Path

from reportlib import SOAK_BEGIN, Results, fmt, ratio, verdict

BEGIN = "<!-- cluster section: written by bench/report_cluster.py -->"
END = "<!-- end of the cluster section -->"
TARGET_ROW = "| four nodes + one Redis"
FINDINGS = "## Findings"
COMMANDS = "## Commands (as run)"
SETUPS = (("single", "one node (SQLite, in-process layer)"),
          ("node", "one node of the cluster (its Redis layer), all watchers on it"),
          ("spread", "the cluster: watchers spread over every node, changes on the first"))
LIMIT = 1.5


def ours(name):
    return name.startswith("cluster-")


def runs(R, setup):
    """The fan-out runs of one setup, in order."""
    names = [n for n in R.res if n.startswith(f"cluster-fanout-{setup}-")]
    return sorted(names, key=lambda n: int(n.rsplit("-", 1)[1]))


def median(R, setup, key):
    v = [R.get(n, key) for n in runs(R, setup)]
    v = [x for x in v if x is not None]
    return round(statistics.median(v), 2) if v else None


def verdicts(R):
    """(hold ok, fan-out ok, single p99 median, spread p99 median), None where not measured."""
    sockets, connected = R.get("cluster-hold", "sockets"), R.get("cluster-hold", "connected")
    hold_ok = None if connected is None else connected == sockets
    single, spread = median(R, "single", "p99_ms"), median(R, "spread", "p99_ms")
    missing = sum(R.get(n, "missing") or 0 for n in runs(R, "spread"))
    fan_ok = None if single is None or spread is None else (spread <= LIMIT * single and missing == 0)
    return hold_ok, fan_ok, single, spread


def old_part(old, start, end):
    """The text of `old` from the line starting with `start` through the line `end` (or None)."""
    i = old.find(start)
    if i < 0:
        return None
    j = old.find(end, i) if end else old.find("\n", i)
    return None if j < 0 else old[i:j + len(end or "")]


def target_row(R, old=""):
    """The cluster's row of the SPEC targets table (the old file's when this run has no cluster)."""
    if "cluster-hold" not in R.res and not runs(R, "spread"):
        return old_part(old, TARGET_ROW, None) or f"{TARGET_ROW}: 60,000 sockets, p99 ≤ 1.5× single node | not run | – | – |"
    hold_ok, fan_ok, single, spread = verdicts(R)
    ok = None if hold_ok is None or fan_ok is None else hold_ok and fan_ok
    return (f"{TARGET_ROW}: {fmt(R.get('cluster-hold', 'sockets'))} sockets, p99 ≤ 1.5× single node "
            f"(cluster section below) | {fmt(R.get('cluster-hold', 'connected'))} connected; "
            f"p99 {fmt(spread)} ms (median of {len(runs(R, 'spread'))}) | one node p99 {fmt(single)} ms "
            f"({ratio(spread, single)}) | {verdict(ok)} |")


def hold_lines(R):
    name = "cluster-hold"
    if name not in R.res:
        return []
    L = [f"### Holding {fmt(R.get(name, 'sockets'))} sockets over {fmt(R.get(name, 'nodes'))} nodes\n"]
    if R.failed_note(name):
        return L + [R.failed_note(name), ""]
    L.append("| node | sockets | server CPU while connecting (s) | RSS after the hold (MiB) | RSS per socket (B) |")
    L.append("|---|---|---|---|---|")
    per = zip(R.get(name, "urls") or [], R.get(name, "connected_per_node") or [],
              R.get(name, "server_cpu_seconds_connect_per_node") or [],
              R.get(name, "server_rss_kib_after_hold_per_node") or [],
              R.get(name, "rss_bytes_per_socket_after_hold_per_node") or [])
    for i, (url, n, cpu, rss, per_socket) in enumerate(per, 1):
        L.append(f"| {i} ({url}) | {fmt(n)} | {fmt(cpu)} | {fmt(None if rss is None else round(rss / 1024, 1))} | {fmt(per_socket)} |")
    rss = R.get(name, "server_rss_kib_after_hold")
    L.append(f"| all | {fmt(R.get(name, 'connected'))} | {fmt(R.get(name, 'server_cpu_seconds_connect'))} | "
             f"{fmt(None if rss is None else round(rss / 1024, 1))} | {fmt(R.get(name, 'rss_bytes_per_socket_after_hold'))} |")
    L.append("")
    by = R.get(name, "redis_commands_per_socket_by_command") or {}
    mem0, mem1 = R.get(name, "redis_used_memory_bytes_before"), R.get(name, "redis_used_memory_bytes_connected")
    L.append(f"{fmt(R.get(name, 'connected'))} of {fmt(R.get(name, 'sockets'))} connected "
             f"({fmt(R.get(name, 'connect_failed'))} failed) in {fmt(R.get(name, 'connect_seconds'))} s: "
             f"{fmt(R.get(name, 'connects_per_s'))} connects/s, from {fmt(R.get(name, 'workers'))} load-generator "
             f"processes. Redis while they connected: {fmt(R.get(name, 'redis_commands_per_socket'))} commands per "
             f"socket ({', '.join(f'{k} {fmt(v)}' for k, v in sorted(by.items(), key=lambda kv: -kv[1]))}), "
             f"{fmt(R.get(name, 'redis_cpu_us_per_socket'))} µs of Redis CPU per socket; its memory "
             f"{fmt(mem0)} → {fmt(mem1)} B.\n")
    return L


def fanout_lines(R):
    if not any(runs(R, s) for s, _ in SETUPS):
        return []
    w = next((R.get(n, "watchers") for s, _ in SETUPS for n in runs(R, s) if R.get(n, "watchers")), None)
    nodes = next((R.get(n, "nodes") for n in runs(R, "spread") if R.get(n, "nodes")), None)
    L = [f"### Fan-out: one change reaching {fmt(w)} watchers\n"]
    L.append("The changing user opens and closes one socket on the first node (`--presence-grace 0s`); latency "
             "from just before its TCP connect (or its close frame) to each watcher's frame, over every watcher × "
             "change. The setups take turns, so each sees the same load. Redis figures are `INFO` deltas over the "
             "changes divided by the changes, as measured (raw) and less the idle rate of the nodes' heartbeats "
             "and sweeps (measured over an equally long stretch just before the changes).\n")
    L.append("| setup | median p50 (ms) | median p90 | median p99 | median max | missing (all runs) | "
             "Redis commands per change: raw / less idle | Redis CPU per change (µs): raw / less idle | "
             "server CPU for the changes (s) |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for s, label in SETUPS:
        if not runs(R, s):
            continue
        miss = sum(R.get(n, "missing") or 0 for n in runs(R, s))
        pair = lambda k: f"{fmt(median(R, s, k + '_raw'))} / {fmt(median(R, s, k))}"
        L.append(f"| {label} | " + " | ".join(fmt(median(R, s, k)) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))
                 + f" | {fmt(miss)} | {pair('redis_commands_per_change')} | {pair('redis_cpu_us_per_change')} | "
                 f"{fmt(median(R, s, 'server_cpu_seconds_changes'))} |")
    L.append("")
    L.append("Every run (load average of the machine just before it, 1 min):\n")
    L.append("| result | p50 | p90 | p99 | max | missing | p99 over one node's in the same round | load |")
    L.append("|---|---|---|---|---|---|---|---|")
    for r in sorted({int(n.rsplit("-", 1)[1]) for s, _ in SETUPS for n in runs(R, s)}):
        single = R.get(f"cluster-fanout-single-{r}", "p99_ms")
        for s, _ in SETUPS:
            n = f"cluster-fanout-{s}-{r}"
            if n not in R.res:
                continue
            if R.failed_note(n):
                L.append(f"| `{n}` | {R.failed_note(n)} |||||||")
                continue
            L.append(f"| `{n}` | " + " | ".join(fmt(R.get(n, k)) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "missing"))
                     + f" | {'' if s == 'single' else ratio(R.get(n, 'p99_ms'), single)} | {fmt(R.get(n, 'loadavg_before'))} |")
    L.append("")
    spread = [n for n in runs(R, "spread") if R.get(n, "p99_ms_per_node")]
    if spread:
        L.append(f"By node in the spread runs (the changes are made on node 1; every node's watchers hear of them "
                 f"through Redis):\n")
        L.append("| result | " + " | ".join(f"node {i} p50 / p99 (ms)" for i in range(1, (nodes or 0) + 1))
                 + " | server CPU for the changes per node (s) |")
        L.append("|---|" + "---|" * ((nodes or 0) + 1))
        for n in spread:
            cells = [f"{fmt(a)} / {fmt(b)}" for a, b in zip(R.get(n, "p50_ms_per_node"), R.get(n, "p99_ms_per_node"))]
            cpu = ", ".join(fmt(c) for c in R.get(n, "server_cpu_seconds_changes_per_node") or [])
            L.append(f"| `{n}` | " + " | ".join(cells) + f" | {cpu} |")
        L.append("")
        last = spread[-1]
        by = R.get(last, "redis_commands_per_change_by_command") or {}
        idle = R.get(last, "redis_idle_by_command") or {}
        L.append(f"Redis per change in `{last}`: {fmt(R.get(last, 'redis_commands_per_change'))} commands "
                 f"({', '.join(f'{k} {fmt(v)}' for k, v in sorted(by.items(), key=lambda kv: -kv[1]) if abs(v) >= 0.05)}; "
                 f"{fmt(R.get(last, 'redis_commands_per_change_raw'))} before the idle rate is taken off), "
                 f"{fmt(R.get(last, 'redis_cpu_us_per_change'))} µs of CPU ({fmt(R.get(last, 'redis_cpu_us_per_change_raw'))} µs raw). "
                 f"Idle, with {fmt(nodes)} nodes: {fmt(R.get(last, 'redis_idle_commands_per_s'))} commands/s "
                 f"({', '.join(f'{k} {v}' for k, v in sorted(idle.items()))} in {fmt(R.get(last, 'redis_idle_seconds'))} s), "
                 f"{fmt(R.get(last, 'redis_idle_cpu_ms_per_s'))} ms of CPU per second.\n")
    return L


def section(R, env, old=""):
    """The whole section, markers included: from this run's results, else the old file's."""
    if not any(ours(n) for n in R.res):
        kept = old_part(old, BEGIN, END)
        return [kept, ""] if kept else []
    hold_ok, fan_ok, single, spread = verdicts(R)
    commit = env.get("BENCH_COMMIT", "?") + (" (with uncommitted changes)" if env.get("BENCH_DIRTY") == "1" else "")
    loads = [R.get(n, "loadavg_before") for n in R.res if ours(n) and R.get(n, "loadavg_before") is not None]
    L = [BEGIN, "## Cluster: four nodes and one Redis on one machine\n"]
    L.append(f"Run `{R.out.name}` of `bench/run` (`--cluster` writes only this section), commit `{commit}`. "
             f"{fmt(R.get('cluster-hold', 'nodes'))} Roster nodes (the release build), one private PostgreSQL and one "
             "private `redis-server`, each on a free port, on the same 2 cores as the load generator (several "
             "`roster-bench` worker processes, source addresses 127.0.0.2 and up). Other work shared the machine: "
             f"load averages before each result {fmt(min(loads, default=None))} to {fmt(max(loads, default=None))}.\n")
    L.append("| target | cluster | reference in this run | met |")
    L.append("|---|---|---|---|")
    L.append(f"| {fmt(R.get('cluster-hold', 'sockets'))} sockets held by {fmt(R.get('cluster-hold', 'nodes'))} nodes and one Redis | "
             f"{fmt(R.get('cluster-hold', 'connected'))} connected, {fmt(R.get('cluster-hold', 'rss_bytes_per_socket_after_hold'))} B "
             f"RSS per socket | – | {verdict(hold_ok)} |")
    n_spread = len(runs(R, "spread"))
    L.append(f"| a change on one node reaches the watchers of every node: p99 ≤ {LIMIT}× one node's at the same total "
             f"(median of {n_spread} runs each), 0 missing | p99 {fmt(spread)} ms | one node p99 {fmt(single)} ms "
             f"({ratio(spread, single)}) | {verdict(fan_ok)} |")
    L.append("")
    L.extend(hold_lines(R))
    L.extend(fanout_lines(R))
    L.append("### Servers and commands\n")
    L.append("- Nodes: `roster serve --bind 127.0.0.1:0 --database-url postgres://postgres@127.0.0.1:PORT/roster "
             "--redis-url redis://127.0.0.1:PORT --node-name bench-nodeI --presence-grace 0s --signup-limit 1000000` "
             "(`bench/cluster.sh`); the accounts and sessions copied from the single node's SQLite file with `roster copy`.")
    L.append("- PostgreSQL: `initdb` and `pg_ctl` in a temp dir (`fsync=off`, `synchronous_commit=off`, as the tests' one); "
             "`redis-server --save \"\" --appendonly no`.")
    L.append("- One node: `roster serve --database-url sqlite://TMP/big.db --presence-grace 0s --signup-limit 1000000`, "
             "as the single-node sections start it.\n")
    for name, d in R.res.items():
        if ours(name):
            L.append(f"- `{name}`: `{d.get('command', '?')}`")
    L.append("\nRaw results:\n")
    L.append("```")
    L.extend(json.dumps(d, sort_keys=True) for name, d in R.res.items() if ours(name))
    L.append("```")
    L.append(END)
    L.append("")
    return L


def splice(old, section_text, row, findings):
    """`old` with its cluster section, its cluster target row and its findings replaced."""
    text = old
    kept = old_part(text, BEGIN, END)
    if kept:
        text = text.replace(kept, section_text.rstrip("\n"))
    else:
        at = text.find("\n" + FINDINGS)
        at = len(text) if at < 0 else at + 1
        text = text[:at] + section_text + "\n" + text[at:]
    old_row = old_part(text, TARGET_ROW, None)
    if old_row:
        text = text.replace(old_row, row)
    if findings is not None:
        i = text.find("\n" + FINDINGS)
        # The findings end where the soak's section (bench/soak_report.py) or the commands begin.
        ends = [k for k in (text.find("\n" + SOAK_BEGIN, i + 1), text.find("\n" + COMMANDS, i + 1)) if k >= 0]
        j = min(ends) if ends else -1
        if i >= 0 and j >= 0:
            text = text[:i + 1] + findings.rstrip() + "\n\n" + text[j + 1:]
    return text


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    R = Results(sys.argv[1])
    if not any(ours(n) for n in R.res):
        sys.exit(f"{sys.argv[1]} holds no cluster-*.json result; nothing written")
    target = Path(sys.argv[2])
    old = target.read_text() if target.exists() else ""
    findings = Path(__file__).resolve().parent / "FINDINGS.md"
    text = splice(old, "\n".join(section(R, os.environ, old)), target_row(R, old),
                  findings.read_text() if findings.exists() else None)
    target.write_text(text)


if __name__ == "__main__":
    main()
