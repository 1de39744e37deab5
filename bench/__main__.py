"""`python -m bench` (`make bench`): run each benchmark part, merge into results/latest.json.

Parts are modules of this package with `run(quick: bool) -> dict`: `core` (decision
core) always, `server` when bench/server.py exists. `--parts core` runs a subset;
`--quick` runs smaller sizes for a fast look (not comparable with full runs).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import time

from bench.report import merge, plot

PARTS = ("core", "server")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for development")
    args = parser.parse_args()
    wanted = [p for p in args.parts.split(",") if p]
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


if __name__ == "__main__":
    main()
