"""Read a FAT32 disk image (fixed VHD) back, for verification: a reader written from the specification alone.

It shares no code with :mod:`aero_media.media.fatwriter` on purpose: a mistake in
the writer's idea of the format must not be repeated here and cancel out. It
follows Microsoft's FAT specification (fatgen103): the VHD footer (through
:func:`aero_media.media.vhd.parse_footer`, Aero's rules), the MBR, the FAT32 boot
sector and FSInfo, the FAT, and the directory tree with VFAT long names and the
NT lower-case flags.

Images are untrusted: every offset is bounds-checked against the disk, every
cluster number against the file system, and every cluster may belong to one
chain only, so a chain that loops, two files sharing clusters or a folder that
contains its own ancestor all stop with a one-line :class:`FatError` instead of
a hang. File data is hashed in bounded chunks.
"""

from __future__ import annotations

import calendar
import hashlib
import os
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import SourceError, VerifyError
from ..log import Progress
from .vhd import FOOTER_SIZE, VhdError, VhdFooter, parse_footer

# The reader keeps its own copy of FAT's rules (these constants, the name checks): it verifies the writer's
# disks, so it must not share the writer's (or winnames') code.
_LBA = 512  # MBR addresses are in 512-byte sectors
_FAT_TYPES = (0x0B, 0x0C)  # FAT32 (CHS), FAT32 (LBA)
_MIN_CLUSTERS = 65525  # fatgen103: fewer clusters make a volume FAT16, whatever its BPB says
_MAX_CLUSTERS = 0x0FFFFFF5
_MAX_DIR_BYTES = 65536 * 32  # fatgen103: at most 65,536 entries in a directory
_MAX_DEPTH = 128  # deeper than any path Windows can open (MAX_PATH)
_READ = 1024 * 1024
_FAT_EPOCH = 315532800  # 1980-01-01T00:00:00Z: the earliest date FAT can store
_SHORT_BAD = frozenset(b'"*+,./:;<=>?[\\]|') | frozenset(range(0x20)) | frozenset(range(0x61, 0x7B))
_LONG_BAD = frozenset('"*/:<>?\\|') | frozenset(chr(c) for c in range(0x20))
_FIX = "rebuild the FAT disk image"


class FatError(VerifyError):
    """A disk image is not a well-formed FAT32 disk."""


@dataclass(frozen=True)
class Partition:
    """One MBR partition entry."""

    index: int  # 1-4
    status: int  # 0x80 active, 0 not
    type: int
    first_lba: int
    sectors: int
    chs_first: bytes
    chs_last: bytes


@dataclass(frozen=True)
class Stamp:
    """One timestamp of a directory entry.

    ``kind`` is ``created`` (1 s, from the hundredths field), ``written`` (2 s) or
    ``accessed`` (a date); ``when`` is the Unix time read as UTC, or None when the
    field is zero ("not set"), impossible, or not a whole second. ``raw`` holds
    the stored (date, time, hundredths).
    """

    where: str
    kind: str
    when: int | None
    raw: tuple[int, int, int]


@dataclass(frozen=True)
class FatContent:
    """What a reader finds on a FAT32 disk image."""

    footer: VhdFooter
    disk_signature: int
    partitions: tuple[Partition, ...]
    partition: Partition  # the FAT32 one
    oem_name: str
    fs_type: str  # the BPB's informational "FAT32   " string, stripped
    label: str  # the BPB's
    root_label: str | None  # the root directory's volume label entry
    serial: int
    bytes_per_sector: int
    cluster_size: int
    clusters: int
    fat_sectors: int
    num_fats: int
    free_clusters: int  # counted in the FAT
    fsinfo_free: int
    fsinfo_next_free: int
    backup_boot_matches: bool
    fats_match: bool
    files: dict[str, tuple[str, int]]  # long-name path -> (sha256, size)
    dirs: tuple[str, ...]
    short_names: dict[str, str]  # path -> the entry's 8.3 name as shown ("THIRD_~1.MD")
    stamps: tuple[Stamp, ...]


def stamp_matches(stamp: Stamp, epoch: int) -> bool:
    """Whether ``stamp`` is ``epoch`` at its field's resolution (an epoch before 1980 reads as 1980-01-01)."""
    t = max(epoch, _FAT_EPOCH)
    expected = {"created": t, "written": t - t % 2, "accessed": t - t % 86400}[stamp.kind]
    return stamp.when == expected


class _Disk:
    """Bounds-checked reads of the raw disk (the VHD without its footer)."""

    def __init__(self, fp: BinaryIO, size: int, name: str) -> None:
        self.fp, self.size, self.name = fp, size, name

    def fail(self, message: str) -> FatError:
        return FatError(f"{self.name}: {message}", _FIX)

    def read(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise self.fail(f"{what} (bytes {offset}..{offset + length}) lies outside the {self.size}-byte disk")
        self.fp.seek(offset)
        data = self.fp.read(length)
        if len(data) != length:
            raise self.fail(f"{what}: the file ends early (truncated)")
        return data


def _u16(b: bytes, at: int) -> int:
    return int.from_bytes(b[at:at + 2], "little")


def _u32(b: bytes, at: int) -> int:
    return int.from_bytes(b[at:at + 4], "little")


def _partitions(disk: _Disk) -> tuple[int, tuple[Partition, ...]]:
    mbr = disk.read(0, _LBA, "the MBR")
    if mbr[510:512] != b"\x55\xaa":
        raise disk.fail("sector 0 has no MBR signature (55 AA): not a partitioned disk")
    parts = []
    for i in range(4):
        e = mbr[446 + 16 * i:462 + 16 * i]
        if e[4] == 0:
            continue
        if e[0] not in (0, 0x80):
            raise disk.fail(f"MBR partition {i + 1}: status byte {e[0]:#04x} is neither 0 nor 0x80")
        parts.append(Partition(i + 1, e[0], e[4], _u32(e, 8), _u32(e, 12), bytes(e[1:4]), bytes(e[5:8])))
    return _u32(mbr, 440), tuple(parts)


@dataclass(frozen=True)
class _Volume:
    start: int  # byte offset of the partition
    bps: int
    spc: int
    reserved: int
    nfats: int
    fat_sectors: int
    clusters: int
    root: int
    active_fat: int
    boot: bytes

    @property
    def cluster_bytes(self) -> int:
        return self.bps * self.spc

    def cluster_offset(self, cluster: int) -> int:
        data = self.reserved + self.nfats * self.fat_sectors
        return self.start + (data + (cluster - 2) * self.spc) * self.bps


def _volume(disk: _Disk, part: Partition) -> _Volume:
    start, length = part.first_lba * _LBA, part.sectors * _LBA
    if part.first_lba == 0 or part.sectors == 0 or start + length > disk.size:
        raise disk.fail(f"partition {part.index} (sectors {part.first_lba}+{part.sectors}) does not lie inside "
                        f"the {disk.size // _LBA}-sector disk")
    bs = disk.read(start, _LBA, "the boot sector")
    if bs[510:512] != b"\x55\xaa" or bs[0] not in (0xEB, 0xE9):
        raise disk.fail(f"partition {part.index} has no boot sector (no jump or no 55 AA signature)")
    bps, spc, reserved, nfats = _u16(bs, 11), bs[13], _u16(bs, 14), bs[16]
    root_entries, total16, fat16, total32, fat32 = _u16(bs, 17), _u16(bs, 19), _u16(bs, 22), _u32(bs, 32), _u32(bs, 36)
    if bps not in (512, 1024, 2048, 4096) or spc not in (1, 2, 4, 8, 16, 32, 64, 128) or bps * spc > 65536:
        raise disk.fail(f"boot sector: {bps} bytes per sector and {spc} sectors per cluster are not valid FAT")
    if root_entries or total16 or fat16 or not fat32:
        raise disk.fail("boot sector: a FAT12/FAT16 BPB (root entries, 16-bit sizes), not FAT32")
    if reserved < 2 or not 1 <= nfats <= 4 or _u16(bs, 42) != 0:
        raise disk.fail(f"boot sector: {reserved} reserved sectors, {nfats} FATs, version {_u16(bs, 42):#x}: "
                        "not a FAT32 volume this reader knows")
    if total32 * bps > length:
        raise disk.fail(f"boot sector: {total32} sectors of {bps} bytes do not fit the {length}-byte partition")
    meta = reserved + nfats * fat32
    if meta >= total32:
        raise disk.fail("boot sector: the FATs and reserved sectors fill the whole volume")
    clusters = (total32 - meta) // spc
    if clusters < _MIN_CLUSTERS or clusters > _MAX_CLUSTERS:
        raise disk.fail(f"FAT type: {clusters} clusters; FAT32 has {_MIN_CLUSTERS} to {_MAX_CLUSTERS} "
                        "(fewer make it FAT12/FAT16 by the specification's rule)")
    if fat32 * bps < (clusters + 2) * 4:
        raise disk.fail(f"boot sector: a FAT of {fat32} sectors cannot map {clusters} clusters")
    root = _u32(bs, 44)
    if not 2 <= root < clusters + 2:
        raise disk.fail(f"boot sector: root directory cluster {root} is outside 2..{clusters + 1}")
    flags = _u16(bs, 40)
    active = flags & 0x0F if flags & 0x80 else 0  # bit 7: only one FAT is active, and the low bits say which
    if active >= nfats:
        raise disk.fail(f"boot sector: active FAT {active} of {nfats}")
    return _Volume(start, bps, spc, reserved, nfats, fat32, clusters, root, active, bs)


def _load_fat(disk: _Disk, vol: _Volume) -> tuple[array[int], bool]:
    """The active FAT's entries for clusters 0 .. clusters+1, and whether every other copy agrees with it."""
    nbytes = (vol.clusters + 2) * 4
    offsets = [vol.start + (vol.reserved + i * vol.fat_sectors) * vol.bps for i in range(vol.nfats)]
    active = disk.read(offsets[vol.active_fat], nbytes, "the FAT")
    match = True
    for i, off in enumerate(offsets):
        for pos in range(0, nbytes, _READ) if i != vol.active_fat else ():
            chunk = disk.read(off + pos, min(_READ, nbytes - pos), f"FAT copy {i + 1}")
            if chunk != active[pos:pos + len(chunk)]:
                match = False
                break
    entries = array("I")
    if entries.itemsize != 4:  # pragma: no cover - every platform we run on has 32-bit unsigned int
        entries = array("L")
    entries.frombytes(active)
    if sys.byteorder == "big":  # pragma: no cover
        entries.byteswap()
    return entries, match


class _Walker:
    """Follows cluster chains; every cluster may be claimed once, which rules out loops and cycles."""

    def __init__(self, disk: _Disk, vol: _Volume, fat: array[int]) -> None:
        self.disk, self.vol, self.fat = disk, vol, fat
        self.used = bytearray(vol.clusters + 2)

    def chain(self, first: int, limit: int, what: str) -> list[tuple[int, int]]:
        """Claim the chain from ``first``: (first cluster, count) runs; at most ``limit`` clusters."""
        runs: list[tuple[int, int]] = []
        cluster, count = first, 0
        last = self.vol.clusters + 1
        while True:
            if not 2 <= cluster <= last:
                raise self.disk.fail(f"{what}: cluster {cluster} is outside the volume (2..{last})")
            if self.used[cluster]:
                raise self.disk.fail(f"{what}: cluster {cluster} is already in use (a loop in its chain, a "
                                     "cross-linked file or a directory cycle)")
            self.used[cluster] = 1
            count += 1
            if count > limit:
                raise self.disk.fail(f"{what}: its cluster chain is longer than its size allows")
            if runs and runs[-1][0] + runs[-1][1] == cluster:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((cluster, 1))
            nxt = self.fat[cluster] & 0x0FFFFFFF
            if nxt >= 0x0FFFFFF8:
                return runs
            if nxt == 0x0FFFFFF7:
                raise self.disk.fail(f"{what}: cluster {cluster} is followed by a cluster marked bad")
            if nxt == 0:
                raise self.disk.fail(f"{what}: cluster {cluster} is followed by a free cluster (a broken chain)")
            cluster = nxt

    def read_runs(self, runs: list[tuple[int, int]], size: int, what: str) -> Iterator[bytes]:
        """The first ``size`` bytes of the chain, in chunks of at most 1 MiB."""
        left = size
        for first, count in runs:
            offset = self.vol.cluster_offset(first)
            run = min(left, count * self.vol.cluster_bytes)
            for pos in range(0, run, _READ):
                yield self.disk.read(offset + pos, min(_READ, run - pos), what)
            left -= run


def _date_time(date: int, clock: int, hundredths: int = 0) -> int | None:
    if date == 0 and clock == 0:
        return None
    year, month, day = 1980 + (date >> 9), (date >> 5) & 0x0F, date & 0x1F
    hour, minute, second = clock >> 11, (clock >> 5) & 0x3F, (clock & 0x1F) * 2
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    if hour > 23 or minute > 59 or second > 59 or hundredths > 199 or hundredths % 100:
        return None
    return calendar.timegm((year, month, day, hour, minute, second + hundredths // 100))


def _stamps(entry: bytes, where: str) -> list[Stamp]:
    ctime, cdate, adate, wtime, wdate = (_u16(entry, 14), _u16(entry, 16), _u16(entry, 18), _u16(entry, 22),
                                         _u16(entry, 24))
    return [Stamp(where, "created", None if cdate == 0 else _date_time(cdate, ctime, entry[13]),
                  (cdate, ctime, entry[13])),
            Stamp(where, "written", _date_time(wdate, wtime), (wdate, wtime, 0)),
            Stamp(where, "accessed", _date_time(adate, 0) if adate else None, (adate, 0, 0))]


def _short_display(entry: bytes) -> str:
    name = bytearray(entry[:11])
    if name[0] == 0x05:  # an escaped 0xE5 first byte
        name[0] = 0xE5
    stem, ext = bytes(name[:8]).rstrip(b" ").decode("cp437"), bytes(name[8:]).rstrip(b" ").decode("cp437")
    if entry[12] & 0x08:  # NT: show the stem in lower case
        stem = stem.lower()
    if entry[12] & 0x10:  # NT: show the extension in lower case
        ext = ext.lower()
    return f"{stem}.{ext}" if ext else stem


def _checksum(short: bytes) -> int:
    total = 0
    for byte in short:
        total = ((total >> 1) | ((total & 1) << 7)) + byte
        total &= 0xFF
    return total


@dataclass
class _Found:
    files: list[tuple[str, list[tuple[int, int]], int]] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    short_names: dict[str, str] = field(default_factory=dict)
    stamps: list[Stamp] = field(default_factory=list)
    root_label: str | None = None


class _LongName:
    """Collects one long name's entries (stored last part first) and checks their order and checksum."""

    def __init__(self, disk: _Disk, where: str) -> None:
        self.disk, self.where = disk, where
        self.parts: dict[int, bytes] = {}
        self.expect = 0
        self.checksum = -1

    def add(self, e: bytes) -> None:
        order = e[0]
        if e[26:28] != b"\0\0":
            raise self.disk.fail(f"{self.where}: a long-name entry with a cluster number")
        if order & 0x40:
            if self.parts:
                raise self.disk.fail(f"{self.where}: a long name starts before the previous one ended")
            count = order & 0x3F
            if not 1 <= count <= 20:
                raise self.disk.fail(f"{self.where}: a long name of {count} entries (1-20 hold 255 characters)")
            self.expect, self.checksum = count, e[13]
        elif not self.parts or self.expect <= 0 or order != self.expect or e[13] != self.checksum:
            raise self.disk.fail(f"{self.where}: long-name entries out of order or with mixed checksums")
        self.parts[self.expect] = e[1:11] + e[14:26] + e[28:32]
        self.expect -= 1

    def take(self, short: bytes) -> str | None:
        if not self.parts:
            return None
        if self.expect != 0:
            raise self.disk.fail(f"{self.where}: a long name is missing entries")
        if _checksum(short) != self.checksum:
            raise self.disk.fail(f"{self.where}: a long name's checksum {self.checksum:#04x} does not match its "
                                 f"8.3 name {short!r} ({_checksum(short):#04x})")
        units = b"".join(self.parts[i] for i in sorted(self.parts))
        self.parts = {}
        text = units.decode("utf-16-le", "surrogatepass")
        text = text.split("\0", 1)[0]
        try:
            text.encode("utf-16-le")
        except UnicodeEncodeError:
            raise self.disk.fail(f"{self.where}: a long name with a lone surrogate") from None
        return text

    def dangling(self) -> bool:
        return bool(self.parts)


def _name_problem(name: str) -> str | None:
    if name in ("", ".", ".."):
        return f"the name {name!r}"
    bad = next((c for c in name if c in _LONG_BAD), None)
    return None if bad is None else f"{name!r} contains {bad!r}"


@dataclass
class _Folder:
    """One folder being read: where it is, and what its entries so far have shown."""

    path: str
    first: int
    parent: int  # the cluster its '..' must name (0 for the root)
    depth: int
    long: _LongName
    names: dict[str, str] = field(default_factory=dict)
    dots: int = 0
    subdirs: list[tuple[str, int, int, int]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return self.path or "/"


class _Tree:
    """Walks the directory tree from the root, without recursion."""

    def __init__(self, disk: _Disk, vol: _Volume, walker: _Walker) -> None:
        self.disk, self.vol, self.walker = disk, vol, walker
        self.found = _Found()

    def walk(self) -> _Found:
        todo: list[tuple[str, int, int, int]] = [("", self.vol.root, 0, 0)]
        while todo:
            path, first, parent, depth = todo.pop()
            folder = _Folder(path, first, parent, depth, _LongName(self.disk, path or "/"))
            self._read(folder)
            todo += reversed(folder.subdirs)
        return self.found

    def _read(self, d: _Folder) -> None:
        disk = self.disk
        if d.depth > _MAX_DEPTH:
            raise disk.fail(f"{d.where}: folders nested deeper than {_MAX_DEPTH} levels")
        limit = max(1, _MAX_DIR_BYTES // self.vol.cluster_bytes)
        runs = self.walker.chain(d.first, limit, f"folder {d.where}")
        data = b"".join(self.walker.read_runs(runs, sum(c for _, c in runs) * self.vol.cluster_bytes,
                                              f"folder {d.where}"))
        for pos in range(0, len(data), 32):
            e = data[pos:pos + 32]
            if e[0] == 0:
                break  # the end of the directory
            if not self._special(d, e, pos):
                self._entry(d, e)
        if d.long.dangling():
            raise disk.fail(f"{d.where}: long-name entries without their 8.3 entry")
        if d.path and d.dots != 2:
            raise disk.fail(f"{d.where}: a folder without its '.' and '..' entries")

    def _special(self, d: _Folder, e: bytes, pos: int) -> bool:
        """Handle a deleted, long-name, volume-label, '.' or '..' entry; False for any other."""
        disk, attr, short = self.disk, e[11], bytes(e[:11])
        if e[0] == 0xE5:
            if d.long.dangling():
                raise disk.fail(f"{d.where}: long-name entries before a deleted entry")
            return True
        if attr & 0x3F == 0x0F:
            d.long.add(e)
            return True
        if attr & 0x08 and not attr & 0x10:
            if d.path or d.long.dangling() or self.found.root_label is not None:
                raise disk.fail(f"{d.where}: a volume label entry outside the root folder, after a long name "
                                "or twice")
            self.found.root_label = short.decode("cp437").rstrip(" ")
            self.found.stamps += _stamps(e, f"{d.where} (volume label)")
            return True
        if short not in (b".          ", b"..         "):
            return False
        shown = short.strip().decode()
        if not d.path or d.long.dangling():
            raise disk.fail(f"{d.where}: a {shown!r} entry where there may be none")
        target = _u16(e, 20) << 16 | _u16(e, 26)
        want = d.first if shown == "." else d.parent
        if target != want or not attr & 0x10 or pos != 32 * d.dots:
            raise disk.fail(f"{d.where}: its {shown!r} entry is wrong (cluster {target}, expected {want})")
        d.dots += 1
        self.found.stamps += _stamps(e, f"{d.where}/{shown}")
        return True

    def _entry(self, d: _Folder, e: bytes) -> None:
        disk, found, attr, short = self.disk, self.found, e[11], bytes(e[:11])
        if d.path and d.dots != 2:
            raise disk.fail(f"{d.where}: a folder must begin with its '.' and '..' entries")
        if short[0] == 0x20 or any(b in _SHORT_BAD for b in short[1:]) or (short[0] != 0x05 and short[0] in _SHORT_BAD):
            raise disk.fail(f"{d.where}: an invalid 8.3 name {short!r}")
        display = _short_display(e)
        long_name = d.long.take(short)
        name = display if long_name is None else long_name
        problem = _name_problem(name)
        if problem:
            raise disk.fail(f"{d.where}: {problem}")
        child = f"{d.path}/{name}" if d.path else name
        for key in (name.casefold(), "\0" + short.decode("cp437")):
            if key in d.names:
                raise disk.fail(f"{d.where}: {name!r} and {d.names[key]!r} have the same name (case-insensitive "
                                "long name or 8.3 name)")
            d.names[key] = name
        found.short_names[child] = display
        found.stamps += _stamps(e, child)
        cluster, size = _u16(e, 20) << 16 | _u16(e, 26), _u32(e, 28)
        if attr & 0x10:
            d.subdirs.append((child, cluster, d.first if d.path else 0, d.depth + 1))
            found.dirs.append(child)
        elif size == 0:
            if cluster:
                raise disk.fail(f"{child}: an empty file with clusters (first cluster {cluster})")
            found.files.append((child, [], 0))
        else:
            need = -(-size // self.vol.cluster_bytes)
            runs = self.walker.chain(cluster, need, child)
            if sum(c for _, c in runs) != need:
                raise disk.fail(f"{child}: its cluster chain is shorter than its {size} bytes")
            found.files.append((child, runs, size))


def read_fat_disk(path: Path) -> FatContent:
    """Read every file of a FAT32 disk image (a fixed VHD) by its long-name path, with sha256 and size.

    Raises :class:`aero_media.media.vhd.VhdError` for a bad footer and :class:`FatError`
    for anything else malformed.
    """
    try:
        with open(path, "rb") as fp:
            return _read(fp, path)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})", "check the path") from None


def fat_partition(path: Path) -> Partition:
    """The FAT32 partition of a disk image (a fixed VHD), from its footer and MBR alone.

    Raises as :func:`read_fat_disk` does for a bad footer or partition table.
    """
    try:
        with open(path, "rb") as fp:
            return _fat_partition(fp, path)[2]
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})", "check the path") from None


def _fat_partition(fp: BinaryIO, path: Path) -> tuple[_Disk, int, Partition, tuple[Partition, ...], VhdFooter]:
    file_size = os.fstat(fp.fileno()).st_size
    fp.seek(max(0, file_size - FOOTER_SIZE))
    try:
        footer = parse_footer(fp.read(FOOTER_SIZE), file_size)
    except VhdError as exc:
        raise VhdError(f"{path.name}: {exc.message}", exc.hint) from None
    disk = _Disk(fp, footer.current_size, path.name)
    signature, partitions = _partitions(disk)
    part = next((p for p in partitions if p.type in _FAT_TYPES), None)
    if part is None:
        types = ", ".join(f"{p.type:#04x}" for p in partitions) or "none"
        raise disk.fail(f"no FAT32 partition (type 0x0B or 0x0C) in the MBR (types: {types})")
    return disk, signature, part, partitions, footer


def _fsinfo(disk: _Disk, vol: _Volume) -> tuple[bytes, bool]:
    """The FSInfo sector, and whether the backup boot sector equals the boot sector."""
    fsinfo_sector, backup_sector = _u16(vol.boot, 48), _u16(vol.boot, 50)
    if not 1 <= fsinfo_sector < vol.reserved:
        raise disk.fail(f"boot sector: FSInfo sector {fsinfo_sector} is outside the reserved area")
    fsinfo = disk.read(vol.start + fsinfo_sector * vol.bps, 512, "FSInfo")
    if fsinfo[0:4] != b"RRaA" or fsinfo[484:488] != b"rrAa" or fsinfo[508:512] != b"\0\0\x55\xaa":
        raise disk.fail("FSInfo: wrong signatures")
    backup_ok = (1 <= backup_sector < vol.reserved
                 and disk.read(vol.start + backup_sector * vol.bps, 512, "the backup boot sector") == vol.boot)
    return fsinfo, backup_ok


def _hash_files(walker: _Walker, found: _Found, name: str) -> dict[str, tuple[str, int]]:
    progress = Progress(f"verify {name}", sum(size for _, _, size in found.files))
    files: dict[str, tuple[str, int]] = {}
    for child, runs, size in found.files:
        h = hashlib.sha256()
        for chunk in walker.read_runs(runs, size, child):
            h.update(chunk)
            progress.advance(len(chunk))
        progress.advance(0, files=1)
        files[child] = (h.hexdigest(), size)
    progress.close()
    return files


def _read(fp: BinaryIO, path: Path) -> FatContent:
    disk, signature, part, partitions, footer = _fat_partition(fp, path)
    vol = _volume(disk, part)
    fsinfo, backup_ok = _fsinfo(disk, vol)
    fat, fats_match = _load_fat(disk, vol)
    walker = _Walker(disk, vol, fat)
    found = _Tree(disk, vol, walker).walk()
    # Free means a zero entry; the top four bits of an entry are reserved and do not count.
    entries = fat[2:]
    free = sum(entries.count(high << 28) for high in range(16))
    del entries
    files = _hash_files(walker, found, path.name)
    bs = vol.boot
    return FatContent(
        footer=footer, disk_signature=signature, partitions=partitions, partition=part,
        oem_name=bs[3:11].decode("cp437"), fs_type=bs[82:90].decode("cp437").rstrip(" "),
        label=bs[71:82].decode("cp437").rstrip(" "), root_label=found.root_label, serial=_u32(bs, 67),
        bytes_per_sector=vol.bps, cluster_size=vol.cluster_bytes, clusters=vol.clusters,
        fat_sectors=vol.fat_sectors, num_fats=vol.nfats, free_clusters=free, fsinfo_free=_u32(fsinfo, 488),
        fsinfo_next_free=_u32(fsinfo, 492), backup_boot_matches=backup_ok, fats_match=fats_match,
        files=files, dirs=tuple(found.dirs), short_names=found.short_names, stamps=tuple(found.stamps))
