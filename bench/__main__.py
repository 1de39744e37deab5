"""`python -m bench` (`make bench`): run each benchmark part, merge into results/latest.json.

Parts are modules of this package with `run(quick: bool) -> dict`: `core` (decision
core) always, `server` when bench/server.py exists. `--parts core` runs a subset;
`--quick` runs smaller sizes for a fast look (not comparable with full runs).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import time

from bench.report import merge, plot

PARTS = ("core", "server", "peers")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for development")
    args = parser.parse_args()
    wanted = [p for p in args.parts.split(",") if p]
    started = time.perf_counter()
    load_before = os.getloadavg()
    print(f"load average before: {_load(load_before)}", flush=True)
    for part in wanted:
        if importlib.util.find_spec(f"bench.{part}") is None:
            print(f"[{part}] not present, skipped")
            continue
        print(f"[{part}]", flush=True)
        t0 = time.perf_counter()
        results = importlib.import_module(f"bench.{part}").run(quick=args.quick)
        path = merge(results)
        print(f"[{part}] done in {time.perf_counter() - t0:.0f} s; wrote {path}", flush=True)
        if "decision_p50_us_by_orgs" in results:
            png = plot(results)
            if png:
                print(f"[{part}] plot: {png}")
    load_after = os.getloadavg()
    # Another tenant's load on this machine moves every figure: keep it beside them.
    merge({"load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in load_after],
           "bench_seconds": round(time.perf_counter() - started, 1), "quick": args.quick})
    print(f"load average after: {_load(load_after)}; whole run "
          f"{time.perf_counter() - started:.0f} s (target < 600 s)", flush=True)


def _load(avg: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in avg) + " (1 / 5 / 15 min)"


if __name__ == "__main__":
    main()
