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


def plot_peers(results: dict[str, Any], path: Path = RESULTS / "peers.png") -> Path | None:
    """authz beside Cerbos and the echo floor, four panels read at a glance: latency,
    server CPU per call at 32 in flight, 1,000 decisions, CPU per call by org count."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib not installed: no plot (pip install matplotlib)")
        return None
    p = results["peers"]
    colors = {"echo": "#999999", "authz": "#1f77b4", "authz_coalesced": "#17becf",
              "cerbos": "#ff7f0e"}
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))

    def bars(ax: Any, values: dict[str, float], title: str, unit: str) -> None:
        names = list(values)
        ax.bar(names, [values[n] for n in names], color=[colors.get(n, "#2ca02c") for n in names])
        for i, n in enumerate(names):
            ax.annotate(f"{values[n]:,.0f}", (i, values[n]), ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", labelsize=8)

    bars(axes[0], {k: v["p50"] for k, v in p["latency_us"].items()},
         "Check p50, one call at a time\n(lower is better)", "µs")
    bars(axes[1], p["server_cpu_us_per_call_32"],
         "server CPU per call, 32 in flight\n(lower is better)", "µs")
    b = p["batch_1000"]
    xs = range(len(b))
    axes[2].bar([x - 0.2 for x in xs], [v["wall_ms"] for v in b.values()], 0.4, label="wall",
                color=[colors[k] for k in b])
    axes[2].bar([x + 0.2 for x in xs], [v["cpu_ms"] for v in b.values()], 0.4,
                label="server CPU", color=[colors[k] for k in b], alpha=0.5, hatch="//")
    axes[2].set_xticks(list(xs), list(b))
    axes[2].set_title("1,000 decisions (audit on)\nwall (solid), server CPU (hatched)",
                      fontsize=10)
    axes[2].set_ylabel("ms")
    by = p["server_cpu_us_per_call_32_by_orgs"]
    for name, series in by.items():
        xs2 = sorted(int(k) for k in series)
        axes[3].plot(xs2, [series[str(x)] for x in xs2], "o-", label=name, color=colors[name])
    axes[3].set_xscale("log")
    axes[3].set_xlabel("organizations served")
    axes[3].set_ylabel("µs")
    axes[3].set_title("server CPU per call by organization count\n(flat is the target)",
                      fontsize=10)
    axes[3].set_ylim(bottom=0)
    axes[3].legend(fontsize=8)
    fig.suptitle(f"authz vs Cerbos {p['cerbos_version']} vs echo floor (one run, interleaved)",
                 fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
