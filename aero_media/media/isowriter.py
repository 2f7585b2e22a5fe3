"""Write reproducible ISO 9660 + Joliet + Rock Ridge images (ECMA-119, Joliet level 3, RRIP 1.09),
optionally with a UDF 1.02 bridge (``udf.py``) and El Torito boot records (``eltorito.py``).

Our own writer: pycdlib reads the wall clock at every ``add_*`` call, so the only
way to make it reproducible was to patch its ``time`` process-wide, which races
between threads. Here every date is a parameter (``SOURCE_DATE_EPOCH``, UTC), so
writes in parallel threads give the same bytes as serial ones.

Names: Joliet and Rock Ridge carry each name exactly as staged (Windows reads
Joliet). The primary ISO 9660 tree needs d-characters, so names are mapped by one
documented rule (upper case; anything outside A-Z 0-9 _ becomes '_'; one dot kept
in file names; length capped at 30). A mapping that makes two names in one folder
equal is an error, never a silent overwrite.

Files whose bytes come from the same file on disk (or the same region of one) share
one extent (a hard link: the medium grows by their directory records only); the UDF
tree names the very extents the ISO 9660 and Joliet trees name. Where the UDF
structures go, and why, is in docs/design.md ("The UDF bridge and El Torito"). File data is streamed, 1 MiB
at a time, straight into the image; a file that changes size meanwhile is an error.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .. import log
from ..errors import SourceError, UsageError
from ..fsutil import HASH_CHUNK, BackgroundSha256, atomic_path, copy_range
from ..winnames import MAX_COMPONENT as JOLIET_MAX  # Joliet's name length: one home, beside the other name rules
from ..winnames import NameLimits, component_problem
from . import udf as udfmod
from .eltorito import BOOT_RECORD_SECTOR, BootImage, boot_record, catalog, check_boot
from .files import MediaFile

SECTOR = 2048
FILE_MODE = 0o100444
DIR_MODE = 0o040555
JOLIET_LABEL_MAX = 16
LABEL_MAX = 32
MAX_DEPTH = 8  # ECMA-119 6.8.2.1: the root and seven levels below it
MAX_FILE = 0xFFFFFFFF  # one extent; larger files need multi-extent records, which these media never do
APPLICATION = "AERO-VIRTIO-MEDIA"
_NOT_D = re.compile(r"[^A-Z0-9_]")
_D_LABEL = re.compile(r"[A-Z0-9_]{1,32}")
# RRIP 1.09's extension reference, as every Rock Ridge writer spells it.
_ER_ID = b"RRIP_1991A"
_ER_DES = b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS"
_ER_SRC = (b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY "
           b"VOLUME DESCRIPTOR FOR CONTACT INFORMATION.")


# Windows' own name rules, nothing more: lengths are checked against Joliet in plan_names().
_ANY_LENGTH = NameLimits(1 << 30, "no limit")


def check_media_paths(files: Sequence[MediaFile]) -> None:
    """Refuse, in one line, a path no reader (Windows, 7-Zip, the kernel) reads back as written.

    A NUL or ``\\`` in a name, an empty, ``.`` or ``..`` component, ``C:``, a reserved device name,
    a trailing dot or space, or a file that is also a folder of another file's path.
    """
    files_by_key: dict[str, str] = {}
    dirs: dict[str, str] = {}
    for f in files:
        parts = f.path.split("/")
        for part in parts:
            problem = component_problem(part, _ANY_LENGTH)
            if problem:
                raise UsageError(f"media path {f.path!r}: {problem}", "rename the file before writing the ISO")
        files_by_key[f.path.casefold()] = f.path
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            dirs.setdefault(prefix.casefold(), prefix)
    both = sorted(set(files_by_key) & set(dirs))
    if both:
        raise UsageError(f"media path {files_by_key[both[0]]!r} is a file and also a folder of another file",
                         "rename one of them before writing the ISO")


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


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot be a volume identifier, or None."""
    if not _D_LABEL.fullmatch(label):
        return (f"volume label {label!r} is not 1-{LABEL_MAX} ISO 9660 d-characters "
                "(upper-case A-Z, digits 0-9 and '_')")
    return None


def check_label(label: str) -> None:
    """Reject volume labels that do not fit the primary descriptor; say what Joliet cuts."""
    problem = label_problem(label)
    if problem:
        raise UsageError(problem, "choose a label of at most 32 upper-case letters, digits and '_'")
    if len(label) > JOLIET_LABEL_MAX:
        log.warn(f"volume label {label!r} has {len(label)} characters: the primary descriptor keeps all of them, "
                 f"but Windows shows the Joliet label, which holds {JOLIET_LABEL_MAX}: "
                 f"{label[:JOLIET_LABEL_MAX]!r}")


# --- encodings (ECMA-119 7 and 9) ---------------------------------------------------------------


def _both16(n: int) -> bytes:
    return struct.pack("<H", n) + struct.pack(">H", n)


def _both32(n: int) -> bytes:
    return struct.pack("<I", n) + struct.pack(">I", n)


def _record_date(epoch: int) -> bytes:
    t = time.gmtime(epoch)
    return bytes([t.tm_year - 1900, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, 0])


def _volume_date(epoch: int | None) -> bytes:
    if epoch is None:
        return b"0" * 16 + b"\0"  # "not specified"
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(epoch)).encode("ascii") + b"00\0"


def _pad(text: bytes, size: int, fill: bytes = b" ") -> bytes:
    out = text + fill * ((size - len(text)) // len(fill))
    return out + b"\0" * (size - len(out))


def _ucs2(text: str, size: int) -> bytes:
    return _pad(text.encode("utf-16-be"), size, " ".encode("utf-16-be"))


# --- the tree ----------------------------------------------------------------------------------


@dataclass
class _Dir:
    path: str
    name: str
    iso: str
    parent: _Dir | None
    dirs: list[_Dir] = field(default_factory=list)
    files: list[_File] = field(default_factory=list)
    number: tuple[int, int] = (0, 0)  # path table numbers, ISO tree and Joliet tree
    extent: tuple[int, int] = (0, 0)
    size: tuple[int, int] = (0, 0)
    udf: tuple[int, int, int] = (0, 0, 0)  # UDF File Entry sector, first sector and bytes of its identifiers
    unique: int = 0  # UDF unique ID (the root's is 0)

    @property
    def depth(self) -> int:
        return 1 if self.parent is None else self.parent.depth + 1


@dataclass
class _File:
    path: str
    name: str
    iso: str
    media: MediaFile
    size: int
    extent: int = 0
    links: int = 1
    udf_entry: int = 0  # sector of its UDF File Entry
    unique: int = 0


def _iso_key(ident: str) -> tuple[bytes, bytes]:
    # ECMA-119 9.3: by name, then extension, each padded with spaces.
    name, _, ext = ident.split(";")[0].partition(".")
    return name.encode("ascii").ljust(31, b" "), ext.encode("ascii").ljust(31, b" ")


def _uncut(name: str) -> str:
    """A name mapped to d-characters (upper case, ``_`` for the rest) without the level 3 length cuts."""
    return _NOT_D.sub("_", name.upper())


def _numbered(iso: str, n: int, is_dir: bool) -> str:
    """``iso`` with ``_n`` at the end of its name, cut to keep the level 3 lengths (31 for a folder, 30 for
    name, dot and extension), as mastering tools number names that map alike."""
    tag = f"_{n}"
    if is_dir:
        return iso[:31 - len(tag)] + tag
    stem, _, ext = iso.split(";")[0].rpartition(".")
    return f"{stem[:max(1, 30 - len(ext) - 1 - len(tag))]}{tag}.{ext};1"


def plan_names(files: Sequence[MediaFile], folders: Sequence[str] = ()) -> tuple[list[tuple[str, str]],
                                                                              list[tuple[str, str, MediaFile]]]:
    """Return (dirs, files) as (media path, ISO path[, file]) pairs, parents first, after clash checks.

    ``folders`` adds folders that hold no file (they and their parents appear as any other).
    Names that map alike in full are an error naming both (``a-b.inf`` and ``A_B.inf``: a reader of
    the ISO 9660 tree could not tell them apart, and names differing only in case are one name to
    Windows); long names that only the ISO 9660 length cut makes alike (``microsoft-windows-terminalservices-
    licenseserver`` and ``...-appserver-licensing``, both under a Windows DVD's ``sources``) are
    numbered in the ISO 9660 tree alone, in path order, so the bytes still repeat.
    """
    dirs: set[str] = set()
    for path in [*(f.path for f in files), *(f"{d.strip('/')}/" for d in folders if d.strip("/"))]:
        parts = path.split("/")
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
        other = taken.get((parent.casefold(), iso.split(";")[0]))
        if other is not None and _uncut(other.rpartition("/")[2]) == _uncut(name):
            # Alike before any cut (case, or characters ISO 9660 lacks): a clash in the input's names to fix.
            problems.append(f"{other!r} and {path!r} map to the same ISO 9660 name {iso!r}")
        n = 1
        while other is not None and n < 10000:
            iso = _numbered(iso9660_name(name, is_dir), n, is_dir)
            other = taken.get((parent.casefold(), iso.split(";")[0]))
            n += 1
        taken[(parent.casefold(), iso.split(";")[0])] = path
        return f"{iso_of[parent]}/{iso}"

    ordered_dirs = sorted(dirs, key=lambda p: (p.count("/"), p))
    for d in ordered_dirs:
        iso_of[d] = assign(d, True)
    planned = [(f.path, assign(f.path, False), f) for f in sorted(files, key=lambda f: f.path)]
    too_deep = [d for d in ordered_dirs if d.count("/") + 2 > MAX_DEPTH]
    problems += [f"{d!r} is nested deeper than ISO 9660 allows ({MAX_DEPTH} levels)" for d in too_deep[:1]]
    if problems:
        raise SourceError("media names do not fit the ISO file system:\n" + "\n".join(problems),
                          "rename one of the files in the input")
    return [(d, iso_of[d]) for d in ordered_dirs], planned


def _tree(files: Sequence[MediaFile], folders: Sequence[str] = ()) -> tuple[_Dir, list[_File]]:
    dirs, planned = plan_names(files, folders)
    root = _Dir("", "", "", None)
    by_path = {"": root}
    for path, iso in dirs:
        parent = by_path[path.rpartition("/")[0]]
        d = _Dir(path, path.rsplit("/", 1)[-1], iso.rsplit("/", 1)[-1], parent)
        parent.dirs.append(d)
        by_path[path] = d
    out: list[_File] = []
    for path, iso, media in planned:
        size = media.size
        if size > MAX_FILE:
            raise SourceError(f"{path}: {size} bytes; ISO 9660 files hold at most {MAX_FILE} in one extent",
                              "split the file, or leave it out of the media")
        f = _File(path, path.rsplit("/", 1)[-1], iso.rsplit("/", 1)[-1], media, size)
        by_path[path.rpartition("/")[0]].files.append(f)
        out.append(f)
    return root, out


def _walk(root: _Dir, joliet: bool) -> list[_Dir]:
    """Folders in path-table order (ECMA-119 6.9.1): by level, then by parent's number, then by identifier."""
    def key(d: _Dir) -> tuple[bytes, ...]:
        return (d.name.encode("utf-16-be"),) if joliet else _iso_key(d.iso)

    level = [root]
    ordered: list[_Dir] = []
    while level:
        ordered += level
        level = [child for d in level for child in sorted(d.dirs, key=key)]
    for number, d in enumerate(ordered, start=1):
        d.number = (d.number[0], number) if joliet else (number, d.number[1])
    return ordered


# --- records -----------------------------------------------------------------------------------


def _dir_record(ident: bytes, extent: int, size: int, is_dir: bool, date: bytes, su: bytes = b"") -> bytes:
    pad = b"\0" if len(ident) % 2 == 0 else b""
    length = 33 + len(ident) + len(pad) + len(su)
    if length > 255:
        raise SourceError(f"a directory record for {ident!r} would be {length} bytes (at most 255)",
                          "use a shorter file name")
    return (bytes([length, 0]) + _both32(extent) + _both32(size) + date + bytes([2 if is_dir else 0, 0, 0])
            + _both16(1) + bytes([len(ident)]) + ident + pad + su)


def _su_px(mode: int, links: int) -> bytes:
    return b"PX" + bytes([36, 1]) + _both32(mode) + _both32(links) + _both32(0) + _both32(0)


def _su_tf(date: bytes) -> bytes:
    return b"TF" + bytes([5 + 3 * 7, 1, 0x0E]) + date * 3  # modify, access, attributes


def _rr(name: str | None, mode: int, links: int, date: bytes, extra: bytes = b"") -> bytes:
    flags = 0x81 | (0x08 if name is not None else 0)  # PX and TF, NM for named entries
    nm = b"" if name is None else b"NM" + bytes([5 + len(name.encode()), 1, 0]) + name.encode()
    return b"RR" + bytes([5, 1, flags]) + nm + _su_px(mode, links) + _su_tf(date) + extra


def _pack_records(records: list[bytes]) -> bytes:
    """Lay records into sectors: no record crosses a sector boundary (ECMA-119 6.8.1.1)."""
    out = bytearray()
    for rec in records:
        if len(out) % SECTOR + len(rec) > SECTOR:
            out += b"\0" * (-len(out) % SECTOR)
        out += rec
    out += b"\0" * (-len(out) % SECTOR)
    return bytes(out)


@dataclass
class _Plan:
    root: _Dir
    dirs: list[_Dir]
    joliet_order: list[_Dir]
    files: list[_File]
    date: bytes
    udf: bool = False
    boot: Sequence[BootImage] = ()
    ce_extent: int = 0
    catalog: int = 0
    boot_extents: list[int] = field(default_factory=list)
    partition: int = 0  # the UDF partition's first sector
    data: dict[int, tuple[MediaFile, int, str]] = field(default_factory=dict)  # extent: (bytes, size, name)
    iso_dirs: dict[int, bytes] = field(default_factory=dict)
    joliet_dirs: dict[int, bytes] = field(default_factory=dict)


def _children(d: _Dir, joliet: bool) -> list[_Dir | _File]:
    entries: list[_Dir | _File] = [*d.dirs, *d.files]
    if joliet:
        return sorted(entries, key=lambda e: e.name.encode("utf-16-be"))
    return sorted(entries, key=lambda e: _iso_key(e.iso))


def _iso_dir_bytes(plan: _Plan, d: _Dir) -> bytes:
    date = plan.date
    links = 2 + len(d.dirs)
    parent = d.parent or d
    dot_su = b""
    if d.parent is None:
        # SUSP's indicator and the continuation holding the RRIP extension reference.
        er_len = 8 + len(_ER_ID) + len(_ER_DES) + len(_ER_SRC)
        dot_su = b"SP" + bytes([7, 1, 0xBE, 0xEF, 0])
        ce = b"CE" + bytes([28, 1]) + _both32(plan.ce_extent) + _both32(0) + _both32(er_len)
        dot = dot_su + _rr(None, DIR_MODE, links, date, ce)
        records = [_dir_record(b"\0", d.extent[0], d.size[0], True, date, dot)]
    else:
        records = [_dir_record(b"\0", d.extent[0], d.size[0], True, date, _rr(None, DIR_MODE, links, date))]
    records.append(_dir_record(b"\1", parent.extent[0], parent.size[0], True, date,
                               _rr(None, DIR_MODE, 2 + len(parent.dirs), date)))
    for e in _children(d, joliet=False):
        if isinstance(e, _Dir):
            records.append(_dir_record(e.iso.encode(), e.extent[0], e.size[0], True, date,
                                       _rr(e.name, DIR_MODE, 2 + len(e.dirs), date)))
        else:
            records.append(_dir_record(e.iso.encode(), e.extent, e.size, False, date,
                                       _rr(e.name, FILE_MODE, e.links, date)))
    return _pack_records(records)


def _joliet_dir_bytes(plan: _Plan, d: _Dir) -> bytes:
    date = plan.date
    parent = d.parent or d
    records = [_dir_record(b"\0", d.extent[1], d.size[1], True, date),
               _dir_record(b"\1", parent.extent[1], parent.size[1], True, date)]
    for e in _children(d, joliet=True):
        if isinstance(e, _Dir):
            records.append(_dir_record(e.name.encode("utf-16-be"), e.extent[1], e.size[1], True, date))
        else:
            records.append(_dir_record(e.name.encode("utf-16-be"), e.extent, e.size, False, date))
    return _pack_records(records)


def _path_table(dirs: list[_Dir], joliet: bool, big_endian: bool) -> bytes:
    out = bytearray()
    fmt = ">IH" if big_endian else "<IH"
    tree = 1 if joliet else 0
    for d in dirs:
        ident = b"\0" if d.parent is None else (d.name.encode("utf-16-be") if joliet else d.iso.encode())
        out += bytes([len(ident), 0]) + struct.pack(fmt, d.extent[tree], (d.parent or d).number[tree]) + ident
        out += b"\0" * (len(ident) % 2)
    return bytes(out)


def _sectors(n: int) -> int:
    return -(-n // SECTOR)


# Sectors of the UDF volume structures when the bridge is written (ECMA-167 3/8.4 and UDF 1.02 2.2): the
# volume descriptor sequences (16 sectors each, the minimum UDF 1.02 2.2.3 asks) and the integrity sequence
# sit below the first anchor at 256; the ISO 9660 metadata follows them and steps over sector 256.
_MAIN_VDS, _RESERVE_VDS, _VDS_SECTORS, _INTEGRITY = 32, 48, 16, 64
_UDF_ISO_START = _INTEGRITY + 2
_FIRST_UNIQUE = 16  # UDF 1.02 3.2.1.1: unique IDs 1-15 are reserved, 0 is the root's


def _key(media: MediaFile, path: str) -> str:
    """Files with one key share one extent: the same file on disk, or the same region of one."""
    if media.region is not None:
        return f"\1{media.region.file}\0{media.region.extents}"
    if media.spliced is not None:
        return f"\2{media.spliced.parts}"
    return str(media.source) if media.source is not None else f"\0{path}"


def _source_name(media: MediaFile) -> str:
    """Where ``media``'s bytes come from, for messages."""
    if media.region is not None:
        return f"{media.region.file} (the bytes of {media.path})"
    if media.spliced is not None and media.spliced.parts:
        return f"{media.spliced.parts[0][0]} (the bytes of {media.path})"
    return str(media.source or media.path)


@dataclass
class _Space:
    """Hands out sectors in order, stepping over ``reserved`` (the UDF anchor) when an extent would cover it."""

    lba: int
    reserved: int | None = None

    def take(self, sectors: int) -> int:
        if self.reserved is not None and self.lba <= self.reserved < self.lba + sectors:
            self.lba = self.reserved + 1
        at = self.lba
        self.lba += sectors
        return at


def _layout(plan: _Plan) -> tuple[int, int, list[int]]:
    """Assign every extent; return (path table size, Joliet path table size, [L, M, JL, JM] table sectors, total)."""
    # Directory sizes do not depend on extents: size them with placeholder extents first.
    for d in plan.dirs:
        d.size = (len(_iso_dir_bytes(plan, d)), len(_joliet_dir_bytes(plan, d)))
    pt = len(_path_table(plan.dirs, False, False))
    jpt = len(_path_table(plan.joliet_order, True, False))
    # 16 system sectors, then the primary, [boot record,] Joliet and terminator descriptors.
    space = _Space(_UDF_ISO_START, udfmod.ANCHOR) if plan.udf else _Space(19 + bool(plan.boot))
    tables = [space.take(_sectors(size)) for size in (pt, pt, jpt, jpt)]
    for d in plan.dirs:
        d.extent = (space.take(_sectors(d.size[0])), d.extent[1])
    for d in plan.dirs:
        d.extent = (d.extent[0], space.take(_sectors(d.size[1])))
    plan.ce_extent = space.take(1)
    if plan.boot:
        _boot_layout(plan, space)
    if plan.udf:
        _udf_layout(plan, space)
    first: dict[str, _File] = {}
    for f in plan.files:
        key = _key(f.media, f.path)
        shared = first.get(key)
        if shared is not None:
            f.extent = shared.extent
            shared.links += 1
            continue
        first[key] = f
        f.extent = space.take(_sectors(f.size))
        if f.size:
            plan.data[f.extent] = (f.media, f.size, _source_name(f.media))
    for f in plan.files:  # every name of a shared extent reports the link count
        f.links = first[_key(f.media, f.path)].links
    if plan.udf:
        space.take(1)  # the closing anchor, the volume's last sector
    return pt, jpt, [*tables, space.lba]


def _boot_layout(plan: _Plan, space: _Space) -> None:
    """Place the boot catalog, then each boot image as its own extent, apart from the trees (the same bytes once)."""
    plan.catalog = space.take(1)
    images: dict[str, int] = {}
    for boot in plan.boot:
        key = _key(boot.image, boot.image.path)
        if key not in images:
            images[key] = space.take(_sectors(boot.image.size))
            plan.data[images[key]] = (boot.image, boot.image.size, _source_name(boot.image))
        plan.boot_extents.append(images[key])


def _udf_layout(plan: _Plan, space: _Space) -> None:
    """Place the UDF partition's metadata: file set, then each folder's File Entry and identifiers, then each
    file's File Entry; the file data that follows is the extents the ISO 9660 and Joliet trees name."""
    plan.partition = max(space.lba, udfmod.ANCHOR + 1)
    space.lba = plan.partition
    space.take(2)  # the file set descriptor and its terminator, logical blocks 0 and 1
    unique = _FIRST_UNIQUE
    for d in plan.dirs:
        size = udfmod.identifier_size(None) + sum(udfmod.identifier_size(e.name) for e in _children(d, True))
        entry = space.take(1)
        d.udf = (entry, space.take(_sectors(size)), size)
        if d.parent is not None:
            d.unique, unique = unique, unique + 1
    for f in plan.files:
        f.udf_entry = space.take(1)
        f.unique, unique = unique, unique + 1


def _udf_area(plan: _Plan, label: str, epoch: int, total: int) -> dict[int, bytes]:
    """The UDF bridge's sectors, by first sector: recognition, descriptors, anchors, file set, entries."""
    p = plan.partition
    length = total - 1 - p  # the partition ends before the closing anchor
    out = {
        _MAIN_VDS: udfmod.volume_descriptors(_MAIN_VDS, label, epoch, (p, length), _INTEGRITY),
        _RESERVE_VDS: udfmod.volume_descriptors(_RESERVE_VDS, label, epoch, (p, length), _INTEGRITY),
        _INTEGRITY: udfmod.integrity_sequence(_INTEGRITY, epoch, _FIRST_UNIQUE + len(plan.dirs) - 1 + len(plan.files),
                                              len(plan.files), len(plan.dirs), length),
        p: udfmod.file_set(epoch, label, plan.root.udf[0] - p),
    }
    for at in (udfmod.ANCHOR, total - 1):
        out[at] = udfmod.anchor(at, _MAIN_VDS, _RESERVE_VDS, _VDS_SECTORS * SECTOR)
    for d in plan.dirs:
        entry, data, size = d.udf
        out[entry] = udfmod.file_entry(entry - p, True, size, data - p, d.unique, 1 + len(d.dirs), epoch)
        parent = d.parent or d
        fids: list[tuple[str | None, bool, int]] = [(None, True, parent.udf[0] - p)]
        fids += [(e.name, isinstance(e, _Dir), (e.udf[0] if isinstance(e, _Dir) else e.udf_entry) - p)
                 for e in _children(d, True)]
        out[data] = udfmod.directory(data - p, fids)
        assert len(out[data]) == size
    for f in plan.files:
        out[f.udf_entry] = udfmod.file_entry(f.udf_entry - p, False, f.size, f.extent - p, f.unique, 1, epoch)
    return out


def _descriptor(kind: int, label: str, total: int, pt_size: int, l_table: int, m_table: int, root: bytes,
                epoch: int) -> bytes:
    joliet = kind == 2

    def text(value: str, size: int) -> bytes:
        return _ucs2(value, size) if joliet else _pad(value.encode("ascii"), size)

    vd = bytearray(SECTOR)
    vd[0:8] = bytes([kind]) + b"CD001" + b"\x01\x00"
    vd[8:40] = text("", 32)
    vd[40:72] = text(label[:JOLIET_LABEL_MAX] if joliet else label, 32)
    vd[80:88] = _both32(total)
    if joliet:
        vd[88:91] = b"%/E"  # UCS-2 level 3
    vd[120:124] = _both16(1)
    vd[124:128] = _both16(1)
    vd[128:132] = _both16(SECTOR)
    vd[132:140] = _both32(pt_size)
    vd[140:144] = struct.pack("<I", l_table)
    vd[148:152] = struct.pack(">I", m_table)
    vd[156:190] = root
    for start, length in ((190, 128), (318, 128), (446, 128), (702, 37), (739, 37), (776, 37)):
        vd[start:start + length] = text("", length)
    vd[574:702] = text(APPLICATION, 128)
    vd[813:830] = _volume_date(epoch)
    vd[830:847] = _volume_date(epoch)
    vd[847:864] = _volume_date(None)
    vd[864:881] = _volume_date(epoch)
    vd[881] = 1
    return bytes(vd)


def _system_area(plan: _Plan, label: str, epoch: int, pt: int, jpt: int, tables: list[int]) -> dict[int, bytes]:
    """Every sector but the file data, by first sector: descriptors, path tables, folders, boot catalog, UDF."""
    root = plan.root
    date = plan.date
    total = tables[4]
    pvd_root = _dir_record(b"\0", root.extent[0], root.size[0], True, date)
    svd_root = _dir_record(b"\0", root.extent[1], root.size[1], True, date)
    head = bytearray(b"\0" * (16 * SECTOR))
    head += _descriptor(1, label, total, pt, tables[0], tables[1], pvd_root, epoch)
    if plan.boot:
        assert len(head) == BOOT_RECORD_SECTOR * SECTOR
        head += boot_record(plan.catalog)
    head += _descriptor(2, label, total, jpt, tables[2], tables[3], svd_root, epoch)
    head += b"\xffCD001\x01" + b"\0" * (SECTOR - 7)
    if plan.udf:
        head += udfmod.recognition_sequence()  # continues the ISO 9660 descriptor sequence (ECMA-167 2/8.3)
    out = {0: bytes(head)}
    tables_data = (_path_table(plan.dirs, False, False), _path_table(plan.dirs, False, True),
                   _path_table(plan.joliet_order, True, False), _path_table(plan.joliet_order, True, True))
    for table, data in zip(tables[:4], tables_data, strict=True):
        out[table] = data
    for d in plan.dirs:
        out[d.extent[0]] = _iso_dir_bytes(plan, d)
        out[d.extent[1]] = _joliet_dir_bytes(plan, d)
    er = (b"ER" + bytes([8 + len(_ER_ID) + len(_ER_DES) + len(_ER_SRC), 1, len(_ER_ID), len(_ER_DES),
                         len(_ER_SRC), 1]) + _ER_ID + _ER_DES + _ER_SRC)
    out[plan.ce_extent] = er
    if plan.boot:
        out[plan.catalog] = catalog(list(zip(plan.boot, plan.boot_extents, strict=True)))
    if plan.udf:
        out.update(_udf_area(plan, label, epoch, total))
    return out


class _Follower:
    """Hashes the image by reading it back right behind the writer, on threads of their own.

    The writer moves file bytes inside the kernel (:func:`aero_media.fsutil.copy_range`),
    so they never pass through Python; this thread reads what is written (from the page
    cache) and hashes the whole image, handing the bytes of each file in ``spans`` (byte
    offset in the image, size) to a hash of its own on a further thread: the writing and
    both hashes overlap. ``progress`` counts the image's bytes as they are hashed.
    """

    def __init__(self, path: Path, spans: dict[str, tuple[int, int]], progress: log.Progress) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self._spans = spans
        self._files = {p: BackgroundSha256() for p in spans}
        self._sha = hashlib.sha256()
        self._progress = progress
        self._written = 0
        self._closed = False
        self._stop = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="iso-sha256", daemon=True)
        self._thread.start()

    def written(self, upto: int) -> None:
        """The writer has written (and flushed) the image's bytes before ``upto``."""
        with self._cond:
            self._written = upto
            self._cond.notify()

    def _run(self) -> None:
        pos = 0
        try:
            while True:
                with self._cond:
                    while self._written <= pos and not self._closed:
                        self._cond.wait()
                    upto = self._written
                    if pos >= upto or self._stop:
                        return
                chunk = os.pread(self._fd, min(HASH_CHUNK, upto - pos), pos)
                if not chunk:
                    raise OSError(f"the image ended at byte {pos} while it was being hashed")
                self._sha.update(chunk)
                for path, (start, size) in self._spans.items():
                    lo, hi = max(start, pos), min(start + size, pos + len(chunk))
                    if lo < hi:
                        self._files[path].update(chunk[lo - pos:hi - pos])
                pos += len(chunk)
                self._progress.advance(len(chunk))
        except BaseException as exc:  # handed to the writer's thread by finish()
            self._error = exc

    def finish(self) -> tuple[str, dict[str, str]]:
        """Wait for everything written to be hashed; the image's sha256 and each file's."""
        self.close()
        if self._error is not None:
            raise self._error
        return self._sha.hexdigest(), {p: h.hexdigest() for p, h in self._files.items()}

    def close(self, *, stop: bool = False) -> None:
        """End once what is written is hashed, or at once with ``stop`` (the writer failed); idempotent."""
        with self._cond:
            self._closed = True
            self._stop = self._stop or stop
            self._cond.notify()
        self._thread.join()
        for each in self._files.values():
            each.hexdigest()
        # Once only: a second close of the number would close whatever another thread opened
        # under it since (doit's thread workers share this process's descriptors).
        with self._cond:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def _copy_data(out: BinaryIO, media: MediaFile, size: int, name: str, progress: log.Progress,
               follower: _Follower) -> None:
    """Copy a file's bytes to where ``out`` stands and pad them to a sector.

    Bytes in files (``source``, a ``region`` of one, or ``spliced`` pieces of several) are moved inside the kernel, and
    ``follower`` hears of each step (it hashes them as they land); a file whose size is
    not what was planned is an error, since it would leave a wrong image.
    """
    at = out.tell()
    out.flush()
    landed = at

    def step(moved: int) -> None:
        nonlocal landed
        landed += moved
        follower.written(landed)

    if media.data is not None:
        out.write(media.data)
    else:
        done, grown = 0, False
        opened: dict[Path, BinaryIO] = {}
        try:
            # A file on disk is copied for the size planned (a file that grew is an error below, never more bytes).
            pieces = ((media.source, 0, size),) if media.source is not None else media.pieces()
            for file, offset, length in pieces:
                src = opened.get(file)
                if src is None:
                    src = opened[file] = open(file, "rb")  # noqa: SIM115 (closed below)
                moved = copy_range(src.fileno(), out.fileno(), offset, length, at + done, step)
                done += moved
                if moved < length:
                    break
            if media.source is not None and media.source in opened:
                grown = os.fstat(opened[media.source].fileno()).st_size != size
        finally:
            for each in opened.values():
                each.close()
        if done != size or grown:
            raise SourceError(f"{name}: changed size while the ISO was being written", "rerun the build")
        out.seek(at + size)
    out.write(b"\0" * (-size % SECTOR))
    progress.advance(0, files=1)


def write_iso(files: Sequence[MediaFile], out: Path, label: str, epoch: int, *, udf: bool = False,
              boot: Sequence[BootImage] = (), digests: dict[str, str] | None = None,
              folders: Sequence[str] = ()) -> str:
    """Write ``files`` to ``out`` (atomically) as ISO 9660 level 3 + Joliet + Rock Ridge 1.09.

    ``udf`` adds a UDF 1.02 bridge naming the same files (each file's bytes are one
    extent that every tree points at); ``boot`` adds El Torito boot records, the first
    image being the default entry. Every date in the image is ``epoch`` (UTC); nothing
    depends on the clock, the time zone, the locale or the order of ``files``.
    Returns the image's sha256, hashed as it is written (no second read of gigabytes).
    ``digests``: each of its keys that is a file's path gets that file's sha256, hashed as
    it is written too (a caller that publishes the file beside the image need not read it again).
    ``folders`` are folders to carry even when no file is in them.
    """
    check_label(label)
    check_boot(boot)
    check_media_paths(files)
    root, planned = _tree(files, folders)
    plan = _Plan(root, _walk(root, joliet=False), _walk(root, joliet=True), sorted(planned, key=lambda f: f.path),
                 _record_date(epoch), udf, tuple(boot))
    pt, jpt, tables = _layout(plan)
    pieces: dict[int, bytes | tuple[MediaFile, int, str]] = {**_system_area(plan, label, epoch, pt, jpt, tables),
                                                             **plan.data}
    image_size = tables[4] * SECTOR
    progress = log.Progress(f"write {out.name}", image_size)
    spans = {} if digests is None else {piece[0].path: (at * SECTOR, piece[1]) for at, piece in pieces.items()
                                        if not isinstance(piece, bytes) and piece[0].path in digests}
    with atomic_path(out) as tmp, open(tmp, "wb") as fp:
        follower = _Follower(tmp, spans, progress)
        try:
            for at in sorted(pieces):
                gap = at * SECTOR - fp.tell()
                assert gap >= 0, f"extents overlap at sector {at}"
                fp.write(b"\0" * gap)
                piece = pieces[at]
                if isinstance(piece, bytes):
                    fp.write(piece + b"\0" * (-len(piece) % SECTOR))
                else:
                    _copy_data(fp, *piece, progress, follower)
                fp.flush()
                follower.written(fp.tell())
            fp.write(b"\0" * (image_size - fp.tell()))
            assert fp.tell() == image_size
            fp.flush()
            follower.written(image_size)
            os.fsync(fp.fileno())  # while the follower hashes
            digest, file_digests = follower.finish()
        finally:
            follower.close(stop=True)
    progress.close()
    if digests is not None:
        # A file of no bytes has no extent to read back: its digest is the empty one.
        digests.update({p: file_digests.get(p, hashlib.sha256(b"").hexdigest()) for p in digests})
    return digest
