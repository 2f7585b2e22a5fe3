r"""Rebuild a Windows 7 install ISO with added or replaced files, keeping its El Torito boot records and UDF.

The rebuild is our own ISO writer's (:func:`aero_media.media.isowriter.write_iso`):
the output's files are the input's tree as :class:`~aero_media.sources.isoread.IsoTree`
reads it (UDF when the disc has it, as Windows reads it; else Joliet or ISO 9660),
with each change (ISO path → local file or folder) added or replacing what was
there. An unchanged file is streamed straight from the input ISO (a
:class:`~aero_media.media.files.FileRegion`, never extracted), so the input is read
once. What the output carries, and why:

* ISO 9660 level 3, Joliet (Windows reads Joliet names), Rock Ridge, and a UDF 1.02
  bridge naming the same extents, always: Windows 7 DVDs are UDF-first (oscdimg
  ``-u2 -udfver102``) and Setup reads the disc through UDF when it is there, so the
  output is a DVD of that shape whatever the input was (docs/design.md, "Servicing
  rebuilds the ISO with our writer").
* The volume label, and the El Torito entries, replayed: each entry's platform,
  emulation, load segment, system type and sector count as the input's catalog
  has them, and its image's bytes by :func:`boot_image_bytes` (documented there);
  :func:`read_report` checks input and output entries equal after writing.
* Files of 4 GiB or more are refused before writing: the writer stores each file
  as one extent (ISO 9660 holds at most 4 GiB − 1 byte in one). Retail Windows 7
  install.wim files are below 4 GiB.
* Every folder of the input is carried, also one with no files in it.

The El Torito reader here parses the boot record volume descriptor and the boot
catalog itself (El Torito 1.0 §2), so tests compare input and output with an
oracle our writer did not write; xorriso is only a test oracle for this path.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .. import log
from ..errors import SourceError, ToolError, UnsafePathError, UsageError
from ..fsutil import CHUNK, walk
from ..media.eltorito import BootImage
from ..media.files import FileRegion, MediaFile, Spliced
from ..media.isowriter import label_problem, write_iso
from ..sources.isoread import IsoTree
from ..sources.tree import EntryKind
from ..winnames import MAX_COMPONENT, NameLimits, check_no_case_clash, component_problem
from .wim import require_space

SECTOR = 2048
MAX_FILE = 4 * 1024**3
"""Smallest size refused: one ISO 9660 extent holds at most 4 GiB − 1 byte."""

_PLATFORMS = {0x00: "BIOS", 0x01: "PowerPC", 0x02: "Mac", 0xEF: "UEFI"}
_EMULATIONS = {0: "none", 1: "floppy-1.2M", 2: "floppy-1.44M", 3: "floppy-2.88M", 4: "hard-disk"}
_FLOPPY_BYTES = {1: 1200 * 1024, 2: 1440 * 1024, 3: 2880 * 1024}
_JOLIET_ESCAPES = (b"%/@", b"%/C", b"%/E")
_UDF_IDS = (b"NSR02", b"NSR03")  # ECMA-167 2nd edition (UDF 1.02-1.50) and 3rd (UDF 2.00 on)
_UDF_ANCHOR = 256
_TAG_LVD = 6
_TAG_TERMINATOR = 8
_MAX_VDS = 64
_MAX_CATALOG_SECTORS = 8


@dataclass(frozen=True)
class BootEntry:
    """One El Torito boot entry, and a hash of the bytes the firmware loads for it."""

    platform: str
    bootable: bool
    emulation: str
    load_segment: int
    system_type: int
    sector_count: int
    """In 512-byte virtual sectors, as the catalog says."""
    load_rba: int
    image_bytes: int
    """What is hashed: sector_count × 512 (no emulation), the floppy size, or the disk image's partition end."""
    image_sha256: str

    def same_boot(self, other: BootEntry) -> bool:
        """Equal in everything but where the image lies (a rebuild moves it)."""
        return (self.platform, self.bootable, self.emulation, self.load_segment, self.system_type,
                self.sector_count, self.image_bytes, self.image_sha256) == (
            other.platform, other.bootable, other.emulation, other.load_segment, other.system_type,
            other.sector_count, other.image_bytes, other.image_sha256)


@dataclass(frozen=True)
class FileSystems:
    """Which file systems an image carries."""

    iso9660: bool
    joliet: bool
    rock_ridge: bool
    udf: str | None
    """``UDF 2.60`` and the like (the logical volume's domain revision), else the recognition
    sequence's ``NSR02``/``NSR03``; None without UDF."""

    def names(self) -> tuple[str, ...]:
        """Short names of what is present."""
        return tuple(n for n, present in (("ISO 9660", self.iso9660), ("Joliet", self.joliet),
                                          ("Rock Ridge", self.rock_ridge), ("UDF", self.udf is not None)) if present)


@dataclass(frozen=True)
class IsoReport:
    """What :func:`read_report` finds in an ISO."""

    volume_id: str
    filesystems: FileSystems
    boot_entries: tuple[BootEntry, ...]
    catalog_lba: int | None = None
    """Where the El Torito boot catalog lies (a tree may name it as a file, e.g. ``boot.cat``)."""


# -- reading (no xorriso) ----------------------------------------------------------

def _sector(fp: BinaryIO, lba: int, count: int = 1) -> bytes:
    fp.seek(lba * SECTOR)
    return fp.read(SECTOR * count)


def _hash_extent(fp: BinaryIO, offset: int, size: int) -> str:
    h = hashlib.sha256()
    fp.seek(offset)
    left = size
    while left > 0:
        chunk = fp.read(min(CHUNK, left))
        if not chunk:
            raise SourceError(f"a boot image ends past the end of the ISO ({left} bytes missing)",
                              "the ISO is truncated: download it again")
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


def _entry(fp: BinaryIO, rec: bytes, platform: int) -> BootEntry:
    indicator, media, segment, system_type, count, rba = struct.unpack_from("<BBHBxHI", rec)
    emulation = media & 0x0F
    if emulation in _FLOPPY_BYTES:
        size = _FLOPPY_BYTES[emulation]
    elif emulation == 4:
        mbr = _sector(fp, rba)[:512]
        start, length = struct.unpack_from("<II", mbr, 0x1BE + 8)
        size = (start + length) * 512 if mbr[510:512] == b"\x55\xaa" else 512
    else:
        size = count * 512
    return BootEntry(platform=_PLATFORMS.get(platform, f"0x{platform:02x}"), bootable=indicator == 0x88,
                     emulation=_EMULATIONS.get(emulation, f"type {emulation}"), load_segment=segment,
                     system_type=system_type, sector_count=count, load_rba=rba, image_bytes=size,
                     image_sha256=_hash_extent(fp, rba * SECTOR, size))


def _catalog(fp: BinaryIO, lba: int, name: str) -> tuple[BootEntry, ...]:
    data = _sector(fp, lba, _MAX_CATALOG_SECTORS)
    records = [data[i:i + 32] for i in range(0, len(data) - 31, 32)]
    if not records or records[0][0] != 0x01 or records[0][30:32] != b"\x55\xaa":
        raise SourceError(f"{name}: the El Torito boot catalog at sector {lba} has no validation entry",
                          "the ISO's boot records are damaged: take an intact ISO")
    if sum(struct.unpack("<16H", records[0])) & 0xFFFF:
        raise SourceError(f"{name}: the El Torito validation entry's checksum is wrong",
                          "the ISO's boot records are damaged: take an intact ISO")
    entries = [_entry(fp, records[1], records[0][1])]
    i = 2
    while i < len(records):
        head = records[i]
        if head[0] not in (0x90, 0x91):
            break  # end of catalog (zeros) or a record type we do not know
        platform, count = head[1], struct.unpack_from("<H", head, 2)[0]
        i += 1
        for _ in range(count):
            while i < len(records) and records[i][0] == 0x44:
                i += 1  # an extension record of the previous entry
            if i >= len(records):
                break
            entries.append(_entry(fp, records[i], platform))
            i += 1
        while i < len(records) and records[i][0] == 0x44:
            i += 1
        if head[0] == 0x91:
            break
    return tuple(entries)


def _has_rock_ridge(fp: BinaryIO, pvd: bytes) -> bool:
    root_lba = struct.unpack_from("<I", pvd, 156 + 2)[0]
    rec = _sector(fp, root_lba)
    length, name_len = rec[0], rec[32] if len(rec) > 32 else 0
    su = 33 + name_len + (0 if name_len % 2 else 1)
    return length > su + 7 and rec[su:su + 2] == b"SP" and rec[su + 4:su + 6] == b"\xbe\xef"


def _udf_revision(fp: BinaryIO) -> str | None:
    """The UDF revision in the logical volume descriptor's domain identifier (ECMA-167 3/10.6, UDF 2.2.4)."""
    anchor = _sector(fp, _UDF_ANCHOR)
    if len(anchor) < 24 or struct.unpack_from("<H", anchor)[0] != 2:
        return None
    length, location = struct.unpack_from("<II", anchor, 16)
    for lba in range(location, location + min(length // SECTOR, 32)):
        desc = _sector(fp, lba)
        tag = struct.unpack_from("<H", desc)[0] if len(desc) >= 2 else _TAG_TERMINATOR
        if tag == _TAG_TERMINATOR:
            break
        if tag == _TAG_LVD and desc[217:236].rstrip(b"\0") == b"*OSTA UDF Compliant":
            revision = struct.unpack_from("<H", desc, 216 + 24)[0]
            return f"UDF {revision >> 8:x}.{revision & 0xFF:02x}"
    return None


def read_report(iso: Path) -> IsoReport:
    """The volume label, file systems and El Torito entries of ``iso``, read directly (streamed)."""
    name = iso.name
    pvd: bytes | None = None
    joliet = False
    catalog: int | None = None
    udf: str | None = None
    terminated = False  # ECMA-119 8.3: no ISO 9660 descriptor follows the set terminator, only UDF's sequence
    with open(iso, "rb") as fp:
        for lba in range(16, 16 + _MAX_VDS):
            vd = _sector(fp, lba)
            if len(vd) < SECTOR:
                break
            ident = vd[1:6]
            if ident in _UDF_IDS:
                udf = ident.decode("ascii")
            if ident != b"CD001" or terminated:
                continue
            kind = vd[0]
            if kind == 255:
                terminated = True
            if kind == 1 and pvd is None:
                pvd = vd
            elif kind == 2 and vd[88:91] in _JOLIET_ESCAPES:
                joliet = True
            elif kind == 0 and vd[7:30] == b"EL TORITO SPECIFICATION":
                catalog = struct.unpack_from("<I", vd, 0x47)[0]
        if pvd is None:
            raise SourceError(f"{name} is not an ISO 9660 image (no primary volume descriptor)",
                              "give the Windows 7 ISO file itself")
        entries = _catalog(fp, catalog, name) if catalog is not None else ()
        if udf is not None:
            udf = _udf_revision(fp) or udf
        systems = FileSystems(iso9660=True, joliet=joliet, rock_ridge=_has_rock_ridge(fp, pvd), udf=udf)
    label = pvd[40:72].decode("ascii", "replace").strip()
    return IsoReport(volume_id=label, filesystems=systems, boot_entries=entries, catalog_lba=catalog)


# -- the rebuild ---------------------------------------------------------------------

_PLATFORM_CODES = {v: k for k, v in _PLATFORMS.items()}
_EMULATION_CODES = {v: k for k, v in _EMULATIONS.items()}


def _fat_bytes(head: bytes) -> int | None:
    """The size a FAT boot sector's BPB declares (bytes per sector × total sectors), or None if it is no BPB."""
    if len(head) < 512 or head[510:512] != b"\x55\xaa" or head[0] not in (0xEB, 0xE9):
        return None
    per_sector: int = struct.unpack_from("<H", head, 0x0B)[0]
    total: int = struct.unpack_from("<H", head, 0x13)[0] or struct.unpack_from("<I", head, 0x20)[0]
    if per_sector not in (512, 1024, 2048, 4096) or total == 0:
        return None
    return per_sector * total


def boot_image_bytes(entry: BootEntry, named: int | None, head: bytes) -> int:
    """How many bytes of the input ISO, from the entry's load sector, are its boot image.

    The catalog gives where an image starts, not how long it is, so the rule is:
    the size of the file the tree names at that sector, if exactly one (``named``); else,
    for a no-emulation UEFI image (efisys.bin, a FAT floppy image), the size its FAT
    BPB declares if ``head`` parses as one; else what the firmware loads
    (:attr:`BootEntry.image_bytes`: sector count × 512, the floppy size, or the
    disk image's partition end). Never less than what the firmware loads, so the
    bytes the input's firmware loads are the output's.
    """
    size = named
    if size is None and entry.platform == "UEFI" and entry.emulation == "none":
        size = _fat_bytes(head)
    return max(size or 0, entry.image_bytes)


def _only_file_at(files: Sequence[MediaFile], offset: int) -> int | None:
    """The size of the one input file whose data starts at ``offset``; None when no file or several do.

    Several (names sharing the boot image's extent, with different sizes) say nothing sure about its length.
    """
    sizes = [f.size for f in files if f.region is not None and f.region.size and f.region.extents[0][0] == offset]
    return sizes[0] if len(sizes) == 1 else None


def _boot_images(src: Path, before: IsoReport, files: Sequence[MediaFile]) -> list[BootImage]:
    size = src.stat().st_size
    images: list[BootImage] = []
    with open(src, "rb") as fp:
        for index, entry in enumerate(before.boot_entries):
            offset = entry.load_rba * SECTOR
            fp.seek(offset)
            length = boot_image_bytes(entry, _only_file_at(files, offset), fp.read(512))
            if offset + length > size:
                raise SourceError(f"{src.name}: boot image {index} ({entry.platform}) runs past the end of the ISO",
                                  "the ISO is truncated: download it again")
            platform = _PLATFORM_CODES.get(entry.platform)
            if platform is None:
                platform = int(entry.platform, 16)
            region = FileRegion(src, ((offset, length),))
            images.append(BootImage(platform, _EMULATION_CODES[entry.emulation], entry.load_segment,
                                    entry.system_type, entry.sector_count,
                                    MediaFile(f"boot image {index}", region=region)))
    return images


def _resolve(dest: str, known: Mapping[str, str]) -> str:
    """``dest`` with each existing component in the image's case (Windows would see one name, not two)."""
    parts = [p for p in dest.replace("\\", "/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise UsageError(f"ISO path {dest!r} is not a path inside the image", "use a path like sources/boot.wim")
    out = ""
    for part in parts:
        candidate = f"{out}/{part}" if out else part
        out = known.get(candidate.lower(), candidate)
    return out


# Windows' name rules at Joliet's length; not the media's cmd.exe character set, which is for our own scripts.
_WINDOWS_NAMES = NameLimits(MAX_COMPONENT, "the Joliet limit")


def _check_tree_names(paths: Sequence[str], name: str) -> None:
    """The input's names are untrusted: each must be a Windows name, and no two may differ only by case."""
    for path in paths:
        for part in path.split("/"):
            problem = component_problem(part, _WINDOWS_NAMES)
            if problem:
                raise UnsafePathError(f"{name}: {path!r} in its tree: {problem}",
                                      "give an intact Windows 7 ISO")
    check_no_case_clash(paths, name)


def _checked_change(dest: str, known: Mapping[str, str], folders: set[str], name: str) -> str:
    """``dest`` resolved as :func:`_resolve` does, after refusing a bad name or a path through a file of the input."""
    if "\\" in dest or "\x00" in dest:
        raise UsageError(f"ISO path {dest!r} holds a backslash or NUL", "use '/' between names, like sources/boot.wim")
    for part in (p for p in dest.split("/") if p not in ("", ".", "..")):  # _resolve refuses . and ..
        problem = component_problem(part, _WINDOWS_NAMES)
        if problem:
            raise UsageError(f"ISO path {dest!r}: {problem}", "use a path like sources/boot.wim")
    where = _resolve(dest, known)
    parts = where.split("/")
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i])
        if prefix.lower() in known and prefix.lower() not in folders:
            raise UsageError(f"ISO path {dest!r}: {prefix} is a file of {name}, not a folder",
                             "give another ISO path")
    return where


def _local_files(source: Path, dest: str) -> list[MediaFile]:
    if source.is_file():
        return [MediaFile(dest, source=source)]
    return [MediaFile(f"{dest}/{(Path(top) / n).relative_to(source).as_posix()}", source=Path(top) / n)
            for top, _dirs, names in walk(source) for n in names]


@dataclass(frozen=True)
class RepackResult:
    """The input's and the output's reports, what the output lost, and the output's sha256."""

    before: IsoReport
    after: IsoReport
    dropped: tuple[str, ...]
    """File systems the input had and the output lacks: none (the output always has every one of ours)."""
    sha256: str
    """Of the output ISO, hashed as it was written."""
    reader: str
    """The input's name space the tree was read from (``udf``, ``joliet``...)."""
    digests: Mapping[str, str] = field(default_factory=dict)
    """The sha256 of each file :func:`repack` was asked to hash (by the ISO path it was asked by)."""


def repack(src: Path, out: Path, changes: Mapping[str, Path | bytes | Spliced], *, epoch: int,
           require: Sequence[str] = (), before: IsoReport | None = None, digests: Sequence[str] = ()) -> RepackResult:
    """Write ``out``: ``src`` with each ``changes`` entry (ISO path → local file or folder, bytes, or pieces of
    files) added or replaced.

    Refuses before writing: files of 4 GiB or more, required paths (``require``)
    missing from the tree read, symlinks or special files in it, too little free
    space. Every date in the output is ``epoch``; the output appears only when
    complete and its boot entries equal the input's. ``before`` is the input's
    :func:`read_report` when the caller has it; ``digests`` names files (ISO paths) to
    hash as they are written, returned in :attr:`RepackResult.digests`.
    """
    src, out = Path(src), Path(out)
    before = before or read_report(src)
    with IsoTree.open_path(src, src.name) as tree:
        entries = tree.entries()
        reader = tree.reader
        odd = [e for e in entries if e.kind not in (EntryKind.FILE, EntryKind.DIR)]
        if odd:
            raise SourceError(f"{src.name}: {odd[0].path!r} is a {odd[0].kind} ({tree.reader} names); a Windows "
                              "install DVD has only files and folders", "give an intact Windows 7 ISO")
        _check_tree_names([e.path for e in entries], src.name)
        inputs = {e.path: MediaFile(e.path, region=FileRegion(src, e.ref.extents))  # type: ignore[attr-defined]
                  for e in entries if e.kind == EntryKind.FILE}
    if before.catalog_lba is not None:
        # A file naming the input's boot catalog (boot.cat) would carry its old sector numbers: the writer
        # writes a catalog of its own, and the old one is left out.
        inputs = {p: m for p, m in inputs.items()
                  if not (m.region and m.region.size and m.region.extents[0][0] == before.catalog_lba * SECTOR)}
    known = {e.path.lower(): e.path for e in entries}
    missing = [p for p in require if p.strip("/").lower() not in known]
    if missing:
        raise SourceError(f"{src.name}: its {reader} tree lacks {', '.join(missing)}",
                          "give a Windows 7 ISO that carries every file Setup needs")
    folders = {e.path.lower() for e in entries if e.kind == EntryKind.DIR}
    files = _with_changes(inputs, changes, known, folders, src.name)
    too_big = [f"/{p} ({m.size} bytes)" for p, m in sorted(files.items()) if m.size >= MAX_FILE]
    if too_big:
        raise SourceError(f"files of 4 GiB or more cannot go on the rebuilt ISO: {', '.join(too_big)}",
                          "export fewer editions into install.wim (wimlib-imagex export) to bring it below 4 GiB")
    boot = _boot_images(src, before, list(inputs.values()))
    total = sum(m.size for m in files.values()) + sum(b.image.size for b in boot)
    require_space(out.parent, total, f"rebuilding {src.name}")
    label = before.volume_id
    if label_problem(label):
        # A label our writer cannot store as given (lower case, spaces): the d-character form, as Windows shows
        # ISO 9660 labels upper case anyway.
        label = re.sub(r"[^A-Z0-9_]", "_", label.upper())[:32] or "CDROM"
        log.warn(f"{src.name}: volume label {before.volume_id!r} is written as {label!r}")
    hashed = {_resolve(p, known): "" for p in digests}
    digest = write_iso(list(files.values()), out, label, epoch, udf=True, boot=boot, digests=hashed,
                       folders=[e.path for e in entries if e.kind == EntryKind.DIR])
    after = read_report(out)
    try:
        _check_boot(before, after, src.name)
    except ToolError:
        out.unlink()
        raise
    dropped = tuple(n for n in before.filesystems.names() if n not in after.filesystems.names())
    return RepackResult(before, after, dropped, digest, reader,
                        {p: hashed[_resolve(p, known)] for p in digests})


def _with_changes(inputs: Mapping[str, MediaFile], changes: Mapping[str, Path | bytes | Spliced],
                  known: Mapping[str, str], folders: set[str], name: str) -> dict[str, MediaFile]:
    """The input's files with ``changes`` applied (ISO paths in the image's case); a file never replaces a folder."""
    files = dict(inputs)
    for dest, given in changes.items():
        if isinstance(given, bytes | Spliced):  # in memory only (an answer file's password), or pieces of files
            where = _checked_change(dest, known, folders, name)
            if where.lower() in folders:
                raise UsageError(f"a file cannot replace the folder {where} of {name}", "give another ISO path")
            files[where] = MediaFile(where, data=given) if isinstance(given, bytes) else MediaFile(where, spliced=given)
            continue
        local = Path(given)
        if not local.exists():
            raise UsageError(f"{local}: no such file to put at {dest}", "build the file first")
        where = _checked_change(dest, known, folders, name)
        if local.is_file() and where.lower() in folders:
            raise UsageError(f"{local}: a file cannot replace the folder {where} of {name}",
                             "give a folder, or another ISO path")
        for media in _local_files(local, where):
            path = _checked_change(media.path, known, folders, name)
            if path.lower() in folders:
                raise UsageError(f"{local}: a file cannot replace the folder {path} of {name}",
                                 "give another ISO path")
            files[path] = MediaFile(path, source=media.source)
    check_no_case_clash(list(files), name)
    return files


def _check_boot(before: IsoReport, after: IsoReport, name: str) -> None:
    same = len(before.boot_entries) == len(after.boot_entries) and all(
        a.same_boot(b) for a, b in zip(before.boot_entries, after.boot_entries, strict=True))
    if not same:
        shown = [f"{e.platform}/{e.emulation}/{e.sector_count}" for e in after.boot_entries]
        wanted = [f"{e.platform}/{e.emulation}/{e.sector_count}" for e in before.boot_entries]
        raise ToolError(f"rebuilding {name} gave boot entries {shown or 'none'}, not {wanted}",
                        "the output was not kept; report it with the input ISO's El Torito catalog")
