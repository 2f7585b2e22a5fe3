"""A file's sha256, remembered by its stat: a file is hashed once until it changes.

The key holds the path, size, mtime, device, inode and the inode change time. User
space can set an mtime back but never a ctime, so a file edited in place with its mtime
restored is hashed again. Stages that hash a file anyway (fetch proves the ISO)
record the digest, and doit's file checker, in another process, finds it instead
of reading 600 MB a second time.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .fsutil import sha256_file, write_json_atomic

MEMO_NAME = ".hash-memo.json"
MAX_ENTRIES = 4096


def stat_fields(st: os.stat_result) -> list[int]:
    """The parts of a stat that change with any write: what identifies one version of a file's bytes.

    The ctime is there because user space cannot set it (``touch -r`` and ``os.utime``
    set the mtime back, never the ctime); inode and device catch a file replaced by
    another one with the same times.
    """
    return [st.st_mtime_ns, st.st_size, st.st_ctime_ns, st.st_ino, st.st_dev]


def stat_key(path: Path, st: os.stat_result) -> str:
    """What identifies one version of a file's bytes without reading them: its path and :func:`stat_fields`."""
    return "\0".join([os.path.abspath(path), *map(str, stat_fields(st))])


class HashMemo:
    """The memo file under build/; every method reads and writes it through, so processes share it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        try:
            data: Any = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            data = {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}

    def lookup(self, file: Path, st: os.stat_result) -> str | None:
        """The recorded sha256 of ``file`` as ``st`` describes it, or None."""
        key = stat_key(file, st)
        if self._entries is None or key not in self._entries:
            self._entries = self._load()  # another process may have hashed it since
        return self._entries.get(key)

    def record(self, file: Path, st: os.stat_result, digest: str) -> None:
        """Remember that ``file``, as ``st`` describes it, has ``digest``."""
        self.record_many([(file, st, digest)])

    def record_many(self, known: list[tuple[Path, os.stat_result, str]]) -> None:
        """Remember each (file, stat, digest) of ``known``, with one write of the memo file."""
        entries = self._load()
        for file, st, digest in known:
            entries[stat_key(file, st)] = digest
        if len(entries) > MAX_ENTRIES:
            # Old stats can never match again; keep the file small.
            entries = dict(list(entries.items())[-MAX_ENTRIES // 2:])
        self._entries = entries
        if self.path.parent.is_dir():
            with contextlib.suppress(OSError):  # a cache: failing to save costs a re-hash, nothing else
                write_json_atomic(self.path, entries)

    def sha256(self, file: Path, progress: Callable[[int], None] | None = None, *, remember: bool = True) -> str:
        """The sha256 of ``file``: from the memo when its stat is unchanged, else hashed.

        ``remember=False`` does not record a fresh hash (the caller keeps it itself),
        which spares rewriting the memo file.
        """
        before = file.stat()
        known = self.lookup(file, before)
        if known is not None:
            return known
        digest, _size = sha256_file(file, progress)
        if remember and stat_key(file, file.stat()) == stat_key(file, before):
            self.record(file, before, digest)
        return digest


def proven_hash(path: Path, progress: Callable[[int], None] | None = None) -> tuple[str, int, os.stat_result | None]:
    """Hash ``path``; also return the stat the digest is valid for (None when the file changed meanwhile)."""
    before = path.stat()
    digest, size = sha256_file(path, progress)
    after = path.stat()
    return digest, size, after if stat_key(path, after) == stat_key(path, before) else None
