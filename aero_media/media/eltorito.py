"""El Torito boot records for the ISO writer ("El Torito" Bootable CD-ROM Format Specification 1.0).

Only the encoding lives here: the boot record volume descriptor (sector 17) and the
boot catalog. Where the catalog and the images go is the writer's business
(``isowriter.py``); each image is written as its own extent that no directory names,
as Microsoft's oscdimg does, so the firmware's load address never depends on the tree.

The first image is the default (initial) entry, and its platform is the validation
entry's. The images after it are grouped into one section per platform, in the order
the platforms first appear; the last section header says it is the last (0x91).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError
from .files import MediaFile

SECTOR = 2048
BOOT_RECORD_SECTOR = 17  # El Torito 1.0 §2.0: the boot record volume descriptor's fixed place
PLATFORMS = {0x00: "BIOS (x86)", 0x01: "PowerPC", 0x02: "Mac", 0xEF: "UEFI"}
EMULATIONS = {0: "no emulation", 1: "1.2M floppy", 2: "1.44M floppy", 3: "2.88M floppy", 4: "hard disk"}
FLOPPY_BYTES = {1: 1200 * 1024, 2: 1440 * 1024, 3: 2880 * 1024}
_ENTRY = 32
_CATALOG_ENTRIES = SECTOR // _ENTRY  # the catalog is one sector
_SYSTEM_ID = b"EL TORITO SPECIFICATION"


@dataclass(frozen=True)
class BootImage:
    """One boot catalog entry and the image it loads."""

    platform: int
    """0x00 BIOS, 0xEF UEFI (0x01 PowerPC, 0x02 Mac)."""
    emulation: int
    """0 no emulation; 1-3 floppy (1.2M, 1.44M, 2.88M); 4 hard disk."""
    load_segment: int
    """Real-mode segment the BIOS loads to (0 means the traditional 0x7C0)."""
    system_type: int
    """The partition type of a hard-disk image; 0 otherwise."""
    sector_count: int
    """Virtual (512-byte) sectors the firmware loads, recorded as given."""
    image: MediaFile
    """The image's bytes, written as their own extent."""


def boot_problem(index: int, boot: BootImage) -> str | None:
    """Why entry ``index`` cannot be recorded, naming the field, or None."""
    where = f"boot image {index} ({boot.image.path})"
    if boot.platform not in PLATFORMS:
        return f"{where}: platform 0x{boot.platform:X} is not one El Torito defines ({_named(PLATFORMS)})"
    if boot.emulation not in EMULATIONS:
        return f"{where}: emulation {boot.emulation} is not one El Torito defines ({_named(EMULATIONS)})"
    for name, value, top in (("load_segment", boot.load_segment, 0xFFFF), ("system_type", boot.system_type, 0xFF),
                             ("sector_count", boot.sector_count, 0xFFFF)):
        if not 0 <= value <= top:
            return f"{where}: {name} {value} does not fit the catalog entry (0 to {top})"
    size = boot.image.size
    if size == 0:
        return f"{where}: the image is empty"
    floppy = FLOPPY_BYTES.get(boot.emulation)
    if floppy is not None and size != floppy:
        return f"{where}: {EMULATIONS[boot.emulation]} emulation needs an image of {floppy} bytes, not {size}"
    return None


def check_boot(boot: Sequence[BootImage]) -> None:
    """Refuse boot entries the catalog cannot record, with the field and the fix."""
    # The validation entry, the default entry, then a header per further platform and an entry per image.
    entries = 1 + len(boot) + len({b.platform for b in boot[1:]})
    if entries > _CATALOG_ENTRIES:
        raise UsageError(f"{len(boot)} boot images need {entries} catalog entries; its one sector holds "
                         f"{_CATALOG_ENTRIES}", "drop boot images")
    for index, entry in enumerate(boot):
        problem = boot_problem(index, entry)
        if problem:
            raise UsageError(problem, "fix the boot image entry")


def _named(table: dict[int, str]) -> str:
    return ", ".join(f"{k:#x} {v}" for k, v in table.items())


def boot_record(catalog_sector: int) -> bytes:
    """The boot record volume descriptor (El Torito 1.0 §2.0) pointing at the catalog."""
    vd = bytearray(SECTOR)
    vd[0:7] = b"\0CD001\x01"
    vd[7:39] = _SYSTEM_ID.ljust(32, b"\0")
    vd[0x47:0x4B] = struct.pack("<I", catalog_sector)
    return bytes(vd)


def _entry(boot: BootImage, sector: int, indicator: int = 0x88) -> bytes:
    # El Torito 1.0 §2.2 (initial entry) and §2.4 (section entry, selection criteria type 0): the same layout.
    return struct.pack("<BBHBBHI", indicator, boot.emulation, boot.load_segment, boot.system_type, 0,
                       boot.sector_count, sector).ljust(_ENTRY, b"\0")


def _validation_entry(platform: int) -> bytes:
    # El Torito 1.0 §2.1: the sixteen little-endian words sum to zero.
    head = struct.pack("<BBH24s", 1, platform, 0, b"")
    tail = b"\x55\xaa"
    words = struct.unpack("<16H", head + b"\0\0" + tail)
    return head + struct.pack("<H", -sum(words) & 0xFFFF) + tail


def catalog(entries: Sequence[tuple[BootImage, int]]) -> bytes:
    """The boot catalog sector for ``entries`` (image, its first sector), the first being the default entry."""
    first, first_sector = entries[0]
    out = bytearray(_validation_entry(first.platform) + _entry(first, first_sector))
    sections: dict[int, list[tuple[BootImage, int]]] = {}
    for boot, sector in entries[1:]:
        sections.setdefault(boot.platform, []).append((boot, sector))
    for number, (platform, members) in enumerate(sections.items(), start=1):
        final = number == len(sections)
        out += struct.pack("<BBH", 0x91 if final else 0x90, platform, len(members)).ljust(_ENTRY, b"\0")
        for boot, sector in members:
            out += _entry(boot, sector)
    assert len(out) <= SECTOR
    return bytes(out.ljust(SECTOR, b"\0"))
