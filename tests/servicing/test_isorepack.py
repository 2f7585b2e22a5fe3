"""Rebuilding the install ISO: boot entries kept, files replaced once, UDF read and kept, and it boots.

Oracles: our own El Torito reader on input and output; pycdlib, 7z, udfinfo and
xorriso reading the output; and QEMU's BIOS booting the rebuilt ISO, whose boot
image prints a marker on the serial port. Inputs come from xorriso, pycdlib and
genisoimage, never from our own writer.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import time
from pathlib import Path

import pycdlib
import pytest

from aero_media.errors import SourceError, UsageError
from aero_media.servicing import isorepack
from aero_media.sources.isoread import IsoTree
from tests.lib import win7image
from tests.lib.needs import need_tool
from tests.lib.udfread import udf_files


def joliet_file(iso: Path, path: str) -> bytes:
    import pycdlib

    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        out = io.BytesIO()
        reader.get_file_from_iso_fp(out, joliet_path=path)
        return out.getvalue()
    finally:
        reader.close()


def joliet_names(iso: Path, folder: str) -> list[str]:
    import pycdlib

    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        return sorted(c.file_identifier().decode("utf-16-be") for c in reader.list_children(joliet_path=folder)
                      if not c.is_dot() and not c.is_dotdot())
    finally:
        reader.close()


def test_the_reader_finds_both_boot_entries_and_hashes_what_firmware_loads(media_iso: Path,
                                                                           media_tree: win7image.Media) -> None:
    report = isorepack.read_report(media_iso)
    assert report.volume_id == win7image.LABEL
    assert report.filesystems == isorepack.FileSystems(iso9660=True, joliet=True, rock_ridge=False, udf=None)
    bios, uefi = report.boot_entries
    assert (bios.platform, bios.bootable, bios.emulation, bios.sector_count) == ("BIOS", True, "none", 8)
    assert bios.image_sha256 == hashlib.sha256(win7image.boot_sector()).hexdigest()
    efisys = (media_tree.root / "efi/microsoft/boot/efisys.bin").read_bytes()
    assert (uefi.platform, uefi.sector_count, uefi.image_bytes) == ("UEFI", len(efisys) // 512, len(efisys))
    assert uefi.image_sha256 == hashlib.sha256(efisys).hexdigest()


def test_a_damaged_catalog_is_refused(media_iso: Path, tmp_path: Path) -> None:
    bios = isorepack.read_report(media_iso)
    assert bios.boot_entries
    damaged = tmp_path / "damaged.iso"
    shutil.copyfile(media_iso, damaged)
    with open(media_iso, "rb") as fp:
        fp.seek(17 * 2048 + 0x47)
        catalog = int.from_bytes(fp.read(4), "little")
    with open(damaged, "r+b") as fp:
        fp.seek(catalog * 2048 + 4)
        fp.write(b"X")  # inside the validation entry's ID string: the checksum no longer adds up
    with pytest.raises(SourceError, match="checksum is wrong"):
        isorepack.read_report(damaged)


def test_repack_replaces_and_adds_files_and_keeps_the_boot_entries(media_iso: Path, tmp_path: Path) -> None:
    new_wim = tmp_path / "boot.wim"
    new_wim.write_bytes(b"serviced boot.wim stand-in")
    drivers = tmp_path / "drivers"
    (drivers / "viostor").mkdir(parents=True)
    (drivers / "viostor" / "viostor.inf").write_bytes(b"[Version]\r\n")
    out = tmp_path / "out" / "serviced.iso"
    result = isorepack.repack(media_iso, out, {"SOURCES/Boot.WIM": new_wim, "$WinPEDriver$": drivers},
                              epoch=win7image.FIXED_EPOCH, require=["sources/boot.wim", "sources/install.wim"])
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == ["serviced.iso"]
    assert result.dropped == () and result.reader == "joliet"
    assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert len(result.after.boot_entries) == 2
    assert all(a.same_boot(b) for a, b in zip(result.before.boot_entries, result.after.boot_entries, strict=True))
    again = isorepack.read_report(out)  # read afresh: the same as what repack checked
    assert again == result.after and again.volume_id == win7image.LABEL
    assert again.filesystems.names() == ("ISO 9660", "Joliet", "Rock Ridge", "UDF")
    assert joliet_names(out, "/sources") == ["boot.wim", "install.wim"]  # replaced in place, not added beside
    assert joliet_file(out, "/sources/boot.wim") == b"serviced boot.wim stand-in"
    assert joliet_file(out, "/$WinPEDriver$/viostor/viostor.inf") == b"[Version]\r\n"
    assert joliet_file(out, "/sources/install.wim") == joliet_file(media_iso, "/sources/install.wim")


def test_the_boot_image_size_rule() -> None:
    entry = isorepack.BootEntry("UEFI", True, "none", 0, 0, 1, 20, 512, "")
    fat = bytearray(512)
    fat[0], fat[510:512] = 0xEB, b"\x55\xaa"
    fat[0x0B:0x0D], fat[0x13:0x15] = (512).to_bytes(2, "little"), (2880).to_bytes(2, "little")
    assert isorepack.boot_image_bytes(entry, 4096, bytes(fat)) == 4096  # a file at that sector wins
    assert isorepack.boot_image_bytes(entry, None, bytes(fat)) == 1474560  # then the FAT BPB
    assert isorepack.boot_image_bytes(entry, None, bytes(512)) == 512  # then what the firmware loads
    bios = isorepack.BootEntry("BIOS", True, "none", 0, 0, 8, 20, 4096, "")
    assert isorepack.boot_image_bytes(bios, None, bytes(fat)) == 4096  # the BPB rule is for UEFI images
    assert isorepack.boot_image_bytes(bios, 2048, b"") == 4096  # never less than the firmware loads


@pytest.fixture(scope="module")
def stub_dvd(media_tree: win7image.Media, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A UDF-only DVD of Microsoft's shape (pycdlib): the ISO 9660 side holds README.TXT only."""
    pytest.importorskip("pycdlib")
    need_tool("mkfs.fat", "to make the EFI boot floppy image")
    folder = tmp_path_factory.mktemp("stub")
    efisys = win7image.efi_floppy(folder / "efisys.bin")
    return win7image.make_udf_stub_iso(media_tree.root, folder / "stub.iso", efisys), efisys


def _sevenzip(iso: Path, out: Path) -> dict[str, bytes]:
    sevenzip = need_tool("7z", "an independent UDF reader")
    listing = subprocess.run([sevenzip, "l", "-slt", str(iso)], capture_output=True, text=True, check=True).stdout
    assert "Type = Udf" in listing.splitlines()
    subprocess.run([sevenzip, "x", "-y", f"-o{out}", str(iso)], capture_output=True, check=True)
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def _xorriso_files(iso: Path) -> set[str]:
    xorriso = need_tool("xorriso", "an independent ISO 9660 reader")
    out = subprocess.run([xorriso, "-indev", str(iso), "-find", "/", "-type", "f"], capture_output=True, text=True,
                         check=True).stdout
    return {line.strip().strip("'").lstrip("/") for line in out.splitlines() if line.startswith("'")}


def test_a_udf_only_dvd_is_rebuilt_with_every_file_and_its_boot_images(stub_dvd: tuple[Path, bytes],
                                                                       media_tree: win7image.Media,
                                                                       tmp_path: Path) -> None:
    stub, efisys = stub_dvd
    with IsoTree.open_path(stub, reader="joliet") as tree:  # the stub side, as a UDF-blind reader sees it
        assert [e.path for e in tree.entries()] == ["README.TXT"]
    new_wim = tmp_path / "boot.wim"
    new_wim.write_bytes(b"serviced")
    out = tmp_path / "serviced.iso"
    result = isorepack.repack(stub, out, {"sources/boot.wim": new_wim}, epoch=win7image.FIXED_EPOCH,
                              require=["setup.exe", "sources/boot.wim", "sources/install.wim"])
    assert result.reader == "udf" and result.dropped == ()
    assert result.before.filesystems.udf is not None and result.after.filesystems.udf == "UDF 1.02"
    expected = {p.relative_to(media_tree.root).as_posix(): p.read_bytes()
                for p in media_tree.root.rglob("*") if p.is_file()}
    expected["sources/boot.wim"] = b"serviced"
    # Three UDF readers we did not write, and xorriso for the ISO 9660 side (Rock Ridge names): one tree.
    assert udf_files(out) == expected
    assert _sevenzip(out, tmp_path / "x") == expected
    assert _xorriso_files(out) == set(expected)
    udfinfo = need_tool("udfinfo", "an independent UDF reader")
    info = subprocess.run([udfinfo, str(out)], capture_output=True, text=True, check=True).stdout.splitlines()
    assert "udfrev=1.02" in info and f"numfiles={len(expected)}" in info
    bios, uefi = result.after.boot_entries
    assert (bios.platform, bios.sector_count, uefi.platform, uefi.sector_count) == ("BIOS", 8, "UEFI", 1)
    with open(out, "rb") as fp:  # the whole FAT image went along, not just the sector the catalog loads
        fp.seek(uefi.load_rba * 2048)
        assert fp.read(len(efisys)) == efisys


def test_the_rebuild_is_byte_reproducible(stub_dvd: tuple[Path, bytes], tmp_path: Path) -> None:
    stub, _ = stub_dvd
    wim = tmp_path / "boot.wim"
    wim.write_bytes(b"serviced")
    first = isorepack.repack(stub, tmp_path / "a" / "one.iso", {"sources/boot.wim": wim}, epoch=0)
    second = isorepack.repack(stub, tmp_path / "b" / "one.iso", {"sources/boot.wim": wim}, epoch=0)
    assert first.sha256 == second.sha256
    assert (tmp_path / "a" / "one.iso").read_bytes() == (tmp_path / "b" / "one.iso").read_bytes()


def test_a_pycdlib_udf_260_dvd_and_a_genisoimage_udf_102_dvd_keep_udf(media_tree: win7image.Media,
                                                                     tmp_path: Path) -> None:
    pytest.importorskip("pycdlib")
    need_tool("genisoimage", "a UDF 1.02 writer that is not ours")
    files = {"boot/etfsboot.com": win7image.boot_sector(), "efi/microsoft/boot/efisys.bin": b"E" * 4096,
             "sources/boot.wim": b"wim", "setup.exe": b"MZ"}
    udf = win7image.make_udf_iso(files, tmp_path / "udf.iso")
    result = isorepack.repack(udf, tmp_path / "out.iso", {}, epoch=0, require=["sources/boot.wim"])
    assert result.reader == "udf" and result.dropped == () and result.after.filesystems.udf == "UDF 1.02"
    assert all(a.same_boot(b) for a, b in zip(result.before.boot_entries, result.after.boot_entries, strict=True))
    assert udf_files(tmp_path / "out.iso") == files  # and no stale copy of the input's boot.cat
    with pytest.raises(SourceError, match=r"lacks sources/install\.wim"):
        isorepack.repack(udf, tmp_path / "x.iso", {}, epoch=0, require=["sources/install.wim"])
    assert not (tmp_path / "x.iso").exists()
    gen = win7image.make_genisoimage_udf_iso(media_tree.root, tmp_path / "gen.iso")
    assert isorepack.read_report(gen).filesystems.udf is not None
    result = isorepack.repack(gen, tmp_path / "gen-out.iso", {}, epoch=0, require=["sources/install.wim"])
    assert result.reader == "udf" and len(result.after.boot_entries) == 1
    got = udf_files(tmp_path / "gen-out.iso")
    assert got["sources/install.wim"] == media_tree.install_wim.read_bytes()


def test_files_of_4_gib_are_refused_before_writing(media_iso: Path, tmp_path: Path) -> None:
    big = tmp_path / "install.wim"
    with open(big, "wb") as fp:
        fp.truncate(isorepack.MAX_FILE)  # sparse: costs no disk
    out = tmp_path / "out.iso"
    with pytest.raises(SourceError) as info:
        isorepack.repack(media_iso, out, {"sources/install.wim": big}, epoch=0)
    assert "/sources/install.wim (4294967296 bytes)" in info.value.render()
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["install.wim"]
    with pytest.raises(UsageError, match="no such file"):
        isorepack.repack(media_iso, out, {"sources/x": tmp_path / "absent"}, epoch=0)
    with pytest.raises(UsageError, match="not a path inside the image"):
        isorepack.repack(media_iso, out, {"../x": big}, epoch=0)
    with pytest.raises(UsageError, match="cannot replace the folder"):
        isorepack.repack(media_iso, out, {"sources": tmp_path / "install.wim"}, epoch=0)


def _boot_marker(iso: Path, log: Path, seconds: float) -> bytes:
    """Boot ``iso`` from CD in QEMU (BIOS) for at most ``seconds``; return what reached the serial port."""
    qemu = need_tool("qemu-system-x86_64", "to boot the rebuilt ISO")
    cmd = [qemu, "-display", "none", "-serial", f"file:{log}", "-monitor", "none", "-no-reboot", "-m", "32",
           "-net", "none", "-boot", "d", "-cdrom", str(iso)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and win7image.BOOT_MARKER in log.read_bytes():
                break
            time.sleep(0.05)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return log.read_bytes() if log.exists() else b""


def test_qemu_boots_the_rebuilt_iso(media_iso: Path, tmp_path: Path) -> None:
    new_wim = tmp_path / "boot.wim"
    new_wim.write_bytes(b"serviced")
    out = isorepack.repack(media_iso, tmp_path / "serviced.iso", {"sources/boot.wim": new_wim}, epoch=0).after
    assert out.boot_entries
    seconds = float(os.environ.get("AERO_QEMU_BOOT_SECONDS", "20"))
    serial = _boot_marker(tmp_path / "serviced.iso", tmp_path / "serial.log", seconds)
    assert win7image.BOOT_MARKER + b"\r\n" in serial


def test_folders_without_files_are_carried(media_tree: win7image.Media, tmp_path: Path) -> None:
    """A DVD's empty folder (upgrade\\ on some Windows media) is in the rebuilt ISO's UDF and Joliet trees too."""
    need_tool("xorriso")
    tree = tmp_path / "dvd"
    shutil.copytree(media_tree.root, tree)
    (tree / "upgrade" / "netfx").mkdir(parents=True)
    src = win7image.make_iso(tree, tmp_path / "in.iso")
    out = tmp_path / "out.iso"
    isorepack.repack(src, out, {}, epoch=0, require=["sources/boot.wim"])
    iso = pycdlib.PyCdlib()
    iso.open(str(out))
    try:
        assert iso.get_record(udf_path="/upgrade/netfx").is_dir()
        assert iso.get_record(joliet_path="/upgrade/netfx").is_dir()
    finally:
        iso.close()
