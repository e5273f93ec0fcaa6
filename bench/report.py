#!/usr/bin/env python3
"""Turn one bench/run result directory (one JSON object per scenario) into BENCHMARKS.md.

usage: report.py RESULTS_DIR > BENCHMARKS.md
Appends bench/FINDINGS.md (hand-written: causes found, profiles, what is still wrong) and
bench/SOAK.md (the soak's section, from bench/soak runs). The cluster section comes from
bench/report_cluster.py: from this run's results, or, when this run has none, as the current
BENCHMARKS.md has it.
"""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import report_cluster
from reportlib import Results, fmt, ratio, verdict

out = Path(sys.argv[1])
R = Results(out)
res, get, failed_note = R.res, R.get, R.failed_note
root = Path(__file__).resolve().parent.parent
env = os.environ


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return "?"


def sizes(name):
    return [int(n) for n in env.get(name, "").split()]


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
pip = root / "bench/peers/django-channels/.venv/bin/pip"
peer = sh(str(pip), "freeze") if pip.exists() else ""
peer = ", ".join(l for l in peer.splitlines() if l.split("==")[0].lower() in ("django", "channels", "daphne", "channels-redis", "channels_redis", "redis", "twisted"))

L = []
L.append("# Benchmarks\n")
L.append(f"Run `{out.name}` of `bench/run`: every figure below comes from this one run, with the load "
         "generator `roster-bench` on the same 2 cores as the server. Reproduce with `bench/run` "
         "(sizes in its header; `bench/run --help`).\n")
L.append("## Machine and versions\n")
L.append(f"- CPU: {cpu}, {os.cpu_count()} cores; memory {int(mem) // 1024 // 1024} GiB; kernel {platform.release()}")
L.append(f"- Open-file limit per process: {sh('sh', '-c', 'ulimit -n')}")
commit = env.get("BENCH_COMMIT") or sh('git', '-C', str(root), 'rev-parse', '--short', 'HEAD')
L.append(f"- {sh('rustc', '--version')}; commit measured: `{commit}`{' (with uncommitted changes)' if env.get('BENCH_DIRTY') == '1' else ''}")
rb = env.get("ROSTER_BIN", "")
L.append(f"- Roster binary: `{rb}` ({sh(rb, '--version') if rb else '?'})")
L.append(f"- Django peer: Python {platform.python_version()}; {peer or '?'}; {sh('redis-server', '--version')[:40]}\n")
if env.get("BENCH_NOTE"):
    L.append(f"**Note:** {env['BENCH_NOTE']}\n")

# ------------------------------------------------------------------ targets
# Sizes from bench/run's environment, else from the result names (report.py run by hand).
fan = sizes("FANOUT_SIZES") or sorted({int(n.rsplit("-", 1)[1]) for n in res if n.startswith(("roster-fanout-", "floor-fanout-")) and n.rsplit("-", 1)[1].isdigit()})
L.append("## SPEC targets (single node)\n")
L.append("| target | Roster | reference in this run | met |")
L.append("|---|---|---|---|")


for key, label, k, fk in (("roster-hold", "held for 2 s", "rss_bytes_per_socket_after_hold", "floor-hold"),
                          ("roster-burst", "after a burst", "rss_bytes_per_watcher_after", "floor-burst")):
    rss = get(key, k)
    conn = get(key, "connected")
    fl = get(fk, k)
    ok = None if rss is None else (rss <= 8192 and conn == get(key, "watchers" if key.endswith("burst") else "sockets"))
    L.append(f"| {fmt(get(key, 'watchers' if key.endswith('burst') else 'sockets'))} authenticated sockets at ≤ 8 KiB RSS each, {label} | "
             f"{fmt(conn)} connected, {fmt(rss)} B/socket | floor {fmt(fl)} B/socket | {verdict(ok)} |")
for n in fan:
    rp, fp = get(f"roster-fanout-{n}", "p99_ms"), get(f"floor-fanout-{n}", "p99_ms")
    miss = get(f"roster-fanout-{n}", "missing")
    ok = None if rp is None or fp is None else (rp <= 1.25 * fp and miss == 0)
    L.append(f"| change reaches {fmt(n)} watchers, p99 ≤ 1.25× floor, 0 missing | p99 {fmt(rp)} ms, "
             f"{fmt(miss)} missing | floor p99 {fmt(fp)} ms ({ratio(rp, fp, 3)}) | {verdict(ok)} |")
bf = get("roster-burst", "frames_per_s")
bw = get("roster-burst", "watchers")
ok = None if bf is None else bf >= 1_000_000
L.append(f"| bursts ≥ 1,000,000 frames/s at {fmt(bw)} sockets | {fmt(bf)} frames/s | floor "
         f"{fmt(get('floor-burst', 'frames_per_s'))} frames/s | {verdict(ok)} |")
for rs, fs in (("roster-storm-v1", "floor-storm"), ("roster-storm-v1-small", "floor-storm-small")):
    sc = get(rs, "converge_after_storm_max_ms")
    snc = get(rs, "not_converged")
    sfr = get(rs, "frames_per_watcher_max")
    ok = None if sc is None else (sc <= 1000 and snc == 0)
    L.append(f"| storm of {fmt(get(rs, 'logins'))} log-ins in {fmt(get(rs, 'storm_seconds_requested'))} s, "
             f"{fmt(get(rs, 'watchers'))} watchers (roster.v1): all converge ≤ 1 s after, bounded frames | "
             f"max {fmt(sc)} ms after, {fmt(snc)} not converged, ≤ {fmt(sfr)} frames/watcher | floor (one frame per change): "
             f"max {fmt(get(fs, 'converge_after_storm_max_ms'))} ms, {fmt(get(fs, 'not_converged'))} not converged | {verdict(ok)} |")
lr = get("roster-list", "requests_per_s")
ok = None if lr is None else lr >= 2000
L.append(f"| user list, {fmt(get('roster-seed', 'created'))} users: ≥ 2,000 requests/s | {fmt(lr)} req/s | "
         f"Django {fmt(get('django-list', 'requests_per_s'))} req/s | {verdict(ok)} |")
lb = get("roster-list-big", "requests_per_s")
ok = None if lb is None else lb >= 1000
L.append(f"| user list, {fmt(get('roster-import', 'accounts'))} accounts, {fmt(get('roster-list-big', 'online_sockets'))} "
         f"online: ≥ 1,000 requests/s | {fmt(lb)} req/s | – | {verdict(ok)} |")
old = root / "BENCHMARKS.md"
old = old.read_text() if old.exists() else ""
L.append(report_cluster.target_row(R, old))
L.append("")

# ------------------------------------------------------------------ live views (issue 13)
if any(n.startswith(("roster-hold-page-", "roster-fanout-page-", "roster-storm-page-", "roster-burst-page-")) for n in res):
    L.append("## Live views: the page's shape (roster.v2)\n")
    L.append("What the built-in page speaks: `roster-bench --mode page` opens `/users/?offset=0&limit=200&q=` with "
             "`roster.v2` and keeps the window as the page script does. Two shapes of watchers: **30 sockets per user** "
             "(`-30`: 500 users hold 15,000 sockets, as the runs above) and **one socket per distinct user** (`-1`: "
             "the shape of real pages).\n")
    L.append("| target | Roster | reference in this run | met |")
    L.append("|---|---|---|---|")
    c1, c30 = get("roster-hold-page-1", "server_cpu_seconds_connect"), get("roster-hold-page-30", "server_cpu_seconds_connect")
    ok = None if c1 is None or not c30 else c1 <= 2 * c30
    L.append(f"| {fmt(get('roster-hold-page-1', 'sockets'))} distinct users' pages connecting: server CPU ≤ 2× the "
             f"{fmt(get('roster-hold-page-30', 'users'))} × 30 shape | {fmt(c1)} s ({fmt(get('roster-hold-page-1', 'connects_per_s'))} connects/s) | "
             f"{fmt(c30)} s ({ratio(c1, c30)}) | {verdict(ok)} |")
    pb = get("roster-hold-page-1", "probe_connect_first_frame_bytes")
    ok = None if pb is None else pb <= 16 * 1024
    L.append(f"| at most 16 KB sent per connect while {fmt(get('roster-hold-page-1', 'connected'))} are online | "
             f"{fmt(pb)} B (the snapshot of one more page) | roster.v1 snapshot of the same online set: "
             f"{fmt(get('roster-hold-page-1', 'probe_v1_connect_first_frame_bytes'))} B | {verdict(ok)} |")
    r1 = get("roster-hold-page-1", "rss_bytes_per_socket_after_hold")
    ok = None if r1 is None else r1 <= 4096
    L.append(f"| RSS per socket with {fmt(get('roster-hold-page-1', 'connected'))} distinct users online ≤ 4 KiB | "
             f"{fmt(r1)} B | 30 per user: {fmt(get('roster-hold-page-30', 'rss_bytes_per_socket_after_hold'))} B | {verdict(ok)} |")
    sc, snc = get("roster-storm-page-1", "converge_after_storm_max_ms"), get("roster-storm-page-1", "not_converged")
    ok = None if sc is None else (sc <= 1000 and snc == 0)
    L.append(f"| storm of {fmt(get('roster-storm-page-1', 'logins'))} log-ins in {fmt(get('roster-storm-page-1', 'storm_seconds_requested'))} s, "
             f"{fmt(get('roster-storm-page-1', 'watchers'))} distinct watchers: every page exact ≤ 1 s after | max {fmt(sc)} ms after, "
             f"{fmt(snc)} not converged, ≤ {fmt(get('roster-storm-page-1', 'frames_per_watcher_max'))} frames/watcher | "
             f"roster.v1 (30 per user, above): max {fmt(get('roster-storm-v1', 'converge_after_storm_max_ms'))} ms | {verdict(ok)} |")
    out = sorted(n for n in res if n.startswith("roster-fanout-page-outside-"))
    for name in out:
        fr, om = get(name, "frames_per_watcher_per_change"), get(name, "ops_max_per_frame")
        ok = None if fr is None else (fr <= 1.05 and om == 0)
        L.append(f"| a change outside a watcher's window costs it at most a counts update ({fmt(get(name, 'watchers'))} watchers) | "
                 f"{fmt(fr)} frames and {fmt(get(name, 'bytes_per_watcher_per_change'))} B per watcher per change, {fmt(om)} operations | – | {verdict(ok)} |")
    for n in fan:
        rp, fp = get(f"roster-fanout-page-{n}", "p99_ms"), get(f"floor-fanout-{n}", "p99_ms")
        miss = get(f"roster-fanout-page-{n}", "missing")
        ok = None if rp is None or fp is None else (rp <= 1.25 * fp and miss == 0)
        L.append(f"| a change inside the head window reaches {fmt(n)} distinct watchers, p99 ≤ 1.25× floor | p99 {fmt(rp)} ms, "
                 f"{fmt(miss)} missing | floor p99 {fmt(fp)} ms ({ratio(rp, fp, 3)}) | {verdict(ok)} |")
    L.append("")
    L.append("### Both shapes side by side\n")
    L.append("| run | watchers | users | connects/s | server CPU connecting (s) | RSS per socket (B) | bytes received per socket | first frame (B) | frames per watcher (max) | converged after (max ms) | not converged |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, name in (("hold, 30 per user", "roster-hold-page-30"), ("hold, distinct users", "roster-hold-page-1"),
                        ("burst, 30 per user", "roster-burst-page-30"), ("burst, distinct users", "roster-burst-page-1"),
                        ("storm, 30 per user", "roster-storm-page-30"), ("storm, distinct users", "roster-storm-page-1")):
        if name not in res:
            continue
        if failed_note(name):
            L.append(f"| {label} | {failed_note(name)} ||||||||||")
            continue
        hold = name.startswith("roster-hold")
        L.append(f"| {label} | {fmt(get(name, 'sockets' if hold else 'watchers'))} | {fmt(get(name, 'users'))} | "
                 f"{fmt(get(name, 'connects_per_s'))} | {fmt(get(name, 'server_cpu_seconds_connect'))} | "
                 f"{fmt(get(name, 'rss_bytes_per_socket_after_hold' if hold else 'rss_bytes_per_watcher_after'))} | "
                 f"{fmt(get(name, 'bytes_received_per_socket_mean'))} | {fmt(get(name, 'first_frame_bytes_mean'))} | "
                 f"{fmt(get(name, 'frames_per_watcher_max'))} | {fmt(get(name, 'converge_after_storm_max_ms'))} | {fmt(get(name, 'not_converged'))} |")
    L.append("")
    L.append("| fan-out (page) | watchers | p50 | p90 | p99 | max | missing | frames per watcher per change | bytes per watcher per change | floor p99 | Roster / floor p99 |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in sorted((n for n in res if n.startswith("roster-fanout-page-")), key=lambda n: (n.count("outside"), get(n, "watchers") or 0)):
        w = get(name, "watchers")
        label = "outside the window" if "outside" in name else "inside the head window"
        fp = None if "outside" in name else get(f"floor-fanout-{w}", "p99_ms")
        if "outside" in name:
            # The trigger never enters the window: there is no delivery to time, only its cost.
            lat = " | ".join(["n/a"] * 5)
        else:
            lat = " | ".join(fmt(get(name, k)) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "missing"))
        L.append(f"| {label} | {fmt(w)} | {lat} | " + " | ".join(fmt(get(name, k)) for k in (
                 "frames_per_watcher_per_change", "bytes_per_watcher_per_change")) + f" | {fmt(fp)} | {ratio(get(name, 'p99_ms'), fp)} |")
    L.append("")

# ------------------------------------------------------------------ side by side
L.append("## Side by side\n")
L.append("Ratios are Roster over the floor (same size, same run). The Django peer runs at sizes it survives: "
         f"{fmt(get('django-hold', 'sockets'))} watchers (at 5,000 its connecting never finishes).\n")
L.append("### Fan-out: one change, delivery latency over every watcher (ms)\n")
L.append("| watchers | Roster p50 | p90 | p99 | max | missing | floor p50 | p99 | max | Roster / floor p99 |")
L.append("|---|---|---|---|---|---|---|---|---|---|")
for n in fan:
    r, f = f"roster-fanout-{n}", f"floor-fanout-{n}"
    L.append(f"| {fmt(n)} | " + " | ".join(fmt(get(r, k)) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "missing"))
             + " | " + " | ".join(fmt(get(f, k)) for k in ("p50_ms", "p99_ms", "max_ms"))
             + f" | {ratio(get(r, 'p99_ms'), get(f, 'p99_ms'))} |")
for name in sorted(n for n in res if n.startswith("roster-fanout-v1-")):
    L.append(f"| {fmt(get(name, 'watchers'))} (roster.v1) | " + " | ".join(fmt(get(name, k)) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "missing"))
             + " | | | | |")
for name in sorted(n for n in res if n.startswith("django-fanout-")):
    L.append(f"| {fmt(get(name, 'watchers'))} (Django) | " + " | ".join(fmt(get(name, k)) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "missing"))
             + " | | | | |")
L.append("")

L.append("### Holding sockets\n")
L.append("| system | sockets | connected | failed | connects/s | RSS per socket (B) | after the hold (B) |")
L.append("|---|---|---|---|---|---|---|")
for label, name in (("Roster", "roster-hold"), ("floor", "floor-hold"), ("Django", "django-hold")):
    if name in res:
        L.append(f"| {label} | " + " | ".join(fmt(get(name, k)) for k in ("sockets", "connected", "connect_failed", "connects_per_s", "rss_bytes_per_socket", "rss_bytes_per_socket_after_hold")) + " |")
L.append("")

L.append("### Burst and storm\n")
L.append("| run | watchers | changes | over (s) | frames delivered | frames/s | changes delivered/s | converged after (p99 / max ms) | not converged | frames per watcher (mean / max) | server RSS per watcher after (B) |")
L.append("|---|---|---|---|---|---|---|---|---|---|---|")
for label, name in (("burst: Roster (tutorial frames)", "roster-burst"), ("burst: floor", "floor-burst"),
                    ("storm: Roster (roster.v1)", "roster-storm-v1"), ("storm: Roster (tutorial frames)", "roster-storm"),
                    ("storm: floor", "floor-storm"), ("smaller storm: Roster (roster.v1)", "roster-storm-v1-small"),
                    ("smaller storm: floor", "floor-storm-small"), ("storm: Django", "django-storm")):
    if name not in res:
        continue
    if failed_note(name):
        L.append(f"| {label} | {failed_note(name)} ||||||||||")
        continue
    L.append(f"| {label} | {fmt(get(name, 'watchers'))} | {fmt(get(name, 'logins'))} | {fmt(get(name, 'storm_seconds_requested'))} | "
             f"{fmt(get(name, 'frames_delivered'))} | {fmt(get(name, 'frames_per_s'))} | {fmt(get(name, 'changes_delivered_per_s'))} | "
             f"{fmt(get(name, 'converge_after_storm_p99_ms'))} / {fmt(get(name, 'converge_after_storm_max_ms'))} | "
             f"{fmt(get(name, 'not_converged'))} | {fmt(get(name, 'frames_per_watcher_mean'))} / {fmt(get(name, 'frames_per_watcher_max'))} | "
             f"{fmt(get(name, 'rss_bytes_per_watcher_after'))} |")
L.append("")

L.append("### User list (`GET /`, logged in)\n")
L.append("| system | accounts | online | requests/s | p50 (ms) | p99 (ms) | server CPU per request (ms) |")
L.append("|---|---|---|---|---|---|---|")
for label, name, acc in (("Roster", "roster-list", get("roster-seed", "created")),
                         ("Roster", "roster-list-big", get("roster-import", "accounts")),
                         ("Django", "django-list", get("django-seed", "created"))):
    if name in res:
        L.append(f"| {label} | {fmt(acc)} | {fmt(get(name, 'online_sockets'))} | " + " | ".join(fmt(get(name, k)) for k in ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_request")) + " |")
L.append("")
L.append(f"Sign-ups through the form: Roster {fmt(get('roster-seed', 'signups_per_s'))}/s (Argon2id), "
         f"Django {fmt(get('django-seed', 'signups_per_s'))}/s (MD5, `--fast-hasher`). "
         f"Importing {fmt(get('roster-import', 'accounts'))} accounts: {fmt(get('roster-import', 'seconds'))} s.\n")

failures = [(n, d) for n, d in res.items() if d.get("failed")]
if failures:
    L.append("### Runs that failed\n")
    for n, d in failures:
        L.append(f"- `{n}`: {d.get('error', '').strip()[:300]}")
    L.append("")

L.append("## Servers (as started by bench/run)\n")
L.append("- Roster: `roster serve --bind 127.0.0.1:0 --database-url sqlite://TMP/DB --presence-grace 0s` "
         "(SQLite, in-process layer, default tick 100 ms, 32 sockets per user); the storm runs use "
         "`--presence-grace 600s` because their sockets close right after the handshake. The bench users' "
         "sessions are written to the database before the server starts (`bench/run`), so no run waits for "
         "Argon2id log-ins.")
L.append("- floor: `roster-floor --bind 127.0.0.1:0` (read buffer 256 B, write buffer 4 KiB, broadcast capacity 1024)")
L.append("- Django: `bench/peers/django-channels/run --fast-hasher` (one daphne process, private redis-server, SQLite; MD5 hasher only to seed fast)\n")

L.extend(report_cluster.section(R, env, old))

findings = root / "bench/FINDINGS.md"
if findings.exists():
    L.append(findings.read_text().rstrip() + "\n")
# The soak (bench/soak) is a run of its own: its section is kept by hand in bench/SOAK.md.
soak = root / "bench/SOAK.md"
if soak.exists():
    L.append(soak.read_text().rstrip() + "\n")

L.append("## Commands (as run)\n")
# The cluster's commands and raw results are in its own section.
for name, d in res.items():
    if not report_cluster.ours(name):
        L.append(f"- `{name}`: `{d.get('command', '?')}`")
L.append("\n## Raw results\n")
L.append("```")
for name, d in res.items():
    if not report_cluster.ours(name):
        L.append(json.dumps(d, sort_keys=True))
L.append("```")
print("\n".join(L))
