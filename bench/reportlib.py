"""What bench/report.py and bench/report_cluster.py share: one bench/run result directory (one
JSON object per scenario) and how its figures are written."""
import json
from pathlib import Path


class Results:
    def __init__(self, out):
        self.out = Path(out)
        self.res = {p.stem: json.loads(p.read_text()) for p in sorted(self.out.glob("*.json"))}

    def get(self, name, key):
        d = self.res.get(name)
        if not d or d.get("failed"):
            return None
        return d.get(key)

    def failed_note(self, name):
        d = self.res.get(name)
        if d and d.get("failed"):
            return f"failed: {d.get('error', '').strip()[:200]}"
        return None


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".")
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def ratio(a, b, digits=2):
    if a is None or b in (None, 0):
        return "–"
    return f"{a / b:.{digits}f}×"


def verdict(ok):
    return "–" if ok is None else ("**yes**" if ok else "**no**")


# bench/soak_report.py's section of BENCHMARKS.md (after the findings, before the commands).
SOAK_BEGIN = "<!-- soak section: written by bench/soak_report.py -->"
SOAK_END = "<!-- end of the soak section -->"
