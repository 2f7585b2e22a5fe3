"""A read-only view of an input tree: a directory on disk or an ISO image.

Selection, staging and extraction only ever see :class:`Entry` records and open
files through :meth:`Tree.open`, so one code path serves directories and ISOs.
Symlinks are reported, never followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Protocol

from ..errors import SourceError
from ..fsutil import walk


class EntryKind(StrEnum):
    """What a name in a tree is; only files are ever copied."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    OTHER = "other"


@dataclass(frozen=True)
class Entry:
    """One name in a tree: '/'-joined relative path with the original case."""

    path: str
    kind: EntryKind
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

    def open(self, entry: Entry) -> AbstractContextManager[BinaryIO]:
        """Open a file entry for streaming reads."""
        ...


class DirTree:
    """A directory on disk; symlinks and special files are reported, not followed."""

    reader = "dir"

    def __init__(self, root: Path, display: str | None = None, top_only: bool = False) -> None:
        self.root = root
        self.display = display or str(root)
        self.top_only = top_only
        """List only the root's own names (an Aero checkout: its licences; its packages are read elsewhere)."""
        if not root.is_dir():
            raise SourceError(f"{self.display}: not a directory", "check source.path in the spec")

    def entries(self) -> list[Entry]:
        """Every name under the root; ``ref`` is the path on disk."""
        try:
            return self._entries()
        except OSError as exc:
            where = exc.filename or self.display
            raise SourceError(f"{where}: cannot be read ({exc.strerror})",
                              "check the folder's permissions, or point source.path elsewhere") from None

    def _entries(self) -> list[Entry]:
        out: list[Entry] = []
        for dirpath, dirnames, filenames in walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            if self.top_only and rel_dir != ".":
                break
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                rel = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    out.append(Entry(rel, EntryKind.SYMLINK, 0, full))
                elif stat.S_ISDIR(st.st_mode):
                    out.append(Entry(rel, EntryKind.DIR, 0, full))
                elif stat.S_ISREG(st.st_mode):
                    out.append(Entry(rel, EntryKind.FILE, st.st_size, full))
                else:
                    out.append(Entry(rel, EntryKind.OTHER, 0, full))
        return out

    @contextmanager
    def open(self, entry: Entry) -> Iterator[BinaryIO]:
        # O_NOFOLLOW: a file swapped for a symlink after listing is still refused.
        fd = os.open(str(entry.ref), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fp:
            yield fp
