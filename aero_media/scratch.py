"""Files with no name on disk, handed to a program as ``/dev/fd/N``; and the sweep of older versions' temp folders.

A file a killed run leaves under a name stays until someone removes it; a file
that never had a name is freed by the kernel with the last descriptor, whatever
kills the process. So data a program only reads (the signing key from the
environment, the ``.reg`` edits for hivexregedit, the FAT partition for fsck.fat)
lives in such a file: ``memfd_create`` for small data, an ``O_TMPFILE`` file for
large data (``tempfile.TemporaryFile``, which falls back to a name it unlinks at
once). The program gets the descriptor by ``pass_fds`` and opens
``/dev/fd/N`` (on Linux a fresh open of the same file, from its start).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .fsutil import remove_tree


@dataclass(frozen=True)
class Unnamed:
    """A file with no name: its descriptor (to pass to a child) and the path the child opens it by."""

    fd: int

    @property
    def path(self) -> Path:
        """``/dev/fd/N``: what the program is told to open."""
        return Path(f"/dev/fd/{self.fd}")


@contextlib.contextmanager
def memory_file(data: bytes, name: str) -> Iterator[Unnamed]:
    """``data`` in a file that lives in memory only (``memfd_create``) and is gone when it is closed or we die.

    ``name`` only labels it in ``/proc/<pid>/fd``. Where ``memfd_create`` is missing, an
    unnamed file in ``$TMPDIR`` instead.
    """
    create = getattr(os, "memfd_create", None)
    fp: BinaryIO | None = None
    if create is not None:
        fd = create(name, getattr(os, "MFD_CLOEXEC", 1))
    else:  # pragma: no cover - every Linux this runs on has memfd_create
        fp = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
        fd = fp.fileno()
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        yield Unnamed(fd)
    finally:
        if fp is not None:  # pragma: no cover
            fp.close()
        else:
            os.close(fd)


@contextlib.contextmanager
def unnamed_file(folder: Path | None = None) -> Iterator[tuple[BinaryIO, Unnamed]]:
    """An empty file with no name in ``folder`` (default ``$TMPDIR``), for data too large for memory."""
    with tempfile.TemporaryFile(dir=folder) as fp:
        yield fp, Unnamed(fp.fileno())


# Temp folders older versions made in $TMPDIR with tempfile.mkdtemp(prefix=...): the prefix, exactly the 8
# characters mkdtemp draws, and the only entries they ever held. No version makes them any more, so one that
# exists was left by a killed run of an older version (or is in use by one still running: hence the age rule,
# except for the key, which must not stay on disk a moment longer: an old run that loses it fails, no data lost).
@dataclass(frozen=True)
class OldTempFolder:
    """One kind of folder an older version left in ``$TMPDIR``."""

    prefix: str
    entries: frozenset[str]
    min_age: float


OLD_TEMP_FOLDERS = (
    OldTempFolder("aero-signing-", frozenset({"key.pem"}), 0),
    OldTempFolder("aero-fsck-", frozenset({"partition.img"}), 3600),
    OldTempFolder("aero-reg-", frozenset({"edits.reg"}), 3600),
    OldTempFolder("aero-media-", frozenset({"build", "dist"}), 3600),
)
_MKDTEMP_NAME = re.compile(r"[a-z0-9_]{8}")


def sweep_old_temp_folders(tmpdir: Path | None = None) -> list[Path]:
    """Remove the temp folders of :data:`OLD_TEMP_FOLDERS` in ``tmpdir`` (default ``$TMPDIR``); return them.

    Only a real folder owned by this user, named exactly as ``mkdtemp`` named it and holding
    nothing but what that version put there, is removed: a user's look-alike never is.
    """
    root = Path(tmpdir or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        kind = next((k for k in OLD_TEMP_FOLDERS if entry.name.startswith(k.prefix)), None)
        if kind is None or not _MKDTEMP_NAME.fullmatch(entry.name[len(kind.prefix):]):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            inside = set(os.listdir(entry.path))
        except OSError:
            continue
        if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or not inside <= kind.entries
                or now - st.st_mtime < kind.min_age):
            continue
        with contextlib.suppress(OSError):
            remove_tree(Path(entry.path))
            removed.append(Path(entry.path))
    return removed
