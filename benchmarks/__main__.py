"""Run every benchmark: ``python -m benchmarks [--quick] [name ...]``.

Each ``benchmarks/bench_<name>.py`` module exposes ``main(quick: bool) -> None`` and
prints its own table. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

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
    for name in selected:
        module = importlib.import_module(f"{__package__ or 'benchmarks'}.{PREFIX}{name}")
        run = getattr(module, "main", None)
        if not callable(run):
            print(f"benchmarks/{PREFIX}{name}.py has no main(quick) function", file=sys.stderr)
            return 1
        print(f"== {name} {'(quick)' if args.quick else ''}".rstrip(), flush=True)
        started = time.perf_counter()
        cast(Callable[[bool], None], run)(args.quick)
        print(f"== {name} done in {time.perf_counter() - started:.1f} s\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
