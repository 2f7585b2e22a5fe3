"""The independent ISO reader used by verify agrees with pycdlib's writer and with external tools."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from aero_media.errors import VerifyError
from aero_media.media.files import MediaFile
from aero_media.media.isoscan import open_scan, read_file
from aero_media.media.isowriter import write_iso
from tests.lib.needs import need_tool

FILES = {
    "README.txt": b"readme",
    "win7/amd64/viostor/viostor.inf": b"[Version]\r\n" * 50,
    "win7/amd64/vioinput/WdfCoInstaller01009.dll": bytes(range(256)) * 40,
    "licenses/virtio-win/virtio-win_license.txt": b"",
    "deep/a/b/c/d/e/f/file.bin": b"x" * 5000,
}


def scan_all(path: Path) -> tuple[str, str | None, dict[str, bytes]]:
    fp, scan = open_scan(path)
    with fp:
        return scan.label, scan.joliet_label, {f.path: b"".join(read_file(fp, scan, f)) for f in scan.files}


def test_reads_back_what_the_writer_wrote(tmp_path: Path) -> None:
    iso = tmp_path / "m.iso"
    write_iso([MediaFile(p, data=d) for p, d in FILES.items()], iso, "VIRTIO_WIN_0_1_285_AERO", 0)
    label, joliet, files = scan_all(iso)
    assert label == "VIRTIO_WIN_0_1_285_AERO" and joliet == "VIRTIO_WIN_0_1_2"
    assert files == FILES


def test_reads_an_image_made_by_genisoimage(tmp_path: Path) -> None:
    tool = need_tool("genisoimage", "to make a reference image")
    src = tmp_path / "src"
    for p, d in FILES.items():
        (src / p).parent.mkdir(parents=True, exist_ok=True)
        (src / p).write_bytes(d)
    iso = tmp_path / "g.iso"
    argv = [tool] if tool.endswith("genisoimage") else [tool, "-as", "mkisofs"]
    subprocess.run([*argv, "-quiet", "-J", "-R", "-V", "EXT_LABEL", "-o", str(iso), str(src)], check=True,
                   capture_output=True)
    label, joliet, files = scan_all(iso)
    assert label == "EXT_LABEL" and joliet == "EXT_LABEL"
    assert files == FILES


def test_truncated_image_is_an_error_not_short_data(tmp_path: Path) -> None:
    iso = tmp_path / "m.iso"
    write_iso([MediaFile(p, data=d) for p, d in FILES.items()], iso, "L", 0)
    data = iso.read_bytes()
    fp, scan = open_scan(iso)
    fp.close()
    last = max(scan.files, key=lambda f: f.extent)
    iso.write_bytes(data[: last.extent * scan.block_size + 10])
    with pytest.raises(VerifyError, match="truncated"):
        scan_all(iso)


def test_garbage_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.iso"
    bad.write_bytes(hashlib.sha256(b"x").digest() * 3000)
    with pytest.raises(VerifyError, match="no ISO 9660 volume descriptor"):
        scan_all(bad)
