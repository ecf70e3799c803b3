"""The public API is documented, and the API reference builds from it.

Every name exported by ``voxtrio``, ``voxtrio.codecs`` and ``voxtrio.testing`` -- and
every public method and property of the public classes among them -- has a docstring
of its own (not the one Python, dataclasses or attrs make up). Every dotted
``voxtrio.X`` reference written in a docstring under ``voxtrio/`` resolves by import,
and ``scripts/build_docs.py`` renders the reference with pdoc without a warning that
would mean something is broken. This runs in the ordinary test job, so CI fails on an
undocumented public name or a broken reference.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import voxtrio

ROOT = Path(voxtrio.__file__).resolve().parent.parent
MODULES = ("voxtrio", "voxtrio.codecs", "voxtrio.testing")


def _load_build_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_docs", ROOT / "scripts" / "build_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build_docs = _load_build_docs()


def _public_objects() -> list[tuple[str, Any]]:
    """(qualified export name, object) for every documentable export.

    Type aliases and constants (``Event``, ``FrameMs``, ``__version__``) are values
    with no ``__doc__`` of their own at run time, so they are left out here.
    """
    found: list[tuple[str, Any]] = []
    for modname in MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj):
                found.append((f"{modname}.{name}", obj))
    return found


def _made_up(cls: type, doc: str) -> bool:
    """Whether ``doc`` is a docstring a class gets without anyone writing one."""
    if doc.startswith(f"{cls.__name__}("):  # dataclasses / attrs write the signature
        return True
    return any(doc == inspect.getdoc(base) for base in (object, type, Exception))


def _members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties defined by ``cls`` or its voxtrio bases."""
    members: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("voxtrio"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            if isinstance(value, property) or inspect.isfunction(value):
                members[name] = value
    return sorted(members.items())


PUBLIC = _public_objects()


def test_the_public_names_are_many() -> None:
    # Guards the parametrisation below against silently checking nothing.
    assert len(PUBLIC) > 50
    assert "voxtrio.open_session" in dict(PUBLIC)


@pytest.mark.parametrize(("qualname", "obj"), PUBLIC, ids=[q for q, _ in PUBLIC])
def test_public_name_has_a_docstring(qualname: str, obj: Any) -> None:
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{qualname} has no docstring"
    if inspect.isclass(obj):
        assert not _made_up(obj, doc), f"{qualname} has only a generated docstring"


CLASSES = sorted({q: o for q, o in PUBLIC if inspect.isclass(o)}.items())


@pytest.mark.parametrize(("qualname", "cls"), CLASSES, ids=[q for q, _ in CLASSES])
def test_public_methods_and_properties_have_docstrings(qualname: str, cls: type) -> None:
    missing = []
    for name, member in _members(cls):
        doc = inspect.getdoc(member)
        if not (doc and doc.strip()) or doc == inspect.getdoc(getattr(object, name, None)):
            missing.append(name)
    assert not missing, f"{qualname}: no docstring on {', '.join(missing)}"


def test_dotted_references_in_docstrings_resolve() -> None:
    broken = build_docs.broken_references()
    assert not broken, "\n".join(str(b) for b in broken)


def test_the_reference_check_catches_a_broken_name(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(
        '"""See :class:`~voxtrio.audio.AudioFrame` and `voxtrio.audio.build_frame()`."""\n\n'
        "def f() -> None:\n"
        '    """Unlike :func:`voxtrio.audio.no_such_thing`, or ``voxtrio.nowhere``."""\n',
        encoding="utf-8",
    )
    broken = build_docs.broken_references(tmp_path)
    assert [(b.name, b.line) for b in broken] == [
        ("voxtrio.audio.no_such_thing", 4),
        ("voxtrio.nowhere", 4),
    ]


def test_the_api_reference_builds(tmp_path: Path) -> None:
    warnings = build_docs.build(tmp_path)
    assert [w for w in warnings if not build_docs.is_benign(w)] == []
    for page in ("index.html", "voxtrio.html", "voxtrio/codecs.html", "voxtrio/testing.html"):
        assert (tmp_path / page).is_file(), page
    top = (tmp_path / "voxtrio.html").read_text(encoding="utf-8")
    assert "open_session" in top
    assert "OpenAIRealtime" in top
