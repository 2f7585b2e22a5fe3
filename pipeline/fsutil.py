"""Streaming hashes, atomic writes and directory swaps.

Every output is written beside its final name and renamed into place, so a file
that exists under its final name is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1024 * 1024


def sha256_fp(fp: BinaryIO, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
    """Hash a stream in 1 MiB chunks; return (hex sha256, size)."""
    h = hashlib.sha256()
    size = 0
    while chunk := fp.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
        if progress:
            progress(len(chunk))
    return h.hexdigest(), size


HASH_CHUNK = 8 * 1024 * 1024


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
    """Hash a file; return (hex sha256, size).

    Reads 8 MiB into one reused buffer at a time: hashlib and the read both let go
    of the GIL, so a hash in a background thread runs beside Python work, and large
    reads keep the hand-overs rare.
    """
    h = hashlib.sha256()
    size = 0
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fp:
        while n := fp.readinto(view):
            h.update(view[:n])
            size += n
            if progress:
                progress(n)
    return h.hexdigest(), size


def copy_fp_hashed(src: BinaryIO, dst: BinaryIO, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
    """Copy a stream while hashing it; return (hex sha256, size)."""
    h = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK):
        h.update(chunk)
        dst.write(chunk)
        size += len(chunk)
        if progress:
            progress(len(chunk))
    return h.hexdigest(), size


def sweep_leftovers(final: Path) -> None:
    """Remove temp siblings of ``final`` that a killed run left behind (``.<name>.*.tmp``, ``.<name>.old-*``)."""
    for pattern in (f".{final.name}.*.tmp", f".{final.name}.old-*"):
        for stale in final.parent.glob(pattern):
            remove_tree(stale)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temp path beside ``final``; rename it over ``final`` on success.

    On any exception the temp file is removed and ``final`` is left untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(final)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def dump_json(data: Any) -> bytes:
    """Serialise to stable, human-readable JSON (sorted keys, LF, trailing newline)."""
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write stable JSON to ``path`` atomically."""
    write_bytes_atomic(path, dump_json(data))


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    with open(path, "rb") as fp:
        return json.load(fp)


def _make_writable(func: Callable[..., Any], path: str, _exc: Any) -> None:
    # Upstream ISOs mark everything read-only (0444/0555); rmtree needs write bits.
    os.chmod(path, stat.S_IRWXU)
    parent = os.path.dirname(path)
    if parent:
        os.chmod(parent, stat.S_IRWXU)
    func(path)


def remove_tree(path: Path) -> None:
    """Remove a directory tree even when it holds read-only entries."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=_make_writable)


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temp dir beside ``final``; swap it into place on success.

    The old ``final`` is removed only after the new tree is complete, and a failed
    build removes its temp dir, so ``final`` is either the old or the new tree.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; staged trees are ordinary folders
    try:
        yield tmp
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            remove_tree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            remove_tree(old)
    except BaseException:
        remove_tree(tmp)
        raise


def relpath_for_humans(path: Path, root: Path | None = None, *, absolute: bool = False) -> str:
    """Render ``path`` relative to ``root`` (or the cwd), else with ``~``.

    Anywhere else it becomes its bare name, so records and media never carry a
    host's absolute path; ``absolute=True`` keeps the full path instead, for
    messages that must name a file the user can act on.
    """
    path = Path(path).absolute()
    for base in (root, Path.cwd()):
        if base is not None:
            with contextlib.suppress(ValueError):
                return path.relative_to(Path(base).absolute()).as_posix()
    with contextlib.suppress(ValueError):
        return "~/" + path.relative_to(Path.home()).as_posix()
    return str(path) if absolute else path.name
