"""Code fingerprints per stage: a hash of exactly the code a stage runs.

A stage's fingerprint covers the module of its stage function and every module
it imports, transitively, within the package (imports inside functions count,
since they run), plus each template file whose name appears as a string in that
code. Modules are hashed as their syntax tree without docstrings, so comments,
docstrings and formatting never rerun anything, while any change to what the
code does reruns exactly the stages that run it. An edit to ``cli.py`` reruns
nothing; an edit to the ISO writer reruns the media writers and verification.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..fsutil import write_json_atomic

PACKAGE = "aero_media"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = Path("media") / "templates"
_MEMO_VERSION = 1
MEMO_NAME = "code-memo.json"


@dataclass(frozen=True)
class _Module:
    digest: str
    imports: frozenset[str]
    strings: frozenset[str]


def _module_name(path: Path, root: Path, package: str) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [package, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    # A module's level-1 import means its own package; a package's __init__ is that package.
    keep = len(base) - node.level + (1 if is_package else 0)
    prefix = ".".join(base[:keep])
    return f"{prefix}.{node.module}" if node.module else prefix


_SCOPES = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


def _analyse(source: bytes, name: str, is_package: bool) -> _Module:
    """One walk over the tree: its imports, its string constants, and its docstrings dropped."""
    tree = ast.parse(source)
    strings: set[str] = set()
    imports: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                strings.add(node.value)
        elif isinstance(node, ast.Import):
            imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, name, is_package)
            imports.add(target)
            # "from .x import y" may name a submodule y; unknown names are dropped later.
            imports.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, _SCOPES):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    dump = ast.dump(tree, annotate_fields=False, include_attributes=False)
    return _Module(hashlib.sha256(dump.encode()).hexdigest(), frozenset(imports), frozenset(strings))


def _load_memo(memo: Path | None) -> dict[str, Any]:
    if memo is None:
        return {}
    try:
        data = json.loads(memo.read_bytes())
        return data if isinstance(data, dict) and data.get("version") == _MEMO_VERSION else {}
    except (OSError, ValueError):
        return {}


@cache
def _index(root: Path, package: str, memo: Path | None = None) -> dict[str, _Module]:
    """Every module under ``root``: normalised digest, imports and string constants.

    Parsing the package takes a fifth of a second; ``memo`` keeps each module's
    analysis keyed by the sha256 of its bytes, so an unchanged tree is only read.
    """
    known = _load_memo(memo).get("modules", {})
    fresh: dict[str, Any] = {}
    modules: dict[str, _Module] = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        name = _module_name(path, root, package)
        source = path.read_bytes()
        key = f"{name}:{hashlib.sha256(source).hexdigest()}"
        hit = known.get(key)
        if hit is not None:
            modules[name] = _Module(hit[0], frozenset(hit[1]), frozenset(hit[2]))
        else:
            modules[name] = _analyse(source, name, path.name == "__init__.py")
        m = modules[name]
        fresh[key] = [m.digest, sorted(m.imports), sorted(m.strings)]
    if memo is not None and fresh != known and memo.parent.is_dir():
        with contextlib.suppress(OSError):  # only a cache: a read-only build folder costs time, nothing else
            write_json_atomic(memo, {"version": _MEMO_VERSION, "modules": fresh})
    return modules


def prepare(memo: Path) -> None:
    """Analyse the package now, saving ``memo``: later fingerprints in this process only read the analysis."""
    _index(PACKAGE_ROOT, PACKAGE, memo)


def closure(entry_modules: tuple[str, ...], root: Path = PACKAGE_ROOT, package: str = PACKAGE,
            memo: Path | None = None) -> list[str]:
    """The package's modules that ``entry_modules`` run, with the packages that hold them, sorted."""
    index = _index(root, package, memo)
    seen: set[str] = set()
    todo = list(entry_modules)
    while todo:
        name = todo.pop()
        if name in seen or name not in index:
            continue
        seen.add(name)
        todo.extend(index[name].imports)
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
    return sorted(seen)


def code_fingerprint(entry_modules: tuple[str, ...], root: Path = PACKAGE_ROOT, package: str = PACKAGE,
                     memo: Path | None = None) -> str:
    """A hash of the code ``entry_modules`` run and the templates that code names.

    ``memo`` names a file that caches the per-module analysis (see :func:`_index`).
    """
    index = _index(root, package, memo)
    h = hashlib.sha256()
    templates: set[str] = set()
    for name in closure(entry_modules, root, package, memo):
        h.update(f"{name}\0{index[name].digest}\0".encode())
        templates |= index[name].strings
    for name, path in sorted(_templates(root).items()):
        if name in templates:
            h.update(f"template {name}\0".encode() + path.read_bytes())
    return h.hexdigest()[:16]


@cache
def _templates(root: Path) -> dict[str, Path]:
    folder = root / TEMPLATES
    return {p.name: p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
