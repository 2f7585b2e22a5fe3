"""El Torito boot records from the ISO writer, read back by xorriso and isoinfo, and the catalog's rules."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import pytest

from aero_media.errors import UsageError
from aero_media.media.eltorito import BootImage, catalog
from aero_media.media.files import MediaFile
from aero_media.media.isowriter import write_iso
from tests.lib.needs import need_tool

ETFSBOOT = MediaFile("boot/etfsboot.com", data=b"\xeb\x52" + b"B" * 4094)
EFISYS = MediaFile("efi/microsoft/boot/efisys.bin", data=b"\xeb\x3c" + b"E" * (1_474_560 - 2))
FILES = [ETFSBOOT, EFISYS, MediaFile("setup.exe", data=b"MZ")]
# As oscdimg records a Windows 7 x64 DVD: BIOS no emulation, 8 sectors at 0x7C0; UEFI no emulation.
BIOS = BootImage(platform=0x00, emulation=0, load_segment=0x07C0, system_type=0, sector_count=8, image=ETFSBOOT)
UEFI = BootImage(platform=0xEF, emulation=0, load_segment=0, system_type=0, sector_count=2880, image=EFISYS)


def _xorriso_entries(iso: Path) -> list[tuple[str, str, str, int, int]]:
    """(platform, emulation, load segment, load size, LBA) of every entry, from xorriso's plain report."""
    xorriso = need_tool("xorriso", "an independent El Torito reader")
    report = subprocess.run([xorriso, "-indev", str(iso), "-report_el_torito", "plain"], capture_output=True,
                            text=True, check=True).stdout
    rows = re.findall(r"El Torito boot img :\s+\d+\s+(\S+)\s+y\s+(\S+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+(\d+)\s+(\d+)",
                      report)
    return [(p, e, seg, int(size), int(lba)) for p, e, seg, size, lba in rows]


@pytest.mark.parametrize("udf", [False, True], ids=["iso", "udf-bridge"])
def test_xorriso_reads_the_bios_and_uefi_entries(tmp_path: Path, udf: bool) -> None:
    iso = tmp_path / "boot.iso"
    write_iso(FILES, iso, "GRMCULXFRER_EN", 0, udf=udf, boot=[BIOS, UEFI])
    entries = _xorriso_entries(iso)
    assert [e[:4] for e in entries] == [("BIOS", "none", "0x07c0", 8), ("UEFI", "none", "0x0000", 2880)]
    data = iso.read_bytes()
    for (*_rest, lba), image in zip(entries, (ETFSBOOT, EFISYS), strict=True):
        assert data[lba * 2048:lba * 2048 + image.size] == image.data


def test_isoinfo_finds_the_boot_record_and_the_default_entry(tmp_path: Path) -> None:
    iso = tmp_path / "boot.iso"
    write_iso(FILES, iso, "GRMCULXFRER_EN", 0, udf=True, boot=[BIOS, UEFI])
    isoinfo = need_tool("isoinfo", "an independent El Torito reader")
    info = subprocess.run([isoinfo, "-d", "-i", str(iso)], capture_output=True, text=True, check=True).stdout
    found = re.search(r"El Torito VD version 1 found, boot catalog is in sector (\d+)", info)
    assert found is not None
    assert re.search(r"Arch 0 \(x86\)", info) and re.search(r"Nsect 8\b", info)
    assert re.search(r"Load segment 7C0\b", info) and re.search(r"No Emulation Boot", info)
    # The catalog isoinfo found is the one the boot record at sector 17 points at.
    data = iso.read_bytes()
    assert data[17 * 2048:17 * 2048 + 7] == b"\0CD001\x01"
    assert struct.unpack_from("<I", data, 17 * 2048 + 0x47)[0] == int(found.group(1))


def test_boot_images_are_their_own_hidden_extents(tmp_path: Path) -> None:
    iso = tmp_path / "boot.iso"
    write_iso(FILES, iso, "GRMCULXFRER_EN", 0, boot=[BIOS, UEFI])
    xorriso = need_tool("xorriso", "an independent ISO reader")
    listing = subprocess.run([xorriso, "-indev", str(iso), "-find", "/", "-type", "f", "-exec", "report_lba", "--"],
                             capture_output=True, text=True, check=True).stdout
    tree_lbas = {int(m) for m in re.findall(r"File data lba:\s+\d+\s*,\s*(\d+)", listing)}
    boot_lbas = {lba for *_rest, lba in _xorriso_entries(iso)}
    assert len(tree_lbas) == len(FILES) and not tree_lbas & boot_lbas  # the tree names no boot image extent
    names = subprocess.run([xorriso, "-indev", str(iso), "-find", "/"], capture_output=True, text=True,
                           check=True).stdout
    assert "boot.cat" not in names.lower()


def test_without_boot_images_there_is_no_boot_record(tmp_path: Path) -> None:
    iso = tmp_path / "plain.iso"
    write_iso(FILES, iso, "GRMCULXFRER_EN", 0)
    assert iso.read_bytes()[17 * 2048:17 * 2048 + 6] == b"\x02CD001"  # the Joliet descriptor, as before
    assert _xorriso_entries(iso) == []


def _words_sum(entry: bytes) -> int:
    return sum(struct.unpack("<16H", entry)) & 0xFFFF


def test_catalog_groups_further_platforms_in_sections_and_flags_the_last() -> None:
    mac = BootImage(0x02, 0, 0, 0, 4, ETFSBOOT)
    uefi2 = BootImage(0xEF, 0, 0, 0, 4, EFISYS)
    sector = catalog([(BIOS, 30), (UEFI, 31), (mac, 32), (uefi2, 33)])
    entries = [sector[i:i + 32] for i in range(0, 2048, 32)]
    assert entries[0][0] == 1 and entries[0][1] == 0x00 and entries[0][30:32] == b"\x55\xaa"
    assert _words_sum(entries[0]) == 0  # the validation entry's checksum
    assert entries[1][0] == 0x88 and struct.unpack_from("<HBBHI", entries[1], 2) == (0x07C0, 0, 0, 8, 30)
    # One section per further platform, in the order they first appear; 0x91 marks the last header.
    assert (entries[2][0], entries[2][1], struct.unpack_from("<H", entries[2], 2)[0]) == (0x90, 0xEF, 2)
    assert [struct.unpack_from("<I", e, 8)[0] for e in entries[3:5]] == [31, 33]
    assert (entries[5][0], entries[5][1], struct.unpack_from("<H", entries[5], 2)[0]) == (0x91, 0x02, 1)
    assert struct.unpack_from("<I", entries[6], 8)[0] == 32
    assert set(b"".join(entries[7:])) == {0}


def test_a_uefi_only_catalog_names_uefi_in_the_validation_entry() -> None:
    sector = catalog([(UEFI, 40)])
    assert sector[1] == 0xEF and _words_sum(sector[:32]) == 0 and sector[64] == 0


@pytest.mark.parametrize("change,field", [
    ({"platform": 0x42}, "platform"),
    ({"emulation": 7}, "emulation"),
    ({"sector_count": 70_000}, "sector_count"),
    ({"load_segment": -1}, "load_segment"),
    ({"emulation": 2}, "1.44M floppy emulation needs an image of 1474560 bytes"),
    ({"image": MediaFile("boot/empty.bin", data=b"")}, "empty"),
])
def test_bad_boot_entries_are_refused_naming_the_field(tmp_path: Path, change: dict[str, object],
                                                       field: str) -> None:
    fields = {"platform": 0, "emulation": 0, "load_segment": 0x7C0, "system_type": 0, "sector_count": 8,
              "image": ETFSBOOT, **change}
    out = tmp_path / "bad.iso"
    with pytest.raises(UsageError) as exc:
        write_iso(FILES, out, "L", 0, boot=[BootImage(**fields)])  # type: ignore[arg-type]
    assert field in exc.value.render() and "boot image 0" in exc.value.render()
    assert not out.exists()


def test_too_many_boot_images_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="catalog entries"):
        write_iso(FILES, tmp_path / "bad.iso", "L", 0, boot=[BIOS] * 64)
    write_iso(FILES, tmp_path / "ok.iso", "L", 0, boot=[BIOS] * 62)  # validation + 62 entries + one header
