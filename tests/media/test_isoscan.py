"""Reading media back: pycdlib hashes the files our writer stored, our scanner finds what pycdlib does not tell."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pycdlib
import pytest

from aero_media.errors import VerifyError
from aero_media.manifests import FileRecord
from aero_media.media.files import MediaFile
from aero_media.media.isoscan import scan_path
from aero_media.media.isowriter import write_iso
from aero_media.media.verify import Expectation, read_iso, verify_iso
from tests.lib.needs import need_tool

FILES = {
    "README.txt": b"readme",
    "win7/amd64/viostor/viostor.inf": b"[Version]\r\n" * 50,
    "win7/amd64/vioinput/WdfCoInstaller01009.dll": bytes(range(256)) * 40,
    "licenses/virtio-win/virtio-win_license.txt": b"",
    "deep/a/b/c/d/e/f/file.bin": b"x" * 5000,
}


def hashes(files: dict[str, bytes]) -> dict[str, tuple[str, int]]:
    return {p: (hashlib.sha256(d).hexdigest(), len(d)) for p, d in files.items()}


def written(tmp_path: Path, label: str = "VIRTIO_WIN_0_1_285_AERO") -> Path:
    iso = tmp_path / "m.iso"
    write_iso([MediaFile(p, data=d) for p, d in FILES.items()], iso, label, 0)
    return iso


def test_reads_back_what_the_writer_wrote(tmp_path: Path) -> None:
    content = read_iso(written(tmp_path))
    assert content.label == "VIRTIO_WIN_0_1_285_AERO" and content.joliet_label == "VIRTIO_WIN_0_1_2"
    assert content.joliet == hashes(FILES)
    assert content.rock_ridge == set(FILES)


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
    content = read_iso(iso)
    assert content.label == "EXT_LABEL" and content.joliet_label == "EXT_LABEL"
    assert content.joliet == hashes(FILES)


def test_a_corrupted_file_on_a_written_iso_is_caught(tmp_path: Path) -> None:
    iso = written(tmp_path, "AERO_VIRTIO")
    exp = Expectation(files={p: (FileRecord(p, *h), "the test") for p, h in hashes(FILES).items()})
    verify_iso(iso, [], exp, self_described=False)
    data = bytearray(iso.read_bytes())
    at = data.index(FILES["deep/a/b/c/d/e/f/file.bin"]) + 4321
    data[at] ^= 0x01  # one bit of file data; every directory record and date is untouched
    iso.write_bytes(bytes(data))
    assert read_iso(iso).joliet["deep/a/b/c/d/e/f/file.bin"] != hashes(FILES)["deep/a/b/c/d/e/f/file.bin"]
    with pytest.raises(VerifyError, match=r"deep/a/b/c/d/e/f/file\.bin: sha256 [0-9a-f]{64} size 5000 differs"):
        verify_iso(iso, [], exp, self_described=False)


def test_each_stored_copy_is_read_once_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "viostor.sys"
    src.write_bytes(b"S" * 3_000_000)
    iso = tmp_path / "m.iso"
    write_iso([MediaFile("win7/amd64/viostor/viostor.sys", source=src),
               MediaFile("$WinPEDriver$/amd64/viostor/viostor.sys", source=src),
               MediaFile("README.txt", data=b"readme")], iso, "AERO_VIRTIO", 0)
    opened: list[str] = []
    reads: list[int] = []
    real_open = pycdlib.PyCdlib.open_file_from_iso

    def spy(self: pycdlib.PyCdlib, **kwargs: str):  # type: ignore[no-untyped-def]
        opened.extend(kwargs.values())
        io = real_open(self, **kwargs)
        real_read = io.read

        def read(size: int = -1) -> bytes:
            chunk = real_read(size)
            reads.append(len(chunk))
            return chunk

        io.read = read
        return io

    monkeypatch.setattr(pycdlib.PyCdlib, "open_file_from_iso", spy)
    content = read_iso(iso)
    assert len(content.joliet) == 3 and len(opened) == 2  # the two names of viostor.sys share one read
    assert max(reads) <= 1024 * 1024 and sum(reads) == 3_000_000 + len(b"readme")


def test_truncated_image_is_an_error_not_short_files(tmp_path: Path) -> None:
    iso = written(tmp_path)
    data = iso.read_bytes()
    iso.write_bytes(data[: data.index(FILES["deep/a/b/c/d/e/f/file.bin"]) + 10])
    with pytest.raises(VerifyError, match=r"ends \d+ bytes early: the image is truncated"):
        read_iso(iso)


def test_garbage_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.iso"
    bad.write_bytes(hashlib.sha256(b"x").digest() * 3000)
    with pytest.raises(VerifyError, match="no ISO 9660 volume descriptor"):
        read_iso(bad)
    with pytest.raises(VerifyError, match="no ISO 9660 volume descriptor"):
        scan_path(bad)
