#!/usr/bin/env python3
"""Turn one bench/run result directory (one JSON object per scenario) into BENCHMARKS.md."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

out = Path(sys.argv[1])
res = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
root = Path(__file__).resolve().parent.parent


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return "?"


def get(name, key):
    d = res.get(name)
    if not d or d.get("failed"):
        return None
    return d.get(key)


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".")
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def ratio(a, b):
    if a is None or b in (None, 0):
        return "–"
    return f"{a / b:.2f}×"


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
pip = root / "bench/peers/django-channels/.venv/bin/pip"
peer = sh(str(pip), "freeze") if pip.exists() else ""
peer = ", ".join(l for l in peer.splitlines() if l.split("==")[0].lower() in ("django", "channels", "daphne", "channels-redis", "channels_redis", "redis", "twisted"))

L = []
L.append("# Benchmarks\n")
L.append(f"Run `{out.name}` by `bench/run` (sizes from its environment; every figure below is from this one run, "
         "load generator `roster-bench` on the same cores).\n")
L.append("## Machine and versions\n")
L.append(f"- CPU: {cpu}, {os.cpu_count()} cores; memory {int(mem) // 1024 // 1024} GiB; kernel {platform.release()}")
L.append(f"- Open-file limit per process: {sh('sh', '-c', 'ulimit -n')}")
L.append(f"- {sh('rustc', '--version')}; bench commit `{sh('git', '-C', str(root), 'rev-parse', '--short', 'HEAD')}`")
rb = os.environ.get("ROSTER_BIN", "")
L.append(f"- Roster binary: `{rb}` ({sh(rb, '--version') if rb else '?'}){'; ' + os.environ.get('ROSTER_NOTE', '') if os.environ.get('ROSTER_NOTE') else ''}")
L.append(f"- Roster ran with `MALLOC_MMAP_THRESHOLD_=131072`: {os.environ.get('ROSTER_MALLOC_FIX', '0') == '1'} (see bench/run)")
L.append(f"- Django peer: Python {platform.python_version()}; {peer or '?'}; {sh('redis-server', '--version')[:40]}\n")

rows = [
    ("Fan-out: watchers", "fanout", "watchers"),
    ("Fan-out: p50 (ms)", "fanout", "p50_ms"),
    ("Fan-out: p99 (ms)", "fanout", "p99_ms"),
    ("Fan-out: max (ms)", "fanout", "max_ms"),
    ("Fan-out: missing deliveries", "fanout", "missing"),
    ("Hold: sockets connected", "hold", "connected"),
    ("Hold: connect failures", "hold", "connect_failed"),
    ("Hold: connects/s", "hold", "connects_per_s"),
    ("Hold: server RSS per socket (B)", "hold", "rss_bytes_per_socket"),
    ("Hold: RSS per socket after hold (B)", "hold", "rss_bytes_per_socket_after_hold"),
    ("Storm: watchers", "storm", "watchers"),
    ("Storm: log-ins (sockets opened)", "storm", "storm_opened"),
    ("Storm: converged after storm p99 (ms)", "storm", "converge_after_storm_p99_ms"),
    ("Storm: converged after storm max (ms)", "storm", "converge_after_storm_max_ms"),
    ("Storm: watchers not converged", "storm", "not_converged"),
    ("Storm: frames per watcher (mean)", "storm", "frames_per_watcher_mean"),
    ("User list: users", "seed", "created"),
    ("User list: requests/s", "list", "requests_per_s"),
    ("User list: p99 (ms)", "list", "p99_ms"),
    ("User list: server CPU per request (ms)", "list", "server_cpu_ms_per_request"),
]
systems = [
    ("Roster (tutorial frames)", "roster", {"storm": "roster-storm"}),
    ("Roster (roster.v1)", "roster", {"fanout": "roster-fanout-v1", "storm": "roster-storm-v1"}),
    ("floor", "floor", {}),
    ("Django Channels", "django", {}),
]
if os.environ.get("BENCH_NOTE"):
    L.append(f"**Note:** {os.environ['BENCH_NOTE']}\n")
loads = {n: d.get("loadavg_before") for n, d in res.items() if d.get("loadavg_before")}
if loads:
    L.append("Load average (1 min) before each scenario: " + ", ".join(f"{n} {v}" for n, v in loads.items()) + "\n")
L.append("Ratios are Roster (tutorial frames) over the other system; hold rows are tutorial mode only.\n")
L.append("## Side by side\n")
L.append("| | " + " | ".join(s[0] for s in systems) + " | Roster / floor | Roster / Django |")
L.append("|---|" + "---|" * (len(systems) + 2))
for label, scen, key in rows:
    vals = []
    for _, prefix, over in systems:
        name = over.get(scen, f"{prefix}-{scen}")
        vals.append(get(name, key))
    roster, floor, django = vals[0], vals[2], vals[3]
    if scen == "seed":
        roster = get("roster-seed", key)
    size_key = {"fanout": "watchers", "storm": "watchers", "hold": "sockets", "list": "requests"}.get(scen)

    def same(other):
        if size_key is None or scen == "list":
            return True
        return get(f"roster-{scen}", size_key) == get(f"{other}-{scen}", size_key)

    rf = ratio(roster, floor) if same("floor") else "sizes differ"
    rd = ratio(roster, django) if same("django") else "sizes differ"
    L.append(f"| {label} | " + " | ".join(fmt(v) for v in vals) + f" | {rf} | {rd} |")
L.append("")
L.append("Sizes differ where the Django peer cannot keep up (see the watchers rows); compare ratios only at equal sizes.\n")
L.append("## Servers (as started by bench/run)\n")
L.append("- Roster: `roster serve --bind 127.0.0.1:0 --database-url sqlite://TMP/roster.db --presence-grace 0s` (SQLite, in-process layer, default tick 100 ms, default 32 sockets per user)")
L.append("- floor: `roster-floor --bind 127.0.0.1:0` (read buffer 256 B, write buffer 4 KiB, broadcast capacity 1024)")
L.append("- Django: `bench/peers/django-channels/run --fast-hasher` (one daphne process, private redis-server, SQLite; MD5 hasher only to seed fast)\n")
L.append("## Commands (as run)\n")
for name, d in res.items():
    L.append(f"- `{name}`: `{d.get('command', '?')}`")
L.append("\n## Raw results\n")
L.append("```")
for name, d in res.items():
    L.append(json.dumps(d, sort_keys=True))
L.append("```")
print("\n".join(L))
