"""The fixed VHD footer: our footer against Aero's reader rules, the CHS sizing rule, and qemu-img as an oracle."""

from __future__ import annotations

import json
import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from aero_media.errors import UsageError, VerifyError
from aero_media.media import vhd
from aero_media.media.vhd import VhdError, chs_exact, chs_geometry, disk_size, footer, parse_footer
from tests.lib.needs import need_tool

MIB = 1024 * 1024
UID = bytes(range(16))
SIZE = chs_exact(64 * MIB)


def rechecksum(data: bytearray) -> bytes:
    """Recompute the checksum the way the spec words it, independently of the module's helper."""
    data[64:68] = b"\0\0\0\0"
    data[64:68] = struct.pack(">I", (~sum(data)) & 0xFFFFFFFF)
    return bytes(data)


def test_footer_fields_parse_back() -> None:
    data = footer(SIZE, 1700000000, UID)
    assert len(data) == 512
    f = parse_footer(data, SIZE + 512)
    assert data[:8] == b"conectix" and f.features == 2 and f.version == 0x00010000
    assert f.data_offset == 0xFFFFFFFFFFFFFFFF and f.disk_type == 2
    assert f.timestamp == 1700000000 - 946684800
    assert f.creator_app == b"aero" and f.creator_os == b"Wi2k"
    assert f.original_size == f.current_size == SIZE
    assert (f.cylinders, f.heads, f.sectors_per_track) == (964, 8, 17)
    assert f.unique_id == UID and f.saved_state == 0
    assert data[85:] == bytes(427)
    assert rechecksum(bytearray(data)) == data


def test_timestamp_before_2000_is_zero() -> None:
    assert parse_footer(footer(SIZE, 315532800, UID), SIZE + 512).timestamp == 0


def _set(offset: int, fmt: str, value: int | bytes, fix_checksum: bool = True) -> Callable[[bytearray], bytes]:
    def mutate(data: bytearray) -> bytes:
        struct.pack_into(fmt, data, offset, value)
        return rechecksum(data) if fix_checksum else bytes(data)
    return mutate


@pytest.mark.parametrize("mutate,message", [
    (_set(0, "8s", b"conectiy"), "cookie"),
    (_set(12, ">I", 0x00020000), "unsupported format version"),
    (_set(64, ">I", 0x12345678, fix_checksum=False), "checksum"),
    (_set(24, ">I", 12345, fix_checksum=False), "checksum"),  # any other byte changed, checksum not updated
    (_set(60, ">I", 3), "disk type 3 (dynamic) is not a fixed VHD"),
    (_set(60, ">I", 4), "disk type 4 (differencing)"),
    (_set(60, ">I", 7), "disk type 7 (unknown)"),
    (_set(16, ">Q", 512), "data offset must be all ones"),
    (_set(48, ">Q", SIZE + 100), "not a non-zero multiple of 512"),
    (_set(48, ">Q", 0), "not a non-zero multiple of 512"),
    (_set(48, ">Q", SIZE + 512), "truncated"),  # claims more disk than the file holds
], ids=["cookie", "version", "checksum", "checksum-stale", "dynamic", "differencing", "type", "offset",
        "unaligned", "zero", "too-big"])
def test_each_aero_rule_is_enforced(mutate: Callable[[bytearray], bytes], message: str) -> None:
    data = mutate(bytearray(footer(SIZE, 0, UID)))
    with pytest.raises(VhdError, match=re.escape(message)) as exc:
        parse_footer(data, SIZE + 512)
    assert isinstance(exc.value, VerifyError)
    assert "\n" not in exc.value.render()


def test_file_shorter_than_disk_plus_footer_is_rejected() -> None:
    data = footer(SIZE, 0, UID)
    parse_footer(data, SIZE + 512)
    parse_footer(data, SIZE + 4096)  # longer is what Aero accepts
    with pytest.raises(VhdError, match="truncated"):
        parse_footer(data, SIZE + 511)
    with pytest.raises(VhdError, match="too short"):
        parse_footer(data[:100], 100)


@pytest.mark.parametrize("sectors,expected", [
    (131072, (963, 8, 17)),  # 64 MiB, the example in docs/windows7.md#vhd-footer
    (131104, (964, 8, 17)),  # the next exact size: what disk_size(…, 64) gives
    (69632, (140, 16, 31)),  # 17 sectors would need 1024 cylinders of 4 heads: 31 sectors, 16 heads
    (507904, (503, 16, 63)),  # 31 sectors would need 1024 cylinders of 16 heads: 63 sectors
    (65535 * 16 * 63, (16191, 16, 255)),  # from here on 255 sectors per track
    (65535 * 16 * 255, (65535, 16, 255)),  # the largest geometry
    (65535 * 16 * 255 * 2, (65535, 16, 255)),  # capped there
])
def test_chs_geometry_follows_the_spec_appendix(sectors: int, expected: tuple[int, int, int]) -> None:
    assert chs_geometry(sectors) == expected


def _brute_force_exact(size: int) -> int:
    sectors = -(-size // 512)
    while True:
        c, h, s = chs_geometry(sectors)
        if c * h * s == sectors:
            return sectors * 512
        sectors += 1


@pytest.mark.parametrize("payload", [0, 1, 5 * MIB, 40 * MIB, 47 * MIB + 1, 100 * MIB, 300 * MIB, 1000 * MIB,
                                     3000 * MIB, 20000 * MIB])
def test_auto_size_is_aero_rule_rounded_up_to_an_exact_chs_size(payload: int) -> None:
    size = disk_size(payload, None)
    c, h, s = chs_geometry(size // 512)
    assert c * h * s * 512 == size
    rule = max(64 * MIB, -(-int(payload * 1.2 + 8 * MIB) // MIB) * MIB)
    assert size >= rule
    if payload <= 1000 * MIB:  # the smallest exact size: no exact size lies between the rule and ours
        assert size == _brute_force_exact(rule)
    assert size - rule < h * s * 512 * 2


def test_explicit_size_rounds_up_and_is_checked() -> None:
    assert disk_size(0, 64) == SIZE
    assert disk_size(10 * MIB, 100) == chs_exact(100 * MIB) >= 100 * MIB
    for mib in range(34, 300, 7):
        size = disk_size(0, mib)
        c, h, s = chs_geometry(size // 512)
        assert c * h * s * 512 == size >= mib * MIB


@pytest.mark.parametrize("payload,size_mib,message", [
    (0, 20, "too small for FAT32"),
    (0, 33, "too small for FAT32"),
    (70 * MIB, 64, "cannot hold the 70.0 MiB payload"),
    (0, 0, "not a positive whole number"),
    (0, -5, "not a positive whole number"),
    (0, 10**9, "larger than a VHD's geometry"),
])
def test_explicit_size_refusals_name_the_field(payload: int, size_mib: int, message: str) -> None:
    with pytest.raises(UsageError, match=message) as exc:
        disk_size(payload, size_mib)
    text = exc.value.render()
    assert "outputs.fat_disk.size_mib" in text and "fix:" in text and "\n" not in text


def test_too_small_suggests_a_size_that_fits() -> None:
    with pytest.raises(UsageError) as exc:
        disk_size(70 * MIB, 64)
    need = int(exc.value.render().split("at least ")[-1].split(",")[0])
    assert disk_size(70 * MIB, need) >= 70 * MIB
    with pytest.raises(UsageError):
        disk_size(70 * MIB, need - 1)


def _qemu_size(qemu_img: str, path: Path) -> int:
    out = subprocess.run([qemu_img, "info", "-f", "vpc", "--output=json", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return int(json.loads(out)["virtual-size"])


@pytest.mark.parametrize("mib", [34, 64, 100, 368, 4000])
def test_qemu_img_reports_the_exact_size(tmp_path: Path, mib: int) -> None:
    qemu_img = need_tool("qemu-img")
    size = disk_size(0, mib)
    img = tmp_path / "d.vhd"
    with open(img, "wb") as fp:  # a sparse raw disk and our footer
        fp.truncate(size)
        fp.seek(size)
        fp.write(footer(size, 1700000000, UID))
    assert _qemu_size(qemu_img, img) == size


def test_qemu_would_truncate_a_size_that_is_not_chs_exact(tmp_path: Path) -> None:
    # Why disk_size rounds: qemu takes the CHS size for our creator tag, so 64 MiB exactly would shrink.
    qemu_img = need_tool("qemu-img")
    img = tmp_path / "d.vhd"
    with open(img, "wb") as fp:
        fp.truncate(64 * MIB)
        fp.seek(64 * MIB)
        fp.write(footer(64 * MIB, 0, UID))
    c, h, s = chs_geometry(64 * MIB // 512)
    assert _qemu_size(qemu_img, img) == c * h * s * 512 < 64 * MIB


def test_parse_accepts_a_footer_written_by_qemu(tmp_path: Path) -> None:
    qemu_img = need_tool("qemu-img")
    img = tmp_path / "q.vhd"
    subprocess.run([qemu_img, "create", "-q", "-f", "vpc", "-o", "subformat=fixed", str(img), "64M"], check=True)
    data = img.read_bytes()[-512:]
    f = parse_footer(data, img.stat().st_size)
    assert f.disk_type == vhd.DISK_FIXED and f.current_size == img.stat().st_size - 512
    assert f.current_size == f.cylinders * f.heads * f.sectors_per_track * 512
