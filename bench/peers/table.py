"""The side-by-side table (echo floor | authz | Cerbos | ratio | target | pass/short).

Figures from the decision-core part (decision p50 by organization count, memory) are
read from bench/results/latest.json when that part has run; the rows say so if not.
"""

from __future__ import annotations

import json
from typing import Any

from bench.report import RESULTS


def _core() -> dict[str, Any]:
    path = RESULTS / "latest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str, str, str]]:
    """(figure, echo, authz, Cerbos, ratio, target, verdict) rows."""
    p = results["peers"]
    core = {**_core(), **results}
    out: list[tuple[str, str, str, str, str, str, str]] = []

    def row(label: str, echo: float | None, ours: float | None, theirs: float | None,
            unit: str, ratio: float | None, target: str, ok: bool | None) -> None:
        def f(x: float | None) -> str:
            return "—" if x is None else f"{x:,.1f} {unit}".strip()
        verdict = "—" if ok is None else ("pass" if ok else "SHORT")
        out.append((label, f(echo), f(ours), f(theirs),
                    "—" if ratio is None else f"{ratio:.2f}", target, verdict))

    lat = p["latency_us"]
    e, a, c = lat["echo"]["p50"], lat["authz"]["p50"], lat["cerbos"]["p50"]
    row("Check p50, one call at a time", e, a, c, "µs", a / c, "≤ 1.00 × Cerbos", a <= c)
    row("  same, authz / echo floor", e, a, None, "µs", a / e, "≤ 1.15 × echo", a <= 1.15 * e)
    row("Check p99, one call at a time", lat["echo"]["p99"], lat["authz"]["p99"],
        lat["cerbos"]["p99"], "µs", lat["authz"]["p99"] / lat["cerbos"]["p99"], "", None)
    rps, cpu = p["rps_32"], p["server_cpu_us_per_call_32"]
    row("calls/s, 32 in flight (single calls)", rps["echo"], rps["authz"], rps["cerbos"], "/s",
        rps["authz"] / rps["cerbos"], "", None)
    row("server CPU per call, 32 in flight, single calls", cpu["echo"], cpu["authz"],
        cpu["cerbos"], "µs", cpu["authz"] / cpu["cerbos"], "≤ 0.50 × Cerbos",
        cpu["authz"] <= 0.5 * cpu["cerbos"])
    if "authz_coalesced" in cpu:
        row("server CPU per call, 32 callers, coalescing client", None, cpu["authz_coalesced"],
            cpu["cerbos"], "µs", cpu["authz_coalesced"] / cpu["cerbos"], "≤ 0.50 × Cerbos",
            cpu["authz_coalesced"] <= 0.5 * cpu["cerbos"])
        row("calls/s, 32 callers, coalescing client", None, rps["authz_coalesced"],
            rps["cerbos"], "/s", rps["authz_coalesced"] / rps["cerbos"], "", None)
    else:
        out.append(("server CPU per call, coalescing client", "—", "not measured", "—", "—",
                    "≤ 0.50 × Cerbos", "n/a (no coalescing client installed)"))
    b = p["batch_1000"]
    row("1,000 decisions, wall (audit on)", None, b["authz"]["wall_ms"], b["cerbos"]["wall_ms"],
        "ms", b["authz"]["wall_ms"] / b["cerbos"]["wall_ms"], "≤ 0.50 × Cerbos",
        b["authz"]["wall_ms"] <= 0.5 * b["cerbos"]["wall_ms"])
    row("1,000 decisions, server CPU (audit on)", None, b["authz"]["cpu_ms"],
        b["cerbos"]["cpu_ms"], "ms", b["authz"]["cpu_ms"] / max(b["cerbos"]["cpu_ms"], 1e-9),
        "≤ 0.50 × Cerbos", b["authz"]["cpu_ms"] <= 0.5 * b["cerbos"]["cpu_ms"])
    by = p["server_cpu_us_per_call_32_by_orgs"]
    hi = max(by["authz"], key=int)
    ra = by["authz"][hi] / by["authz"]["1"]
    row(f"server CPU per call at {int(hi):,} orgs / at 1", None, by["authz"][hi],
        by["cerbos"].get(hi), "µs", ra, "≤ 1.20 × 1 org", ra <= 1.2)
    for count in sorted(by["authz"], key=int):
        row(f"  server CPU per call, 32 in flight, {int(count):,} orgs", None,
            by["authz"][count], by["cerbos"].get(count), "µs",
            by["authz"][count] / by["cerbos"][count] if count in by["cerbos"] else None, "",
            None)
    dec = core.get("decision_p50_us_by_orgs")
    if dec:
        worst = max(dec.values())
        spread = worst / min(dec.values())
        row("decision p50, worst of 1..10,000 orgs", None, worst, None, "µs", None, "≤ 10 µs",
            worst <= 10)
        row("decision p50 spread 1 → 10,000 orgs", None, spread, None, "×", None, "≤ 1.5 ×",
            spread <= 1.5)
    rss = core.get("rss_mb_per_1000_orgs")
    if rss:
        gb = rss * 10 / 1024
        row("10,000 orgs resident (policy + directory)", None, gb, None, "GB", None, "≤ 2 GB",
            gb <= 2)
    idle = p["idle_cpu_ms_per_s"]
    row("idle server CPU", idle["echo"], idle["authz"], idle["cerbos"], "ms/s", None,
        "< 1 ms/s", idle["authz"] < 1)
    return out


def show(results: dict[str, Any]) -> None:
    """Print the table (Markdown, so it can be pasted into a note as it is)."""
    head = ("figure", "echo floor", "authz", f"Cerbos {results['peers']['cerbos_version']}",
            "authz / Cerbos", "target", "verdict")
    table = [head, *rows(results)]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for n, r in enumerate(table):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    a = results["peers"]["agreement"]
    print(f"  same answers: {a['agreed']:,} of {a['asked']:,} random questions; modelled "
          "differences: " + "; ".join(a["modelled_differences"]), flush=True)
