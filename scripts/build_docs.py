"""Build the voxtrio API reference with pdoc and check its cross-references.

Usage: ``python scripts/build_docs.py [OUTPUT_DIR]`` (default ``out/api``; open
``out/api/index.html``). The reference is built from the docstrings of ``voxtrio``,
``voxtrio.codecs`` and ``voxtrio.testing`` (and their public submodules).

It exits non-zero when:

- a docstring anywhere under ``voxtrio/`` names a dotted ``voxtrio.X`` reference (in
  backticks, with or without a Sphinx role such as ``:class:`` and a ``~``) that does
  not resolve by import -- pdoc renders such a name as plain text and says nothing, so
  this script checks them itself;
- pdoc emits a warning while building (an unimportable module, a docstring it
  cannot render). One kind is only reported, not failed on: an annotation naming
  something imported under ``TYPE_CHECKING`` (numpy's types), which pdoc cannot
  evaluate and prints as written -- that is not a broken reference.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "voxtrio"
DEFAULT_OUT = ROOT / "out" / "api"
DOCUMENTED = ("voxtrio", "voxtrio.codecs", "voxtrio.testing")

# `voxtrio.a.b`, :class:`~voxtrio.a.B`, ``voxtrio.a`` -- the name inside backticks,
# optionally led by "~" and optionally followed by "()" for a callable.
_REFERENCE = re.compile(r"`+~?(voxtrio(?:\.[A-Za-z_][A-Za-z_0-9]*)*)(?:\(\))?`+")


@dataclass(frozen=True)
class BrokenReference:
    """A dotted ``voxtrio.X`` name in a docstring that does not resolve by import."""

    path: Path
    line: int
    name: str

    def __str__(self) -> str:
        """``path:line: name`` relative to the checkout, like a compiler message."""
        try:
            where = self.path.relative_to(ROOT)
        except ValueError:
            where = self.path
        return f"{where}:{self.line}: unresolved reference {self.name!r}"


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` names a module, or an attribute reachable from one."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _docstrings(tree: ast.Module) -> list[tuple[int, str]]:
    """Each docstring of a module (module, classes, functions) with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                first = node.body[0]
                found.append((first.lineno, doc))
    return found


def broken_references(package_dir: Path = PACKAGE_DIR) -> list[BrokenReference]:
    """Every dotted ``voxtrio.X`` docstring reference under ``package_dir`` that fails."""
    broken: list[BrokenReference] = []
    for path in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, doc in _docstrings(tree):
            for match in _REFERENCE.finditer(doc):
                name = match.group(1)
                if not resolves(name):
                    offset = doc.count("\n", 0, match.start())
                    broken.append(BrokenReference(path, line + offset, name))
    return broken


def build(out_dir: Path = DEFAULT_OUT) -> list[str]:
    """Render the reference into ``out_dir``; return pdoc's warnings as text."""
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="restructuredtext", show_source=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*DOCUMENTED, output_directory=out_dir)
    return [str(w.message) for w in caught]


def is_benign(warning: str) -> bool:
    """Whether a pdoc warning is the known, harmless ``TYPE_CHECKING`` annotation one."""
    return warning.startswith("Error parsing type annotation") and "failed: name" in warning


def main(argv: list[str]) -> int:
    """Build, report, and return the exit status (0: clean, 1: problems found)."""
    out_dir = Path(argv[0]) if argv else DEFAULT_OUT
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    problems = [str(ref) for ref in broken_references()]
    for text in build(out_dir):
        if is_benign(text):
            print(f"pdoc (not an error): {text}", file=sys.stderr)
        else:
            problems.append(f"pdoc: {text}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} documentation problem(s)", file=sys.stderr)
        return 1
    print(f"API reference written to {out_dir / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
