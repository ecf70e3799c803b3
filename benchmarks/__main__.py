"""Run every benchmark: ``python -m benchmarks [--quick] [--json F] [--plot F.png] [name ...]``.

Each ``benchmarks/bench_<name>.py`` module exposes ``main(quick: bool)``, prints its own
table and returns its rows (``benchmarks.results.Table``) for ``--json`` and ``--plot``.
See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from benchmarks.results import Table, as_tables, document

PREFIX = "bench_"


def discover() -> list[str]:
    """Names (without the ``bench_`` prefix) of the benchmark modules, sorted."""
    here = str(Path(__file__).resolve().parent)
    return sorted(
        info.name[len(PREFIX) :]
        for info in pkgutil.iter_modules([here])
        if info.name.startswith(PREFIX) and not info.ispkg
    )


def main(argv: list[str] | None = None) -> int:
    available = discover()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short run (smoke test)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the rows as JSON")
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="draw throughput and capacity (matplotlib)"
    )
    parser.add_argument(
        "names", nargs="*", metavar="name", help=f"run only these (of: {', '.join(available)})"
    )
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(available))
        return 0
    unknown = [n for n in args.names if n not in available]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; have {', '.join(available)}")
    selected = args.names or available
    results: dict[str, tuple[float, list[Table]]] = {}
    for name in selected:
        module = importlib.import_module(f"{__package__ or 'benchmarks'}.{PREFIX}{name}")
        run = getattr(module, "main", None)
        if not callable(run):
            print(f"benchmarks/{PREFIX}{name}.py has no main(quick) function", file=sys.stderr)
            return 1
        print(f"== {name} {'(quick)' if args.quick else ''}".rstrip(), flush=True)
        started = time.perf_counter()
        tables = as_tables(cast(Callable[[bool], object], run)(args.quick))
        elapsed = time.perf_counter() - started
        results[name] = (elapsed, tables)
        print(f"== {name} done in {elapsed:.1f} s\n", flush=True)
    doc = document(args.quick, results)
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if args.plot is not None:
        from benchmarks.plot import plot

        plot(doc, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
