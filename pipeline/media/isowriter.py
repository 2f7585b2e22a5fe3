"""Write reproducible ISO 9660 + Joliet + Rock Ridge images with pycdlib.

Names: Joliet and Rock Ridge carry each name exactly as staged (Windows reads
Joliet). The primary ISO 9660 tree needs d-characters, so names are mapped by one
documented rule (upper case; anything outside A-Z 0-9 _ becomes '_'; one dot kept
in file names; length capped at 30). A mapping that makes two names in one folder
equal is an error, never a silent overwrite.

Reproducibility: every timestamp is ``SOURCE_DATE_EPOCH`` in UTC, modes are fixed,
entries are sorted, and pycdlib's clock is frozen only for the duration of the
build (pycdlib reads ``time.time()`` and ``time.localtime()`` directly).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO
from unittest import mock

import pycdlib

from .. import log
from ..errors import InternalError, SourceError, UsageError
from ..fsutil import atomic_path
from .files import MediaFile

FILE_MODE = 0o100444
DIR_MODE = 0o040555
JOLIET_MAX = 64
JOLIET_LABEL_MAX = 16
LABEL_MAX = 32
_NOT_D = re.compile(r"[^A-Z0-9_]")


def iso9660_name(name: str, is_dir: bool) -> str:
    """Map a name to the primary (ISO 9660 level 3) name space."""
    upper = name.upper()
    if is_dir:
        return _NOT_D.sub("_", upper)[:31]
    stem, dot, ext = upper.rpartition(".")
    if not dot:
        stem, ext = upper, ""
    stem, ext = _NOT_D.sub("_", stem), _NOT_D.sub("_", ext)[:8]
    stem = stem[: max(1, 30 - len(ext) - 1)]
    return f"{stem}.{ext};1"


def check_label(label: str) -> None:
    """Reject volume labels that do not fit the primary descriptor."""
    if not label or len(label) > LABEL_MAX or not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
        raise UsageError(f"volume label {label!r} is not 1-{LABEL_MAX} characters of A-Z, a-z, 0-9, '_', '.', '-'",
                         "choose a shorter or plainer label")


def plan_names(files: Sequence[MediaFile]) -> tuple[list[tuple[str, str]], list[tuple[str, str, MediaFile]]]:
    """Return (dirs, files) as (media path, ISO path[, file]) pairs, parents first, after clash checks."""
    dirs: set[str] = set()
    for f in files:
        parts = f.path.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
    iso_of: dict[str, str] = {"": ""}
    taken: dict[tuple[str, str], str] = {}
    problems = []

    def assign(path: str, is_dir: bool) -> str:
        parent, _, name = path.rpartition("/")
        if len(name) > JOLIET_MAX:
            problems.append(f"{path!r}: name is longer than {JOLIET_MAX} characters, the Joliet limit")
        iso = iso9660_name(name, is_dir)
        key = (parent.casefold(), iso.split(";")[0])
        other = taken.setdefault(key, path)
        if other != path:
            problems.append(f"{other!r} and {path!r} map to the same ISO 9660 name {iso!r}")
        return f"{iso_of[parent]}/{iso}"

    for d in sorted(dirs, key=lambda p: (p.count("/"), p)):
        iso_of[d] = assign(d, True)
    planned = [(f.path, assign(f.path, False), f) for f in sorted(files, key=lambda f: f.path)]
    if problems:
        raise SourceError("media names do not fit the ISO file system:\n" + "\n".join(problems),
                          "rename one of the files in the input")
    return [(d, iso_of[d]) for d in sorted(dirs, key=lambda p: (p.count("/"), p))], planned


def _frozen_time(epoch: int) -> types.SimpleNamespace:
    # A stand-in for the time module as pycdlib sees it: 'now' is the epoch, local is UTC.
    return types.SimpleNamespace(
        time=lambda: float(epoch),
        localtime=lambda secs=None: time.gmtime(epoch if secs is None else secs),
        gmtime=time.gmtime,
        strftime=time.strftime,
        strptime=time.strptime,
        mktime=time.mktime,
        struct_time=time.struct_time,
    )


@contextlib.contextmanager
def _pinned_clock(epoch: int) -> Iterator[None]:
    frozen = _frozen_time(epoch)
    targets = [m for m in (pycdlib.pycdlib, pycdlib.headervd, pycdlib.dates, pycdlib.utils, pycdlib.udf,
                           pycdlib.inplaceeditor) if hasattr(m, "time")]
    with contextlib.ExitStack() as stack:
        for module in targets:
            stack.enter_context(mock.patch.object(module, "time", frozen))
        yield


def write_iso(files: Sequence[MediaFile], out: Path, label: str, epoch: int) -> None:
    """Write ``files`` to ``out`` (atomically) as ISO 9660 level 3 + Joliet + Rock Ridge 1.09."""
    check_label(label)
    dirs, planned = plan_names(files)
    total = sum(f.size for _, _, f in planned)
    progress = log.Progress(f"write {out.name}", total)
    handles: list[BinaryIO] = []
    with atomic_path(out) as tmp, _pinned_clock(epoch):
        iso = pycdlib.PyCdlib()
        # pycdlib refuses a Joliet label over 16 UCS-2 characters; mkisofs truncates
        # Joliet and keeps the full label in the primary descriptor, and so do we.
        iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=label[:JOLIET_LABEL_MAX],
                sys_ident="", app_ident_str="AERO-VIRTIO-MEDIA", pub_ident_str="", preparer_ident_str="")
        iso.pvd.volume_identifier = label.encode("ascii").ljust(LABEL_MAX, b" ")
        try:
            for path, iso_path in dirs:
                iso.add_directory(iso_path, rr_name=path.rsplit("/", 1)[-1], joliet_path="/" + path,
                                  file_mode=DIR_MODE)
            for path, iso_path, f in planned:
                fp = f.open()
                handles.append(fp)
                iso.add_fp(fp, f.size, iso_path, rr_name=path.rsplit("/", 1)[-1], joliet_path="/" + path,
                           file_mode=FILE_MODE)
            # pycdlib pads silently when a file shrinks after add_fp: catch it here;
            # verify re-hashes everything afterwards anyway.
            for _, _, f in planned:
                if f.source is not None and os.stat(f.source).st_size != f.size:
                    raise SourceError(f"{f.source}: changed size while the ISO was being written", "rerun the build")
            iso.write(str(tmp), progress_cb=lambda done, tot, _opaque: progress(done, tot))
        except pycdlib.pycdlibexception.PyCdlibException as exc:
            raise InternalError(f"pycdlib could not write {out.name}: {exc}") from exc
        finally:
            for fp in handles:
                fp.close()
            iso.close()
    progress.close()
