"""The import graph has no arrow running back up.

Each top-level part of voxtrio sits on a floor and imports only from its own floor or
below: the ground floor (audio, errors) imports nothing of ours, the vocabulary stands
on it, the sans-IO codecs on both, and so on up to the command line. Nothing under
``voxtrio/codecs`` imports trio. A new top-level module must be given a floor here,
deliberately.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import voxtrio

ROOT = Path(voxtrio.__file__).parent

#: The floor of every top-level part (a module or a package under voxtrio/).
FLOORS = {
    "audio": 0,
    "errors": 0,
    "function_tool": 0,  # a tool's declaration: attrs only; messages and codecs name it
    "messages": 1,
    "codecs": 2,
    "stores": 3,
    "actors": 4,
    "tools": 4,  # @voxtrio.tool: declarations (floor 0) plus calling under trio
    "runtime": 5,
    "providers": 6,
    "testing": 6,
    "telephony": 7,
    "__init__": 8,
    "cli": 9,
    "__main__": 9,
}

#: Kept so that imports of an earlier layout keep working; each names the one module
#: it re-exports from a higher floor.
COMPAT_ALIASES = {"voxtrio.runtime.providers": "voxtrio.providers.openai"}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path))
    return found


def _imports(name: str, path: Path) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                targets.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                targets.add(node.module)
        elif isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
    return targets


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = _modules()


@pytest.mark.parametrize(("name", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_a_module_imports_only_from_its_floor_or_below(name: str, path: Path) -> None:
    part = _part(name)
    assert part in FLOORS, f"{name}: give voxtrio.{part} a floor in FLOORS"
    for target in _imports(name, path):
        if not target.startswith("voxtrio") or COMPAT_ALIASES.get(name) == target:
            continue
        other = _part(target)
        assert other in FLOORS, f"{name} imports {target}, which has no floor"
        assert FLOORS[other] <= FLOORS[part], (
            f"{name} (floor {FLOORS[part]}) imports {target} (floor {FLOORS[other]})"
        )


@pytest.mark.parametrize(
    ("name", "path"),
    [(m, p) for m, p in MODULES if _part(m) == "codecs"],
    ids=[m for m, _ in MODULES if _part(m) == "codecs"],
)
def test_the_codecs_never_import_trio(name: str, path: Path) -> None:
    bad = {t for t in _imports(name, path) if t == "trio" or t.startswith("trio.")}
    assert not bad, f"{name} imports {sorted(bad)}: codecs are sans-IO"


def test_the_floors_are_not_vacuous() -> None:
    """The scan finds the modules and their imports (else the tests above pass on
    nothing): messages imports the ground floor, the session the actors."""
    by_name = dict(MODULES)
    assert "voxtrio.audio" in _imports("voxtrio.messages", by_name["voxtrio.messages"])
    session = _imports("voxtrio.runtime.pipeline", by_name["voxtrio.runtime.pipeline"])
    assert any(t.startswith("voxtrio.actors") for t in session)
    assert len(MODULES) > 50
