"""Write a reproducible FAT32 driver disk as a fixed VHD, in pure Python.

The disk is what Aero's own script makes with DiskPart on Windows (an MBR, one
primary FAT32 partition, the files), but every byte is decided here: no tool
version, clock, time zone, umask or directory order leaks in.

Layout (Microsoft's FAT specification, fatgen103, and the VHD specification; see
docs/windows7.md#fat32 and docs/windows7.md#vhd-footer):

- The raw disk is an exact CHS product (:func:`aero_media.media.vhd.disk_size`),
  followed by the VHD footer.
- Sector 0 is an MBR: a stub that hands the boot back to the BIOS (int 18h), a
  disk signature derived from the content (Windows writes one itself into a disk
  whose signature is zero, and takes a disk offline whose signature clashes), and
  one primary partition of type 0x0C (FAT32, LBA) from sector 2048 (1 MiB, where
  Windows Vista and later and every Linux partitioner start) to the end of the
  disk, not active. Its CHS fields use the conventional 255 heads × 63 sectors
  translation, with 1023/254/63 where an address does not fit, as fdisk and
  DiskPart write them; nobody reads CHS for an LBA partition type.
- The partition is FAT32 as fatgen103 describes: 32 reserved sectors (boot
  sector, FSInfo at 1, backup boot sector at 6 and backup FSInfo at 7; up to 7
  more so that clusters start on 4 KiB boundaries), two FATs, the root directory
  at cluster 2. The cluster size follows fatgen103's table for
  FAT32 (512 bytes up to 260 MB, 4 KiB up to 8 GB, then 8, 16, 32 KiB), which keeps
  at least 65,525 clusters, the minimum by which every driver recognises FAT32.
  The OEM name is ``MSWIN4.1``, the value fatgen103 recommends for compatibility.
- Directories come first (the root, then every folder, depth first in sorted
  order), then the files, each contiguous, in the order of those listings. Entries
  in a directory are sorted by name. Unused space is never written: it stays a
  hole (zeros) in the file, so writing costs what the files cost.
- Every timestamp (created, written, accessed; the label and ``.``/``..`` too) is
  ``epoch`` as UTC wall time: FAT stores local time without a zone, and we define
  it as UTC. Epochs before 1980 (which FAT cannot store) become 1980-01-01, as in
  the zip writer; write times have 2-second steps, the odd second goes in the
  creation time's hundredths.
- The volume serial, the MBR disk signature and the VHD unique id come from a
  sha256 over the label, the epoch, the disk size and every file's path, size and
  bytes: identical inputs give identical images, a changed byte changes all three.

Names: a name that is a valid upper-case 8.3 name is stored as it is. Every other
name gets VFAT long-name entries (UTF-16, exact case) in front of an 8.3 alias.
The NT "lower-case" flags are never used: they are an undocumented NT extension
that some readers ignore, while every VFAT reader (Windows 95 on, Linux, mtools,
UEFI) understands long names. The alias is the upper-cased name when it fits 8.3
(``viostor.inf`` -> ``VIOSTOR.INF``), else the stem (spaces and leading dots
dropped, characters 8.3 forbids and non-ASCII as ``_``) with the first free
numeric tail, ``~1``, ``~2``, ... in sorted name order, and the first three
characters of the last extension (``THIRD_PARTY_NOTICES.md`` ->
``THIRD_~1.MD``). Names Windows cannot use are refused before anything is written, by
:mod:`aero_media.winnames`' rules with FAT's long-name length (:data:`FAT_LIMITS`).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import struct
import sys
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .. import log
from ..errors import InternalError, SourceError, UsageError
from ..fsutil import atomic_path, copy_exactly
from ..winnames import NameLimits, component_problem
from . import vhd
from .epoch import DEFAULT_EPOCH
from .files import MediaFile

SECTOR = 512
PARTITION_START = 2048  # sectors (1 MiB)
PARTITION_TYPE = 0x0C  # FAT32 with LBA addressing
RESERVED_SECTORS = 32  # at least; more to align the data area
ALIGN_SECTORS = 8  # the data area starts on a 4 KiB boundary (or a cluster's, if larger), as mkfs.fat does
NUM_FATS = 2
FSINFO_SECTOR = 1
BACKUP_BOOT_SECTOR = 6
ROOT_CLUSTER = 2
MIN_CLUSTERS = 65525
MAX_CLUSTERS = 0x0FFFFFF5  # cluster numbers 2..0x0FFFFFF6; 0x0FFFFFF7 means "bad"
MEDIA = 0xF8  # fixed disk
BIOS_HEADS, BIOS_SECTORS = 255, 63  # the translation every BIOS and partitioner uses for LBA disks
EOC = 0x0FFFFFFF
DIR_ENTRY = 32
MAX_DIR_ENTRIES = 65536  # fatgen103: a directory holds at most 65,536 32-byte entries
MAX_FILE = 0xFFFFFFFF
MAX_NAME = 255  # UTF-16 units in a long name
# Win32's MAX_PATH is 260 with the drive ("X:\") and the terminating NUL: 256 are left for the path.
MAX_PATH = 256
LABEL_MAX = 11
OEM_NAME = b"MSWIN4.1"
ATTR_VOLUME, ATTR_DIRECTORY, ATTR_ARCHIVE, ATTR_LFN = 0x08, 0x10, 0x20, 0x0F
# Partition sectors -> sectors per cluster (fatgen103's DskTableFAT32).
_CLUSTER_TABLE = ((532480, 1), (16777216, 8), (33554432, 16), (67108864, 32))
_MAX_SPC = 64
# Boot code for the MBR and the boot sector: "int 18h" (no bootable disk here: let the BIOS try the next
# one), then halt forever. A disk of zeros would execute garbage if a BIOS ever booted it.
_BOOT_STUB = bytes([0xCD, 0x18, 0xFA, 0xF4, 0xEB, 0xFD])
# Characters an 8.3 name may hold besides A-Z and 0-9 (fatgen103; we never emit spaces or bytes above 127).
_SHORT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789$%'-_@~`!(){}^#&")
_DIGEST_TAG = b"aero-virtio-media FAT32 disk v1\0"


@dataclass(frozen=True)
class FatDiskInfo:
    """What :func:`write_fat_disk` wrote."""

    size: int  # bytes of the raw disk; the VHD file is this plus the 512-byte footer
    geometry: tuple[int, int, int]  # VHD CHS: cylinders, heads, sectors per track
    partition_offset: int  # bytes from the start of the disk
    partition_size: int  # bytes
    cluster_size: int  # bytes
    clusters: int  # data clusters in the file system
    free_clusters: int
    fat_sectors: int  # per FAT
    label: str
    serial: int  # the volume serial number (BPB)
    disk_signature: int  # the MBR's
    unique_id: bytes  # the VHD footer's
    files: int
    dirs: int  # folders, the root included


# --- names -------------------------------------------------------------------------------------


def check_label(label: str) -> None:
    """Reject a volume label FAT cannot hold: 1-11 upper-case ASCII 8.3 characters, inner spaces allowed."""
    ok = (0 < len(label) <= LABEL_MAX and label.isascii() and label[0] != " " and label[-1] != " "
          and all(c in _SHORT_CHARS or c == " " for c in label))
    if not ok:
        raise UsageError(f"FAT volume label {label!r} is not 1-{LABEL_MAX} upper-case letters, digits, inner "
                         "spaces or the characters $ % ' - _ @ ~ ` ! ( ) { } ^ # &",
                         "choose a label such as AERO_DRV")


FAT_LIMITS = NameLimits(MAX_NAME, "the FAT long-name limit")
"""Windows' rules, with FAT's long-name length; any character Windows allows (the 8.3 alias is made apart)."""


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a file or folder name on the disk (as Windows would read it), or None."""
    return component_problem(name, FAT_LIMITS)


def _is_short(name: str) -> bool:
    """Whether ``name`` is exactly an upper-case 8.3 name (then it needs no long-name entries)."""
    stem, dot, ext = name.partition(".")
    return (name.isascii() and 1 <= len(stem) <= 8 and len(ext) <= 3 and (not dot or ext != "")
            and all(c in _SHORT_CHARS for c in stem + ext))


def _pack_short(stem: str, ext: str) -> bytes:
    return (stem.ljust(8) + ext.ljust(3)).encode("ascii")


def _basis(name: str) -> tuple[str, str]:
    # fatgen103's basis name: spaces and leading dots dropped, the part before the last dot (dots removed)
    # and the first three characters after it, upper-cased, anything 8.3 cannot hold as '_'.
    text = name.replace(" ", "").lstrip(".")
    stem, dot, ext = text.rpartition(".")
    if not dot:
        stem, ext = text, ""

    def conv(part: str) -> str:
        return "".join(c.upper() if c.isascii() and c.upper() in _SHORT_CHARS else "_" for c in part if c != ".")

    return conv(stem) or "_", conv(ext)[:3]


def short_names(names: Sequence[str]) -> dict[str, tuple[bytes, bool]]:
    """The 8.3 name of each entry of one directory, and whether it needs long-name entries.

    Names that are already upper-case 8.3 keep themselves; the others, in sorted
    order, take their upper-cased name when it fits 8.3 and is free, else the
    basis name with the first free ``~n`` tail. Deterministic for a given set of names.
    """
    out: dict[str, tuple[bytes, bool]] = {}
    taken: set[bytes] = set()
    for name in names:
        if _is_short(name):
            packed = _pack_short(*name.partition(".")[::2])
            out[name] = (packed, False)
            taken.add(packed)
    for name in sorted(n for n in names if n not in out):
        upper = name.upper()
        if name.isascii() and _is_short(upper) and _pack_short(*upper.partition(".")[::2]) not in taken:
            packed = _pack_short(*upper.partition(".")[::2])
        else:
            stem, ext = _basis(name)
            for n in range(1, 1_000_000):
                tail = f"~{n}"
                packed = _pack_short(stem[:8 - len(tail)] + tail, ext)
                if packed not in taken:
                    break
            else:  # pragma: no cover - a directory holds at most 65,536 entries
                raise InternalError(f"no free 8.3 alias for {name!r}")
        out[name] = (packed, True)
        taken.add(packed)
    return out


def lfn_checksum(short: bytes) -> int:
    """The checksum of an 11-byte 8.3 name that each of its long-name entries carries."""
    total = 0
    for byte in short:
        total = (((total & 1) << 7) + (total >> 1) + byte) & 0xFF
    return total


def _lfn_entries(name: str, checksum: int) -> bytes:
    units = name.encode("utf-16-le")
    count = -(-len(units) // 26)
    if len(units) % 26:
        units += b"\0\0"  # a terminator when the last entry has room, then 0xFFFF padding
    units += b"\xff" * (count * 26 - len(units))
    entries = []
    for i in range(count):
        part = units[i * 26:(i + 1) * 26]
        order = (i + 1) | (0x40 if i == count - 1 else 0)
        entries.append(bytes([order]) + part[:10] + bytes([ATTR_LFN, 0, checksum]) + part[10:22] + b"\0\0"
                       + part[22:])
    return b"".join(reversed(entries))  # the last part comes first on disk


# --- the tree ----------------------------------------------------------------------------------


@dataclass
class _Dir:
    path: str
    parent: _Dir | None
    entries: list[_Entry] = field(default_factory=list)
    first: int = 0
    nbytes: int = 0


@dataclass
class _Entry:
    name: str
    short: bytes = b""
    lfn: bool = False
    dir: _Dir | None = None
    media: MediaFile | None = None
    path: str = ""
    size: int = 0
    first: int = 0


def _check_paths(files: Sequence[MediaFile]) -> None:
    problems: list[str] = []
    for f in files:
        parts = f.path.split("/")
        problem = next((p for p in map(name_problem, parts) if p), None)
        units = len("\\".join(parts).encode("utf-16-le", "surrogatepass")) // 2
        if problem:
            problems.append(f"{f.path!r}: {problem}")
        elif units > MAX_PATH:
            problems.append(f"{f.path!r}: the path has {units} characters; Windows handles at most {MAX_PATH} "
                            "below a drive letter (MAX_PATH)")
    # Case-insensitive clashes, and a name that is a file in one path and a folder in another.
    seen: dict[str, tuple[str, bool]] = {}
    for f in sorted(files, key=lambda f: f.path):
        parts = f.path.split("/")
        for i in range(1, len(parts) + 1):
            sub, is_dir = "/".join(parts[:i]), i < len(parts)
            key = sub.casefold()
            if key not in seen:
                seen[key] = (sub, is_dir)
                continue
            other, other_dir = seen[key]
            if other == sub and other_dir and is_dir:
                continue  # the same folder, met again through another file
            if other != sub:
                problems.append(f"{other!r} and {sub!r} differ only in case, which FAT treats as one name")
            elif other_dir != is_dir:
                problems.append(f"{sub!r} is both a file and a folder")
            else:
                problems.append(f"{sub!r} is given twice")
            break
    if problems:
        unique = list(dict.fromkeys(problems))
        raise SourceError("media names do not fit the FAT file system:\n" + "\n".join(unique[:20]),
                          "rename or remove the file in the input")


def _tree(files: Sequence[MediaFile]) -> tuple[list[_Dir], list[_Entry]]:
    """All folders (root first, then pre-order, sorted) and all files in the order they are laid out."""
    _check_paths(files)
    root = _Dir("", None)
    by_path = {"": root}
    for f in sorted(files, key=lambda f: f.path):
        parts = f.path.split("/")
        parent = root
        for i in range(1, len(parts)):
            sub = "/".join(parts[:i])
            if sub not in by_path:
                d = _Dir(sub, parent)
                by_path[sub] = d
                parent.entries.append(_Entry(parts[i - 1], dir=d, path=sub))
            parent = by_path[sub]
        size = f.size
        if size > MAX_FILE:
            raise SourceError(f"{f.path}: {size} bytes; a FAT32 file holds at most {MAX_FILE}",
                              "split the file, or leave it out of the disk")
        parent.entries.append(_Entry(parts[-1], media=f, path=f.path, size=size))
    dirs: list[_Dir] = []
    order: list[_Entry] = []
    todo = [root]
    while todo:  # pre-order without recursion
        d = todo.pop()
        d.entries.sort(key=lambda e: e.name)
        names = short_names([e.name for e in d.entries])
        for e in d.entries:
            e.short, e.lfn = names[e.name]
        dirs.append(d)
        order += [e for e in d.entries if e.dir is None]
        todo += [e.dir for e in reversed(d.entries) if e.dir is not None]
    for d in dirs:
        d.nbytes = len(_dir_bytes(d, _Stamp(0, 0, 0)))
        if d.nbytes > MAX_DIR_ENTRIES * DIR_ENTRY:
            raise SourceError(f"{d.path or '/'}: its names take {d.nbytes // DIR_ENTRY} directory entries, more "
                              f"than FAT's {MAX_DIR_ENTRIES}", "spread the files over several folders")
    return dirs, order


# --- encodings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stamp:
    date: int
    time: int
    hundredths: int


def fat_time(epoch: int) -> int:
    """The Unix time FAT entries written for ``epoch`` carry as "created" (clamped to 1980-01-01 UTC)."""
    return max(epoch, DEFAULT_EPOCH)


def _stamp(epoch: int) -> _Stamp:
    t = time.gmtime(fat_time(epoch))
    if t.tm_year > 2107:
        raise UsageError(f"epoch {epoch} is after 2107, the last year FAT can store", "use an earlier epoch")
    date = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    clock = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    return _Stamp(date, clock, 100 * (t.tm_sec % 2))


def _short_entry(short: bytes, attr: int, first: int, size: int, st: _Stamp) -> bytes:
    return struct.pack("<11sBBBHHHHHHHI", short, attr, 0, st.hundredths, st.time, st.date, st.date,
                       first >> 16, st.time, st.date, first & 0xFFFF, size)


def _dir_bytes(d: _Dir, st: _Stamp, label: bytes = b" " * 11) -> bytes:
    out = bytearray()
    if d.parent is None:
        out += _short_entry(label, ATTR_VOLUME, 0, 0, st)
    else:
        # '..' of a folder in the root points to cluster 0, not to the root's cluster (fatgen103).
        up = d.parent.first if d.parent.parent is not None else 0
        out += _short_entry(b".          ", ATTR_DIRECTORY, d.first, 0, st)
        out += _short_entry(b"..         ", ATTR_DIRECTORY, up, 0, st)
    for e in d.entries:
        if e.lfn:
            out += _lfn_entries(e.name, lfn_checksum(e.short))
        if e.dir is not None:
            out += _short_entry(e.short, ATTR_DIRECTORY, e.dir.first, 0, st)
        else:
            out += _short_entry(e.short, ATTR_ARCHIVE, e.first, e.size, st)
    return bytes(out)


# --- layout ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    total_sectors: int
    part_sectors: int
    spc: int
    reserved: int
    fat_sectors: int
    clusters: int

    @property
    def cluster_bytes(self) -> int:
        return self.spc * SECTOR

    @property
    def fat_start(self) -> int:
        return PARTITION_START + self.reserved

    @property
    def data_start(self) -> int:
        return self.fat_start + NUM_FATS * self.fat_sectors

    def cluster_offset(self, cluster: int) -> int:
        return (self.data_start + (cluster - 2) * self.spc) * SECTOR


def _layout(size: int) -> _Layout | None:
    """The FAT32 layout of a disk of ``size`` bytes, or None when it has too few clusters for FAT32."""
    total = size // SECTOR
    part = total - PARTITION_START
    spc = next((s for limit, s in _CLUSTER_TABLE if part <= limit), _MAX_SPC)
    avail = part - RESERVED_SECTORS
    if avail <= 0:
        return None

    def clusters(fat: int) -> int:
        return (avail - NUM_FATS * fat) // spc

    # Start from a FAT big enough for every sector, then shrink it while it still covers every cluster.
    fat = -(-(avail // spc + 2) * 4 // SECTOR)
    while fat > 1 and (clusters(fat - 1) + 2) * 4 <= (fat - 1) * SECTOR:
        fat -= 1
    # Pad the reserved area so clusters sit on 4 KiB (or cluster) boundaries of the disk: the partition
    # starts at 1 MiB, so aligning within it is enough. Fewer clusters remain, so the FAT still covers them.
    reserved = RESERVED_SECTORS + (-(RESERVED_SECTORS + NUM_FATS * fat) % max(spc, ALIGN_SECTORS))
    count = min((part - reserved - NUM_FATS * fat) // spc, MAX_CLUSTERS)
    if count < MIN_CLUSTERS:
        return None
    return _Layout(total, part, spc, reserved, fat, count)


def _needed(dirs: Sequence[_Dir], files: Sequence[_Entry], cluster_bytes: int) -> int:
    return (sum(max(1, -(-d.nbytes // cluster_bytes)) for d in dirs)
            + sum(-(-f.size // cluster_bytes) for f in files))


def _fits(size: int, dirs: Sequence[_Dir], files: Sequence[_Entry]) -> tuple[_Layout | None, int]:
    """The layout of a disk of ``size`` bytes if the payload fits, and else the bytes it lacks."""
    layout = _layout(size)
    if layout is None:
        return None, vhd.MIB  # too small for FAT32 at all
    short = (_needed(dirs, files, layout.cluster_bytes) - layout.clusters) * layout.cluster_bytes
    return (layout, 0) if short <= 0 else (None, short)


def _smallest_fit(size: int, dirs: Sequence[_Dir], files: Sequence[_Entry]) -> int:
    """The fewest whole MiB, from ``size`` up, whose exact CHS size holds the payload.

    It steps by what is missing: every byte added to a disk adds at most one byte
    of clusters, so that never jumps past the smallest fit.
    """
    mib = -(-size // vhd.MIB)
    for _ in range(100_000):
        _, short = _fits(vhd.chs_exact(mib * vhd.MIB), dirs, files)
        if not short:
            return mib
        mib += max(1, short // vhd.MIB)
    raise InternalError(f"no disk size holds {len(files)} files")  # pragma: no cover


def _choose_size(dirs: Sequence[_Dir], files: Sequence[_Entry], size_mib: int | None) -> tuple[int, _Layout]:
    payload = sum(f.size for f in files)
    size = vhd.disk_size(payload, size_mib)
    layout, _ = _fits(size, dirs, files)
    if layout is None:
        # Cluster slack and folders the byte count does not show (many small files, large clusters).
        need = _smallest_fit(size, dirs, files)
        if size_mib is not None:
            vhd.too_small(size_mib, payload, need)
        size = vhd.chs_exact(need * vhd.MIB)  # the automatic size grows until it fits
        layout, _ = _fits(size, dirs, files)
        assert layout is not None
    return size, layout


def _allocate(dirs: Sequence[_Dir], files: Sequence[_Entry], cluster_bytes: int) -> tuple[int, list[int]]:
    """Give every folder and non-empty file its contiguous run; return (next free cluster, last clusters)."""
    nxt = ROOT_CLUSTER
    ends: list[int] = []
    for d in dirs:
        d.first = nxt
        nxt += max(1, -(-d.nbytes // cluster_bytes))
        ends.append(nxt - 1)
    for f in files:
        if f.size:
            f.first = nxt
            nxt += -(-f.size // cluster_bytes)
            ends.append(nxt - 1)
    return nxt, ends


def _fat_chunks(used_end: int, ends: list[int], per_chunk: int = 65536) -> Iterator[bytes]:
    """The used part of the FAT (entries 0 .. used_end-1), a bounded chunk at a time.

    Runs are contiguous and back to back, so entry k holds k + 1 except at the
    end of each run, which holds end-of-chain.
    """
    for start in range(0, used_end, per_chunk):
        stop = min(used_end, start + per_chunk)
        entries = array("I", range(start + 1, stop + 1))
        if start == 0:
            entries[0] = 0x0FFFFF00 | MEDIA
            entries[1] = EOC  # "clean shutdown" and "no disk errors" bits set
        for end in ends[bisect.bisect_left(ends, start):bisect.bisect_left(ends, stop)]:
            entries[end - start] = EOC
        if sys.byteorder == "big":  # pragma: no cover
            entries.byteswap()
        yield entries.tobytes()


def _chs(lba: int) -> bytes:
    cyl, rest = divmod(lba, BIOS_HEADS * BIOS_SECTORS)
    head, sector = divmod(rest, BIOS_SECTORS)
    if cyl > 1023:
        cyl, head, sector = 1023, BIOS_HEADS - 1, BIOS_SECTORS - 1
    else:
        sector += 1
    return bytes([head, sector | ((cyl >> 2) & 0xC0), cyl & 0xFF])


def _mbr(layout: _Layout, signature: int) -> bytes:
    mbr = bytearray(SECTOR)
    mbr[:len(_BOOT_STUB)] = _BOOT_STUB
    struct.pack_into("<I", mbr, 440, signature)
    last = PARTITION_START + layout.part_sectors - 1
    mbr[446:462] = (bytes([0]) + _chs(PARTITION_START) + bytes([PARTITION_TYPE]) + _chs(last)
                    + struct.pack("<II", PARTITION_START, layout.part_sectors))
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def _boot_sector(layout: _Layout, label: bytes, serial: int) -> bytes:
    bs = bytearray(SECTOR)
    bs[0:3] = b"\xeb\x58\x90"  # jump over the BPB to the boot code at 0x5A
    bs[3:11] = OEM_NAME
    struct.pack_into("<HBHBHHBHHHII", bs, 11, SECTOR, layout.spc, layout.reserved, NUM_FATS, 0, 0, MEDIA, 0,
                     BIOS_SECTORS, BIOS_HEADS, PARTITION_START, layout.part_sectors)
    struct.pack_into("<IHHIHH12sBBBI11s8s", bs, 36, layout.fat_sectors, 0, 0, ROOT_CLUSTER, FSINFO_SECTOR,
                     BACKUP_BOOT_SECTOR, b"", 0x80, 0, 0x29, serial, label, b"FAT32   ")
    bs[90:90 + len(_BOOT_STUB)] = _BOOT_STUB
    bs[510:512] = b"\x55\xaa"
    return bytes(bs)


def _fsinfo(free: int, next_free: int) -> bytes:
    fs = bytearray(SECTOR)
    struct.pack_into("<I", fs, 0, 0x41615252)
    struct.pack_into("<III", fs, 484, 0x61417272, free, next_free)
    struct.pack_into("<I", fs, 508, 0xAA550000)
    return bytes(fs)


# --- writing -----------------------------------------------------------------------------------


def _copy(fp: BinaryIO, f: _Entry, digest: hashlib._Hash, progress: log.Progress) -> None:
    assert f.media is not None
    # The disk's identity covers each file by its sha256: a manifest's, else hashed while copying.
    known = f.media.sha256
    own = None if known else hashlib.sha256()
    left = f.size
    with f.media.open() as src:
        if own is None and f.media.source is not None:
            left = _copy_range(src, fp, left, progress)

        def seen(chunk: bytes) -> None:
            if own is not None:
                own.update(chunk)
            progress.advance(len(chunk))

        if not copy_exactly(src, fp, left, seen):
            # Streamed as it is now: a file that changed size would leave a wrong image.
            raise SourceError(f"{f.media.source or f.path}: changed size while the FAT disk was being written",
                              "rerun the build")
    progress.advance(0, files=1)
    file_digest = bytes.fromhex(known) if known else own.digest() if own is not None else b""
    digest.update(f.path.encode("utf-8") + b"\0" + f.size.to_bytes(8, "little") + file_digest)


def _copy_range(src: BinaryIO, fp: BinaryIO, left: int, progress: log.Progress) -> int:
    """Copy in the kernel where it can (no hashing needed); return what is left for the read/write loop."""
    copy = getattr(os, "copy_file_range", None)
    if copy is None:
        return left
    fp.flush()
    try:
        while left:
            done = copy(src.fileno(), fp.fileno(), min(left, 1 << 30))
            if done == 0:
                break
            left -= done
            progress.advance(done)
    except OSError:
        pass  # another file system or kernel: the loop carries on from the offsets reached
    return left


def _ids(digest: bytes) -> tuple[int, int, bytes]:
    """(volume serial, disk signature, VHD unique id) from the content digest; none of them zero."""
    serial = int.from_bytes(digest[0:4], "little") or 1
    signature = int.from_bytes(digest[4:8], "little") or 1
    uid = bytearray(digest[8:24])
    uid[6] = (uid[6] & 0x0F) | 0x80  # an RFC 9562 version 8 ("custom") UUID, variant 10
    uid[8] = (uid[8] & 0x3F) | 0x80
    return serial, signature, bytes(uid)


def write_fat_disk(files: Sequence[MediaFile], out: Path, label: str, epoch: int,
                   size_mib: int | None = None) -> FatDiskInfo:
    """Write ``files`` to ``out`` (atomically) as a fixed VHD holding one FAT32 partition.

    ``size_mib`` None sizes the disk automatically (Aero's rule, grown if the
    cluster slack needs it); an explicit size is rounded up to an exact CHS size and
    refused when it cannot hold the files. Nothing depends on the clock, the time
    zone, the locale, the umask or the order of ``files``. File data is streamed;
    unused space is left as holes, so memory stays flat and writing is fast.
    """
    check_label(label)
    stamp = _stamp(epoch)
    dirs, order = _tree(files)
    size, layout = _choose_size(dirs, order, size_mib)
    used_end, ends = _allocate(dirs, order, layout.cluster_bytes)
    free = layout.clusters - (used_end - ROOT_CLUSTER)
    next_free = used_end if free else 0xFFFFFFFF
    label_bytes = label.ljust(LABEL_MAX).encode("ascii")
    digest = hashlib.sha256(_DIGEST_TAG + label_bytes + struct.pack("<QQ", epoch, size))
    progress = log.Progress(f"write {out.name}", sum(f.size for f in order))
    with atomic_path(out) as tmp, open(tmp, "wb") as fp:
        for copy in range(NUM_FATS):
            fp.seek((layout.fat_start + copy * layout.fat_sectors) * SECTOR)
            for chunk in _fat_chunks(used_end, ends):
                fp.write(chunk)
        for d in dirs:
            fp.seek(layout.cluster_offset(d.first))
            data = _dir_bytes(d, stamp, label_bytes)
            assert len(data) == d.nbytes
            fp.write(data)
        for f in order:
            if f.size:
                fp.seek(layout.cluster_offset(f.first))
            _copy(fp, f, digest, progress)
        serial, signature, unique_id = _ids(digest.digest())
        fp.seek(0)
        fp.write(_mbr(layout, signature))
        boot, info = _boot_sector(layout, label_bytes, serial), _fsinfo(free, next_free)
        for base in (PARTITION_START, PARTITION_START + BACKUP_BOOT_SECTOR):
            fp.seek(base * SECTOR)
            fp.write(boot + info)
        fp.seek(size)  # everything not written is zeros (a hole where the file system allows one)
        fp.write(vhd.footer(size, epoch, unique_id))
        fp.flush()
        os.fsync(fp.fileno())
    progress.close()
    return FatDiskInfo(size, vhd.chs_geometry(size // SECTOR), PARTITION_START * SECTOR,
                       layout.part_sectors * SECTOR, layout.cluster_bytes, layout.clusters, free,
                       layout.fat_sectors, label, serial, signature, unique_id, len(order), len(dirs))
