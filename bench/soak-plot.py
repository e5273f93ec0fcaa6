#!/usr/bin/env python3
"""Plot a soak's samples: RSS, open descriptors and live tasks of each node over time, with the
pages open beside them. usage: soak-plot.py samples.csv out.png [run.txt] [soak.json]

run.txt may hold "redis restart: down at ISO" lines (marked on the plot); soak.json gives the
warm-up (marked too) and the title's figures."""
import csv
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

rows = list(csv.DictReader(open(sys.argv[1])))
out = sys.argv[2]
run = open(sys.argv[3]).read().splitlines() if len(sys.argv) > 3 else []
summary = json.load(open(sys.argv[4])) if len(sys.argv) > 4 else {}


def num(v):
    return float(v) if v not in ("", None) else None


nodes = sorted({int(r["node"]) for r in rows})
churn = [r for r in rows if r["phase"] == "churn"]
t_churn0 = float(churn[0]["t_s"]) if churn else 0.0
fig, axes = plt.subplots(4, 1, figsize=(8, 9.5), sharex=True, dpi=80)
series = [
    ("RSS (MiB)", lambda r: num(r["rss_kib"]) / 1024 if num(r["rss_kib"]) is not None else None),
    ("open descriptors", lambda r: num(r["fds"])),
    ("tasks alive", lambda r: (num(r["tasks_main"]) or 0) + (num(r["tasks_sockets"]) or 0)
     if r["tasks_main"] != "" else None),
]
for ax, (label, f) in zip(axes[:3], series):
    for n in nodes:
        pts = [(float(r["t_s"]) / 60, f(r)) for r in rows if int(r["node"]) == n and f(r) is not None]
        name = f"node {n + 1}" if len(nodes) > 1 else "server"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.2, label=name)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
# Sockets the server holds, on the descriptors' axes (each socket is a descriptor).
for n in nodes:
    pts = [(float(r["t_s"]) / 60, num(r["sockets_open"])) for r in rows
           if int(r["node"]) == n and num(r["sockets_open"]) is not None]
    axes[1].plot([p[0] for p in pts], [p[1] for p in pts], lw=0.8, ls="--", color="grey",
                 label="sockets open" if n == nodes[0] else None)
axes[1].legend(loc="lower right", fontsize=8)
# The sensitive view: what is not one per socket. Descriptors and tasks minus the sockets open
# (the listener, the database's and Redis's connections, the hub, timers) must stay level.
for n in nodes:
    for label, col, ls in (("descriptors", "fds", "-"), ("tasks", None, "--")):
        pts = []
        for r in rows:
            if int(r["node"]) != n or num(r["sockets_open"]) is None or num(r["fds"]) is None:
                continue
            v = num(r["fds"]) if col else (num(r["tasks_main"]) or 0) + (num(r["tasks_sockets"]) or 0)
            pts.append((float(r["t_s"]) / 60, v - num(r["sockets_open"])))
        name = (f"node {n + 1} " if len(nodes) > 1 else "") + f"{label} − sockets"
        axes[3].plot([p[0] for p in pts], [p[1] for p in pts], lw=1, ls=ls, label=name)
axes[3].set_ylabel("minus sockets open")
axes[3].grid(alpha=0.3)
axes[3].legend(loc="upper right", fontsize=7, ncol=2)
if len(nodes) > 1:
    axes[0].legend(loc="lower right", fontsize=8)
warm = summary.get("warmup_seconds")
# "redis restart: down at +SECONDS s" (seconds since the load generator started)
restarts = [float(line.split("+")[1].split()[0]) for line in run if line.startswith("redis restart: down at +")]
for ax in axes:
    if churn:
        ax.axvline(t_churn0 / 60, color="green", lw=0.8, ls=":")
        ax.axvline(float(churn[-1]["t_s"]) / 60, color="green", lw=0.8, ls=":")
    if warm is not None and churn:
        ax.axvline((t_churn0 + warm) / 60, color="orange", lw=0.8, ls=":")
    for t in restarts:
        ax.axvline(t / 60, color="red", lw=0.8)
axes[-1].set_xlabel("minutes (green: churn starts/ends; orange: end of warm-up; red: Redis restart)")
title = f"soak: {summary.get('users', '?')} users, {summary.get('minutes', '?')} min of churn"
fig.suptitle(title, fontsize=11)
fig.tight_layout()
fig.savefig(out)
