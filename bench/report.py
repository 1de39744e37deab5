"""Printing figures against targets, process memory, results file and plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def show(label: str, value: float, unit: str, target: float | None = None,
         higher: bool = False) -> None:
    """Print one figure; with a target, its ratio to the target and whether it is met."""
    line = f"  {label}: {value:,.2f} {unit}".rstrip()
    if target is not None:
        met = value >= target if higher else value <= target
        ratio = f"{value / target:.2f}× target" if target else ""
        line += f"  [target {'≥' if higher else '≤'} {target:g}{unit}: " \
                f"{'met' if met else 'MISSED'}{', ' + ratio if ratio else ''}]"
    print(line, flush=True)


def rss_mb() -> float:
    """Resident memory of this process (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def merge(results: dict[str, Any], path: Path = RESULTS / "latest.json") -> Path:
    """Merge figures into the results file, keeping keys other parts wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
    data.update(results)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def plot(results: dict[str, Any], path: Path = RESULTS / "latency_by_orgs.png") -> Path | None:
    """Decision latency (p50, p99) against organization count, log scale."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib not installed: no plot (pip install matplotlib)")
        return None
    p50 = results["decision_p50_us_by_orgs"]
    p99 = results["decision_p99_us_by_orgs"]
    xs = [int(k) for k in p50]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [p50[str(x)] for x in xs], "o-", label="p50")
    ax.plot(xs, [p99[str(x)] for x in xs], "s--", label="p99")
    ax.axhline(10, color="grey", linestyle=":", label="p50 target (10 µs)")
    ax.set_xscale("log")
    ax.set_xlabel("organizations loaded")
    ax.set_ylabel("decision latency (µs)")
    ax.set_title("authz decision latency by organization count")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
