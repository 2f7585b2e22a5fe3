"""The ISO writer's UDF 1.02 bridge, read back by readers we did not write: udfinfo, 7z, pycdlib, the kernel."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pycdlib
import pytest

from aero_media.errors import SourceError
from aero_media.media import udf as udfmod
from aero_media.media.eltorito import BootImage
from aero_media.media.files import FileRegion, MediaFile
from aero_media.media.isowriter import write_iso
from aero_media.media.verify import read_iso
from tests.lib.needs import need_tool
from tests.lib.udfread import udf_files

EPOCH = 1_700_000_000
LABEL = "GRMCULFRER_EN_DV"


def _files(tmp_path: Path) -> list[MediaFile]:
    """A Windows-DVD-like tree: nested folders, non-Latin names, an empty file, two names of one source,
    and a file that is a region (two extents, out of order) of a larger file."""
    shared = tmp_path / "viostor.sys"
    shared.write_bytes(b"S" * 10_000)
    big = tmp_path / "container.bin"
    big.write_bytes(bytes(range(256)) * 64)
    return [
        MediaFile("setup.exe", data=b"MZ" * 1000),
        MediaFile("sources/install.wim", data=b"W" * 70_000),
        MediaFile("sources/boot.wim", data=b"B" * 5_000),
        MediaFile("boot/etfsboot.com", data=b"T" * 2_048),
        MediaFile("efi/microsoft/boot/efisys.bin", data=b"E" * 8_192),
        MediaFile("sources/Ünïcödé.txt", data=b"latin-1 name"),
        MediaFile("sources/☃ snow.txt", data=b"16-bit name"),
        MediaFile("empty.txt", data=b""),
        MediaFile("win7/amd64/viostor/viostor.sys", source=shared),
        MediaFile("$WinPEDriver$/amd64/viostor/viostor.sys", source=shared),
        MediaFile("sources/region.bin", region=FileRegion(big, ((8_000, 3_000), (100, 50)))),
    ]


def _bytes(f: MediaFile) -> bytes:
    with f.open() as fp:
        return fp.read()


def _boot(files: Sequence[MediaFile]) -> list[BootImage]:
    by = {f.path: f for f in files}
    return [BootImage(0x00, 0, 0x07C0, 0, 8, by["boot/etfsboot.com"]),
            BootImage(0xEF, 0, 0, 0, 16, by["efi/microsoft/boot/efisys.bin"])]


def _write(files: Sequence[MediaFile], out: Path, **kw: object) -> Path:
    write_iso(files, out, LABEL, EPOCH, udf=True, **kw)  # type: ignore[arg-type]
    return out


@pytest.fixture
def files(tmp_path: Path) -> list[MediaFile]:
    return _files(tmp_path)


@pytest.fixture
def iso(tmp_path: Path, files: list[MediaFile]) -> Path:
    return _write(files, tmp_path / "udf.iso", boot=_boot(files))


# --- udfinfo (udftools) ---------------------------------------------------------------------------


def test_udfinfo_reads_a_closed_udf_102_volume(iso: Path, files: list[MediaFile]) -> None:
    udfinfo = need_tool("udfinfo", "an independent UDF reader")
    info = subprocess.run([udfinfo, str(iso)], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split("=", 1) for line in info.splitlines() if "=" in line and not line.startswith("start="))
    sectors = iso.stat().st_size // 2048
    assert fields["udfrev"] == "1.02" and fields["udfwriterev"] == "1.02"
    assert fields["integrity"] == "closed" and fields["accesstype"] == "readonly"
    assert fields["label"] == LABEL and fields["lvid"] == LABEL
    assert fields["blocks"] == str(sectors)
    assert fields["numfiles"] == str(len(files))
    dirs = {"/".join(f.path.split("/")[:i]) for f in files for i in range(1, f.path.count("/") + 1)}
    assert fields["numdirs"] == str(len(dirs) + 1)  # and the root
    layout = re.findall(r"start=(\d+), blocks=(\d+), type=(\w+)", info)
    anchors = [int(start) for start, _n, kind in layout if kind == "ANCHOR"]
    assert anchors == [256, sectors - 1]
    assert {kind for _s, _n, kind in layout} >= {"VRS", "MVDS", "RVDS", "LVID", "PSPACE"}


# --- 7z (prefers UDF) ------------------------------------------------------------------------------


def test_7z_opens_it_as_udf_and_extracts_the_same_bytes(iso: Path, files: list[MediaFile], tmp_path: Path) -> None:
    sevenzip = need_tool("7z", "an independent UDF reader")
    listing = subprocess.run([sevenzip, "l", "-slt", str(iso)], capture_output=True, text=True, check=True).stdout
    assert "Type = Udf" in listing.splitlines()
    out = tmp_path / "x"
    subprocess.run([sevenzip, "x", "-y", f"-o{out}", str(iso)], capture_output=True, check=True)
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == {f.path: _bytes(f) for f in files}


# --- pycdlib's UDF reader ---------------------------------------------------------------------------


def test_pycdlib_walks_the_udf_tree_with_names_as_staged(iso: Path, files: list[MediaFile]) -> None:
    assert udf_files(iso) == {f.path: _bytes(f) for f in files}


def test_every_tree_points_at_one_extent_per_file(iso: Path, files: list[MediaFile]) -> None:
    """ISO 9660, Joliet and UDF name the same bytes: one extent, shared by all trees (and by two names of
    one source)."""
    content = read_iso(iso)
    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        start = reader.udf_main_descs.partitions[0].part_start_location
        for f in files:
            if not f.size:
                continue
            entry = reader.get_record(udf_path="/" + f.path)
            assert entry.desc_tag.desc_version == udfmod.TAG_VERSION
            assert start + entry.alloc_descs[0].log_block_num == content.extents[f.path]
            joliet = reader.get_record(joliet_path="/" + f.path)
            assert joliet.extent_location() == content.extents[f.path]
    finally:
        reader.close()
    twins = ("win7/amd64/viostor/viostor.sys", "$WinPEDriver$/amd64/viostor/viostor.sys")
    assert content.extents[twins[0]] == content.extents[twins[1]]


def test_every_udf_date_is_the_epoch(iso: Path) -> None:
    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        stamps = [reader.udf_main_descs.pvds[0].recording_date, reader.udf_logical_volume_integrity.recording_date,
                  reader.udf_file_set.recording_date]
        for root, _dirs, names in reader.walk(udf_path="/"):
            for path in [root, *(f"{root.rstrip('/')}/{n}" for n in names)]:
                entry = reader.get_record(udf_path=path)
                stamps += [entry.access_time, entry.mod_time, entry.attr_time]
    finally:
        reader.close()
    expected = datetime.fromtimestamp(EPOCH, UTC)
    for s in stamps:
        assert (s.tz, s.year, s.month, s.day, s.hour, s.minute, s.second) == (
            0, expected.year, expected.month, expected.day, expected.hour, expected.minute, expected.second)


# --- the kernel's UDF driver -------------------------------------------------------------------------


def test_the_kernel_udf_driver_mounts_it(iso: Path, files: list[MediaFile], tmp_path: Path) -> None:
    filesystems = Path("/proc/filesystems")
    if "udf" not in (filesystems.read_text() if filesystems.exists() else ""):
        pytest.skip("the running kernel has no UDF driver loaded (no 'udf' in /proc/filesystems); "
                    "mounting needs it (modprobe udf, as root)")
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root (CAP_SYS_ADMIN)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-o", "loop,ro", "-t", "udf", str(iso), str(mnt)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"this machine may not mount a loop device here: {done.stderr.strip()}")
    try:
        got = {p.relative_to(mnt).as_posix(): p.read_bytes() for p in mnt.rglob("*") if p.is_file()}
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert got == {f.path: _bytes(f) for f in files}


# --- the ISO side, the defaults, reproducibility -------------------------------------------------------


def test_the_iso_9660_and_joliet_trees_are_the_same_with_or_without_udf(iso: Path, files: list[MediaFile],
                                                                         tmp_path: Path) -> None:
    plain = tmp_path / "plain.iso"
    write_iso(files, plain, LABEL, EPOCH)
    with_udf, without = read_iso(iso), read_iso(plain)
    assert with_udf.joliet == without.joliet and with_udf.rock_ridge == without.rock_ridge
    assert b"NSR02" not in plain.read_bytes()[16 * 2048:32 * 2048]


def test_default_bytes_are_those_of_the_writer_before_udf(tmp_path: Path) -> None:
    """Existing callers get the image they always got (sha256 of this input written before the UDF bridge)."""
    files = [MediaFile("win7/amd64/vioinput/WdfCoInstaller01009.dll", data=b"dll" * 100),
             MediaFile("win7/amd64/viostor/viostor.inf", data=b"[Version]\r\n"),
             MediaFile("THIRD_PARTY_NOTICES.md", data=b"notices"),
             MediaFile("virtio-win_license.txt", data=b"x" * 5000),
             MediaFile("README.txt", data=b"readme"),
             MediaFile("empty.txt", data=b"")]
    write_iso(files, tmp_path / "a.iso", "AERO_VIRTIO", EPOCH)
    assert hashlib.sha256((tmp_path / "a.iso").read_bytes()).hexdigest() == (
        "d9276f5bfbc92881c0b70ce2a04a8a3ae7b78f90b9d7754e9b9e432010228105")


def test_same_inputs_same_bytes_in_any_order(iso: Path, files: list[MediaFile], tmp_path: Path) -> None:
    again = _write(files, tmp_path / "again.iso", boot=_boot(files))
    shuffled = _write(list(reversed(files)), tmp_path / "shuffled.iso", boot=_boot(files))
    later = tmp_path / "later.iso"
    write_iso(files, later, LABEL, EPOCH + 1, udf=True, boot=_boot(files))
    digest = hashlib.sha256(iso.read_bytes()).hexdigest()
    assert hashlib.sha256(again.read_bytes()).hexdigest() == digest
    assert hashlib.sha256(shuffled.read_bytes()).hexdigest() == digest
    assert hashlib.sha256(later.read_bytes()).hexdigest() != digest


# --- hostile-ish trees ---------------------------------------------------------------------------------


def test_deep_long_and_crowded_trees_read_back(tmp_path: Path) -> None:
    deep = "/".join(f"level{i}" for i in range(7))  # the root and seven levels: as deep as ISO 9660 allows
    crowded = [MediaFile(f"crowded/{i:04d}-file-with-a-fairly-long-name.inf", data=str(i).encode())
               for i in range(2000)]  # folders past sector 256: they step over the anchor
    files = [MediaFile(f"{deep}/x.txt", data=b"deep"),
             MediaFile("long/" + "n" * 60 + ".txt", data=b"64 characters, the Joliet limit"),
             MediaFile("long/" + "ж" * 50 + ".txt", data=b"a name in 16-bit compressed unicode"),
             *crowded]
    iso = _write(files, tmp_path / "hostile.iso")
    expected = {f.path: _bytes(f) for f in files}
    assert udf_files(iso) == expected
    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        folder = reader.get_record(udf_path="/crowded")
        assert folder.info_len > 8 * 2048  # its identifiers span several sectors, some across a boundary
        assert reader.udf_main_descs.partitions[0].part_start_location > 300  # the ISO metadata crossed 256
    finally:
        reader.close()
    out = tmp_path / "x"
    subprocess.run([need_tool("7z", "an independent UDF reader"), "x", "-y", f"-o{out}", str(iso)],
                   capture_output=True, check=True)
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == expected
    info = subprocess.run([need_tool("udfinfo", "an independent UDF reader"), str(iso)], capture_output=True,
                          text=True, check=True).stdout
    assert f"numfiles={len(files)}" in info.splitlines()


def test_a_file_spans_several_allocation_descriptors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file larger than one allocation descriptor holds is described by several over its one extent
    (the limit made small here so the test stays small; the next test uses the real one)."""
    monkeypatch.setattr(udfmod, "MAX_AD", 4096)
    data = bytes(range(256)) * 40  # 10240 bytes: 4096 + 4096 + 2048
    files = [MediaFile("big.bin", data=data), MediaFile("small.bin", data=b"s")]
    iso = _write(files, tmp_path / "ads.iso")
    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        entry = reader.get_record(udf_path="/big.bin")
        ads = [(ad.extent_length, ad.log_block_num) for ad in entry.alloc_descs]
    finally:
        reader.close()
    assert ads == [(4096, ads[0][1]), (4096, ads[0][1] + 2), (2048, ads[0][1] + 4)]
    out = tmp_path / "x"
    subprocess.run([need_tool("7z", "an independent UDF reader"), "x", "-y", f"-o{out}", str(iso)],
                   capture_output=True, check=True)
    assert (out / "big.bin").read_bytes() == data


def test_a_file_over_1_gib_takes_two_descriptors(tmp_path: Path) -> None:
    src = tmp_path / "sparse.wim"
    with open(src, "wb") as fp:  # sparse: only the marker at the end takes disk space
        fp.truncate(udfmod.MAX_AD)
        fp.seek(udfmod.MAX_AD)
        fp.write(b"the end of a file over 1 GiB")
    iso = _write([MediaFile("sources/install.wim", source=src)], tmp_path / "big.iso")
    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        entry = reader.get_record(udf_path="/sources/install.wim")
        assert [ad.extent_length for ad in entry.alloc_descs] == [udfmod.MAX_AD, 28]
        assert entry.alloc_descs[1].log_block_num == entry.alloc_descs[0].log_block_num + udfmod.MAX_AD // 2048
        with reader.open_file_from_iso(udf_path="/sources/install.wim") as fp:
            fp.seek(udfmod.MAX_AD - 4)
            assert fp.read() == b"\0" * 4 + b"the end of a file over 1 GiB"
    finally:
        reader.close()
    iso.unlink()


def test_a_file_of_4_gib_is_refused_with_the_reason(tmp_path: Path) -> None:
    src = tmp_path / "huge.wim"
    with open(src, "wb") as fp:
        fp.truncate(4 * 1024**3)
    out = tmp_path / "huge.iso"
    with pytest.raises(SourceError, match=r"4294967296 bytes; ISO 9660 files hold at most 4294967295"):
        write_iso([MediaFile("sources/install.wim", source=src)], out, LABEL, EPOCH, udf=True)
    assert not out.exists()
