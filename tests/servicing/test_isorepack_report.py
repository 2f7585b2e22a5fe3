"""The input ISO's report: only the volume descriptor set counts, and boot image sizes are never guessed."""

from __future__ import annotations

import struct
from pathlib import Path

from aero_media.media.files import FileRegion, MediaFile
from aero_media.media.isowriter import write_iso
from aero_media.servicing import isorepack

SECTOR = 2048


def test_a_boot_record_after_the_set_terminator_is_not_read(tmp_path: Path) -> None:
    iso = tmp_path / "in.iso"
    write_iso([MediaFile("a.txt", data=b"A")], iso, "T", 0)
    b = bytearray(iso.read_bytes())
    end = next(s for s in range(16, 32) if b[s * SECTOR] == 255 and b[s * SECTOR + 1:s * SECTOR + 6] == b"CD001")
    # An El Torito boot record (ECMA-119 8.2) in the sector after the terminator, pointing at a catalog.
    record = bytearray(SECTOR)
    record[0:7] = b"\x00CD001\x01"
    record[7:30] = b"EL TORITO SPECIFICATION"
    struct.pack_into("<I", record, 0x47, end + 2)
    b[(end + 1) * SECTOR:(end + 2) * SECTOR] = record
    iso.write_bytes(b)
    report = isorepack.read_report(iso)
    assert report.catalog_lba is None and report.boot_entries == ()


def _entry(platform: str, sector_count: int) -> isorepack.BootEntry:
    return isorepack.BootEntry(platform, True, "none", 0, 0, sector_count, 20, sector_count * 512, "")


def _images(tmp_path: Path, sizes: list[int]) -> int:
    """The boot image's length when input files of ``sizes`` all start at its sector."""
    src = tmp_path / "in.iso"
    src.write_bytes(bytes(64 * SECTOR))
    report = isorepack.IsoReport("T", isorepack.FileSystems(True, True, False, None), (_entry("BIOS", 4),))
    files = [MediaFile(f"f{i}", region=FileRegion(src, ((20 * SECTOR, n),))) for i, n in enumerate(sizes)]
    (image,) = isorepack._boot_images(src, report, files)
    return image.image.size


def test_a_boot_image_takes_the_size_of_the_one_file_at_its_sector(tmp_path: Path) -> None:
    assert _images(tmp_path, [8192]) == 8192
    assert _images(tmp_path, []) == 2048  # no file: what the firmware loads


def test_two_files_at_the_boot_sector_leave_the_size_to_the_fallback(tmp_path: Path) -> None:
    assert _images(tmp_path, [8192, 12288]) == 2048
    assert _images(tmp_path, [12288, 8192]) == 2048
