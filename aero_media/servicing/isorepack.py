r"""Rebuild a Windows 7 install ISO with added or replaced files, keeping its El Torito boot records.

The rebuild is xorriso's: it loads the original ISO (``-indev``), maps our files
over its tree, and replays the boot catalog it found (``-boot_image any
replay``: the same BIOS and UEFI entries, load sizes and boot image files).
We rebuild from *the original ISO plus changes*, never from an extracted tree:
a tree has no boot catalog, and replay needs the original's.

What the output keeps and loses, and why:

* ISO 9660 and Joliet (Windows reads Joliet names) and Rock Ridge if the input
  had it; the volume label; the boot entries, which :func:`read_report` checks
  against the input's after writing.
* **UDF is dropped**: xorriso writes none. Retail Windows 7 DVDs carry UDF 1.02
  beside ISO 9660. distrobuilder's UDF-less Windows 10+ ISOs install, which is
  evidence for Windows 10, not 7: whether Windows 7 Setup needs UDF is not
  confirmed (docs/windows7.md#el-torito). The report says so.
* **Files of 4 GiB or more are refused.** ISO 9660 level 3 could store them as
  several extents, but Windows 7's CD-ROM file system reading multi-extent files
  is unverified, and Windows media keep such files readable through UDF, which
  this output lacks. Retail Windows 7 install.wim files are below 4 GiB.
* An input whose ISO 9660/Joliet tree lacks files the caller requires (a
  UDF-only disc, whose ISO 9660 side is a "use UDF" stub) is refused: xorriso
  reads only ISO 9660/Joliet/Rock Ridge, so the output would lose them.

The El Torito reader here does not use xorriso: it parses the boot record
volume descriptor and the boot catalog itself (El Torito 1.0 §2), so a test can
compare input and output with an oracle xorriso did not write.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .. import log, systools
from ..errors import SourceError, ToolError, UsageError
from ..fsutil import CHUNK, atomic_path, walk
from .wim import require_space

TOOL = "xorriso"
_PURPOSE = "servicing rebuilds the Windows install ISO with it"
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
    with open(iso, "rb") as fp:
        for lba in range(16, 16 + _MAX_VDS):
            vd = _sector(fp, lba)
            if len(vd) < SECTOR:
                break
            ident = vd[1:6]
            if ident in _UDF_IDS:
                udf = ident.decode("ascii")
            if ident != b"CD001":
                continue
            kind = vd[0]
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
    return IsoReport(volume_id=label, filesystems=systems, boot_entries=entries)


# -- the ISO's tree, as xorriso sees it --------------------------------------------

@dataclass(frozen=True)
class IsoEntry:
    """A file or folder of the tree xorriso loads."""

    path: str
    """Rooted, ``/``-separated, in the image's own case."""
    is_dir: bool
    size: int


_LSDL = re.compile(r"^(?P<mode>\S+)\s+\d+\s+\S+\s+\S+\s+(?P<size>\d+)\s+.*? (?P<path>'.*)$")


def _unquote(text: str) -> str:
    # xorriso quotes like a shell: '...' with each ' inside written as '"'"'.
    if not (text.startswith("'") and text.endswith("'")):
        raise ValueError(text)
    return text[1:-1].replace("'\"'\"'", "'")


def list_tree(iso: Path) -> list[IsoEntry]:
    """Every file and folder xorriso loads from ``iso`` (Rock Ridge, else Joliet, else ISO 9660 names)."""
    out = systools.run(TOOL, ["-report_about", "FAILURE", "-indev", os.fspath(iso), "-find", "/", "-exec", "lsdl"],
                       purpose=_PURPOSE, what=f"listing {iso.name}").out
    found = []
    for line in out.splitlines():
        m = _LSDL.match(line)
        if m is None:
            continue
        found.append(IsoEntry(_unquote(m.group("path")), m.group("mode").startswith("d"), int(m.group("size"))))
    return found


def _resolve(dest: str, known: Mapping[str, str]) -> str:
    """``dest`` with each existing component in the image's case (Windows would see one name, not two)."""
    parts = [p for p in dest.replace("\\", "/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise UsageError(f"ISO path {dest!r} is not a path inside the image", "use a path like sources/boot.wim")
    out = ""
    for part in parts:
        candidate = f"{out}/{part}"
        out = known.get(candidate.lower(), candidate)
    return out


def _local_size_problems(source: Path, dest: str) -> list[str]:
    if source.is_file():
        size = source.stat().st_size
        return [f"{dest} ({size} bytes)"] if size >= MAX_FILE else []
    problems = []
    for top, _dirs, files in walk(source):
        for name in files:
            full = Path(top) / name
            if full.stat().st_size >= MAX_FILE:
                problems.append(f"{dest}/{full.relative_to(source).as_posix()} ({full.stat().st_size} bytes)")
    return problems


def _local_bytes(source: Path) -> int:
    if source.is_file():
        return source.stat().st_size
    return sum((Path(top) / n).stat().st_size for top, _d, files in walk(source) for n in files)


@dataclass(frozen=True)
class RepackResult:
    """The input's and the output's reports, and what the output lost."""

    before: IsoReport
    after: IsoReport
    dropped: tuple[str, ...]
    """File systems the input had and the output lacks (``UDF``)."""


_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")


def _run_xorriso(args: Sequence[str], progress: log.Progress, total: int) -> None:
    def on_line(line: str) -> None:
        if "Writing" in line and (m := _PERCENT.search(line)):
            progress(int(total * float(m.group(1)) / 100), total)

    def why(tail: list[str]) -> str:  # xorriso's own verdict lines, else its last words
        return systools.last_line("\n".join([t for t in tail if "FAILURE" in t or "SORRY" in t] or tail))

    systools.stream(TOOL, args, on_line, purpose=_PURPOSE, what="writing the ISO", why=why,
                    hint="check the free space and that the input ISO is intact")


def repack(src: Path, out: Path, changes: Mapping[str, Path], *, require: Sequence[str] = ()) -> RepackResult:
    """Write ``out``: ``src`` with each ``changes`` entry (ISO path → local file or folder) added or replaced.

    Refuses before writing: files of 4 GiB or more, required paths (``require``)
    missing from the input's ISO 9660/Joliet tree, too little free space. The
    output appears only when complete and its boot entries equal the input's.
    """
    src, out = Path(src), Path(out)
    before = read_report(src)
    tree = list_tree(src)
    known = {e.path.lower(): e.path for e in tree}
    missing = [p for p in require if "/" + p.strip("/").lower() not in known]
    if missing:
        udf = " (it has UDF: a UDF-only disc, whose ISO 9660 side is a stub, cannot be rebuilt)" \
            if before.filesystems.udf else ""
        raise SourceError(f"{src.name}: its ISO 9660/Joliet tree lacks {', '.join(missing)}{udf}",
                          "give a Windows 7 ISO whose ISO 9660/Joliet tree carries every file (retail discs do)")
    too_big = [f"{e.path} ({e.size} bytes)" for e in tree if not e.is_dir and e.size >= MAX_FILE]
    mapped = {_resolve(dest, known): Path(local) for dest, local in changes.items()}
    for dest, local in mapped.items():
        if not local.exists():
            raise UsageError(f"{local}: no such file to put at {dest}", "build the file first")
        too_big += _local_size_problems(local, dest)
    if too_big:
        raise SourceError(f"files of 4 GiB or more cannot go on the rebuilt ISO: {', '.join(too_big)}",
                          "export fewer editions into install.wim (wimlib-imagex export) to bring it below 4 GiB")
    total = src.stat().st_size + sum(_local_bytes(p) for p in mapped.values())
    require_space(out.parent, total, f"rebuilding {src.name}")
    systems = before.filesystems
    progress = log.Progress(f"writing {out.name}", total)
    with atomic_path(out) as tmp:
        tmp.unlink()  # xorriso refuses to write onto an existing non-empty file it did not make
        args = ["-report_about", "UPDATE", "-return_with", "SORRY", "32",
                "-indev", os.fspath(src), "-outdev", os.fspath(tmp),
                "-boot_image", "any", "replay",
                "-joliet", "on" if systems.joliet else "off",
                "-rockridge", "on" if systems.rock_ridge else "off",
                "-compliance", "joliet_long_names"]
        for dest, local in sorted(mapped.items()):
            args += ["-map", os.fspath(local), dest]
        _run_xorriso([*args, "-commit"], progress, total)
        progress.close()
        after = read_report(tmp)
        _check_boot(before, after, src.name)
    dropped = tuple(n for n in before.filesystems.names() if n not in after.filesystems.names())
    if dropped:
        log.warn(f"{out.name} has no {', '.join(dropped)} (xorriso writes none): whether Windows 7 Setup installs "
                 "from ISO 9660 + Joliet alone is not verified")
    return RepackResult(before, after, dropped)


def _check_boot(before: IsoReport, after: IsoReport, name: str) -> None:
    same = len(before.boot_entries) == len(after.boot_entries) and all(
        a.same_boot(b) for a, b in zip(before.boot_entries, after.boot_entries, strict=True))
    if not same:
        shown = [f"{e.platform}/{e.emulation}/{e.sector_count}" for e in after.boot_entries]
        wanted = [f"{e.platform}/{e.emulation}/{e.sector_count}" for e in before.boot_entries]
        raise ToolError(f"{TOOL} rebuilt {name} with boot entries {shown or 'none'}, not {wanted}",
                        "the output was not kept; report it with the xorriso version")
