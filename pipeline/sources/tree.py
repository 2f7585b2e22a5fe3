"""A read-only view of an input tree: a directory on disk or an ISO image.

Selection, staging and extraction only ever see :class:`Entry` records and open
files through :meth:`Tree.open`, so one code path serves directories and ISOs.
Symlinks are reported, never followed.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ContextManager, Protocol

from .errors import SourceError
from .pestub import RECIPE_SUFFIX, build_from_recipe

FILE, DIR, SYMLINK, OTHER = "file", "dir", "symlink", "other"


@dataclass(frozen=True)
class Entry:
    """One name in a tree: '/'-joined relative path with the original case."""

    path: str
    kind: str
    size: int = 0
    ref: object = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("/"))


class Tree(Protocol):
    """What stages need from an input tree."""

    display: str
    """How to name the tree in messages (a repo-relative path, or the ISO's file name)."""

    reader: str
    """Which name space was read: 'dir', 'rr', 'joliet' or 'iso9660'."""

    def entries(self) -> list[Entry]:
        """Every file, folder and symlink in the tree."""
        ...

    def open(self, entry: Entry) -> ContextManager[BinaryIO]:
        """Open a file entry for streaming reads."""
        ...


def is_recipe(name: str) -> bool:
    """Whether a file name is a stand-in PE recipe (matched case-insensitively, as on Windows)."""
    return name.lower().endswith(RECIPE_SUFFIX)


class DirTree:
    """A directory on disk; symlinks and special files are reported, not followed."""

    reader = "dir"

    def __init__(self, root: Path, display: str | None = None) -> None:
        self.root = root
        self.display = display or str(root)
        if not root.is_dir():
            raise SourceError(f"{self.display}: not a directory", "check source.path in the spec")

    def entries(self) -> list[Entry]:
        """Every name under the root. A ``<name>.pestub`` recipe is listed as ``<name>``, the
        stand-in PE it generates (see :mod:`pipeline.pestub`); ``ref`` is always the file on disk."""
        out: list[Entry] = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                rel = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    out.append(Entry(rel, SYMLINK, 0, full))
                elif stat.S_ISDIR(st.st_mode):
                    out.append(Entry(rel, DIR, 0, full))
                elif stat.S_ISREG(st.st_mode) and is_recipe(name):
                    data = self._expand(full, rel)
                    out.append(Entry(rel[: -len(RECIPE_SUFFIX)], FILE, len(data), full))
                elif stat.S_ISREG(st.st_mode):
                    out.append(Entry(rel, FILE, st.st_size, full))
                else:
                    out.append(Entry(rel, OTHER, 0, full))
        return out

    def _expand(self, full: str, rel: str) -> bytes:
        with open(full, "rb") as fp:
            try:
                return build_from_recipe(fp.read(4096), f"{self.display}/{rel}")
            except ValueError as exc:
                raise SourceError(str(exc), "fix the recipe or replace it with the real file") from None

    @contextlib.contextmanager
    def open(self, entry: Entry) -> Iterator[BinaryIO]:
        if is_recipe(str(entry.ref)):
            yield io.BytesIO(self._expand(str(entry.ref), entry.path))
            return
        # O_NOFOLLOW: a file swapped for a symlink after listing is still refused.
        fd = os.open(str(entry.ref), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fp:
            yield fp


def has_recipes(root: Path) -> bool:
    """Whether a folder holds stand-in recipes that must be expanded before tools read it."""
    return any(is_recipe(p.name) for p in root.rglob("*"))


def materialise(root: Path, dest: Path) -> None:
    """Copy the regular files of ``root`` to ``dest`` as a reader sees them (recipes expanded)."""
    tree = DirTree(root)
    for e in tree.entries():
        if e.kind == FILE:
            out = dest / e.path
            out.parent.mkdir(parents=True, exist_ok=True)
            with tree.open(e) as src, open(out, "wb") as dst:
                dst.write(src.read())
