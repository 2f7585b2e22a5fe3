"""Streaming hashes, atomic writes and directory swaps.

Every output is written beside its final name and renamed into place, so a file
that exists under its final name is complete.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import queue
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1024 * 1024


HASH_CHUNK = 4 * 1024 * 1024


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
    """Hash a file; return (hex sha256, size).

    Reads 4 MiB into one reused buffer at a time: hashlib and the read both let go
    of the GIL, so a hash in a background thread runs beside Python work, and large
    reads keep the hand-overs rare. (Measured on a cold build of a 627 MB ISO: 4 MiB
    is 10% faster than 8 MiB, and 32 MiB, which no longer fits the cache, 70% slower.)
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


def copy_exactly(src: BinaryIO, dst: BinaryIO, size: int, on_chunk: Callable[[bytes], None] | None = None) -> bool:
    """Copy exactly ``size`` bytes of ``src``; False when it holds fewer or more (it changed since it was measured)."""
    left = size
    while left:
        chunk = src.read(min(CHUNK, left))
        if not chunk:
            return False
        dst.write(chunk)
        if on_chunk:
            on_chunk(chunk)
        left -= len(chunk)
    return not src.read(1)


# A temp sibling names its writer: .<name>.<pid>-<random>.tmp (and .<name>.old-<pid>-<random>), where <random>
# is the 8 characters tempfile draws (its _RandomNameSequence): the exact names our writers make (versions before
# the pid was added wrote .<name>.<random>.tmp), and so the proof that a sibling is ours. A user's look-alike
# (".<name>.notes.tmp", ".<name>.999999-mine.tmp") never matches.
_OWNED = re.compile(r"\.(?:(\d+)-[a-z0-9_]{8}\.tmp|old-(\d+)-[a-z0-9_]{8}|[a-z0-9_]{8}\.tmp)")
STALE_AFTER = 24 * 3600  # a temp untouched this long is stale whoever owns it (pids get reused)


def _temp_prefix(final: Path) -> str:
    return f".{final.name}.{os.getpid()}-"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id is running (on this host)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # pragma: no cover - os.kill() on Windows would terminate the process
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return bool(ok) and code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(path: Path, suffix: str) -> bool:
    match = _OWNED.fullmatch(suffix)
    if match is None:
        return False  # not a name our writers make: not ours to remove
    if match.group(1) is None and match.group(2) is None:
        return True  # an older version's name: its writer is long gone
    pid = int(match.group(1) or match.group(2))
    if pid == os.getpid():
        return False  # another thread of this run may be writing it
    try:
        age = time.time() - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    return not pid_alive(pid) or age > STALE_AFTER


def remove_with_leftovers(path: Path) -> None:
    """Remove ``path`` and every temp sibling of it our writers made, live or not (``doit clean``, under the lock)."""
    remove_tree(path)
    if path.parent.is_dir():
        for pattern in (f".{path.name}.*.tmp", f".{path.name}.old-*"):
            for stale in path.parent.glob(pattern):
                if _OWNED.fullmatch(stale.name[len(path.name) + 1:]):
                    with contextlib.suppress(FileNotFoundError):
                        remove_tree(stale)


def sweep_leftovers(final: Path) -> None:
    """Remove temp siblings of ``final`` that a killed run left behind.

    Only those whose name is exactly one our writers make, and whose writer is gone:
    a temp another live process is still writing (a parallel run, a doit worker),
    or a user's file of a similar name, is left alone.
    """
    for pattern in (f".{final.name}.*.tmp", f".{final.name}.old-*"):
        for stale in final.parent.glob(pattern):
            if _is_stale(stale, stale.name[len(final.name) + 1:]):
                with contextlib.suppress(FileNotFoundError):
                    remove_tree(stale)


@contextlib.contextmanager
def atomic_path(final: Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temp path beside ``final``; rename it over ``final`` (with ``mode``) on success.

    On any exception the temp file is removed and ``final`` is left untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(final)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(final), suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically, with ``mode``."""
    with atomic_path(path, mode) as tmp:
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


def walk(root: Path | str) -> Iterator[tuple[str, list[str], list[str]]]:
    """Like ``os.walk(root)`` top-down without following links, but with no recursion.

    Python 3.11's ``os.walk`` (and ``rmtree``) recurse once per level, so a hostile tree
    a thousand folders deep raised ``RecursionError``. Callers may prune ``dirnames``.
    """
    todo = [os.fspath(root)]
    while todo:
        top = todo.pop()
        dirs: list[str] = []
        files: list[str] = []
        try:
            with os.scandir(top) as it:
                for entry in it:
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        is_dir = False
                    (dirs if is_dir else files).append(entry.name)
        except OSError:
            if top == os.fspath(root):
                raise
            continue  # vanished or unreadable below the root: as os.walk does
        yield top, dirs, files
        todo.extend(os.path.join(top, d) for d in reversed(dirs))


def remove_tree(path: Path) -> None:
    """Remove a directory tree even when it holds read-only entries."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        try:
            shutil.rmtree(path, onerror=_make_writable)
        except RecursionError:
            _remove_deep_tree(path)


def _remove_deep_tree(path: Path) -> None:
    """Remove a tree too deep for ``shutil.rmtree`` (Python 3.11 recurses per level)."""
    dirs = []
    for top, _dirs, files in walk(path):
        dirs.append(top)
        with contextlib.suppress(OSError):  # read-only folders (0555, as extracted from an ISO), as rmtree's onerror
            os.chmod(top, stat.S_IRWXU)
        for name in files:
            full = os.path.join(top, name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(full)
    for top in reversed(dirs):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(top)


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temp dir beside ``final``; swap it into place on success.

    The old ``final`` is removed only after the new tree is complete, and a failed
    build removes its temp dir, so ``final`` is either the old or the new tree.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(final)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(final), suffix=".tmp", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; staged trees are ordinary folders
    try:
        yield tmp
        if final.exists() and exchange(tmp, final):
            remove_tree(tmp)  # now the old tree
            return
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-{os.getpid()}-", dir=final.parent))
            os.rmdir(old)  # a unique name to move the old tree to
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            remove_tree(old)
    except BaseException:
        remove_tree(tmp)
        raise


@functools.cache
def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None  # a C library older than glibc 2.28
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2``); False where the system cannot.

    Without it, replacing a folder takes two renames, and between them the folder
    is briefly absent (never half old, half new).
    """
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False  # a file system without the flag
    raise OSError(err, os.strerror(err), os.fspath(b))


def not_a_file(path: Path, wanted: str = "a file") -> str:
    """Why ``path`` (which is not a regular file) cannot be read as ``wanted``: absent, a folder, or a device."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return f"is a folder, not {wanted}"
    if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
        return f"is a device, not {wanted}"
    return f"is a pipe or socket, not {wanted}"


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


HANDOVER_INTERVAL = 0.0002
"""The interpreter's switch interval while :func:`quick_handover` is in force (CPython's default is 5 ms)."""

_handover_lock = threading.Lock()
_handover_users = 0
_handover_saved = 0.0


@contextlib.contextmanager
def quick_handover() -> Iterator[None]:
    """Hand the GIL over within :data:`HANDOVER_INTERVAL` while a thread hashes beside Python work.

    A hashing thread lets go of the GIL for each 4 MiB read and digest, and needs it back
    between them; with the default interval it can wait up to 5 ms each time for a busy
    Python thread to yield, about a third of a cold build's hash of a 636 MiB ISO. The
    busy thread yields only when the GIL is asked for, so this costs it little. Nested
    and concurrent uses share one setting; the last one out restores the old interval.
    """
    global _handover_users, _handover_saved
    with _handover_lock:
        if _handover_users == 0:
            _handover_saved = sys.getswitchinterval()
            sys.setswitchinterval(HANDOVER_INTERVAL)
        _handover_users += 1
    try:
        yield
    finally:
        with _handover_lock:
            _handover_users -= 1
            if _handover_users == 0:
                sys.setswitchinterval(_handover_saved)


class BackgroundSha256:
    """A sha256 computed on a thread of its own, so hashing gigabytes overlaps reading and writing them.

    hashlib lets go of the interpreter lock while it hashes a large buffer, so this
    thread and the one doing the I/O run on two cores. :meth:`update` takes bytes (never
    a buffer the caller reuses); at most ``depth`` chunks wait, so memory stays flat.
    Use it as a context manager: leaving stops the thread, also on an error.
    """

    def __init__(self, depth: int = 8) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._sha = hashlib.sha256()
        self._digest: str | None = None
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._sha.update(chunk)

    def update(self, data: bytes) -> None:
        """Hash ``data`` after what came before it."""
        if data:
            self._queue.put(data)

    def hexdigest(self) -> str:
        """Wait for every chunk to be hashed; the digest."""
        if self._digest is None:
            self._queue.put(None)
            self._thread.join()
            self._digest = self._sha.hexdigest()
        return self._digest

    def __enter__(self) -> BackgroundSha256:
        return self

    def __exit__(self, *exc: object) -> None:
        self.hexdigest()


COPY_STEP = 64 * 1024 * 1024
"""How much one ``copy_file_range`` call moves: small enough for a progress line every step."""


def copy_range(src: int, dst: int, offset: int, length: int, dst_offset: int,
               progress: Callable[[int], None] | None = None) -> int:
    """Copy ``length`` bytes at ``offset`` of file descriptor ``src`` to ``dst_offset`` of ``dst``; the bytes copied.

    ``os.copy_file_range`` moves them inside the kernel: on this project's Linux
    machines writing gigabytes through a user-space buffer costs several times as much
    system time as the same copy in the kernel. Where the call is missing or refused
    (another OS, a file system pair it does not serve) it falls back to reads and
    writes. Fewer bytes than asked means ``src`` ended first.
    """
    done = 0
    native = hasattr(os, "copy_file_range")
    while done < length:
        step = min(COPY_STEP, length - done)
        moved = -1
        if native:
            try:
                moved = os.copy_file_range(src, dst, step, offset + done, dst_offset + done)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
                    raise
                native = False
        if moved < 0:
            chunk = os.pread(src, min(step, HASH_CHUNK), offset + done)
            view, at = memoryview(chunk), dst_offset + done
            while view:  # pwrite may write less than asked
                wrote = os.pwrite(dst, view, at)
                view, at = view[wrote:], at + wrote
            moved = len(chunk)
        if moved == 0:
            break
        done += moved
        if progress is not None:
            progress(moved)
    return done
