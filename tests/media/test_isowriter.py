"""The ISO writer: names, labels, clashes, reproducibility, and read-back by other readers."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pycdlib
import pytest

from aero_media.errors import SourceError, UsageError
from aero_media.media.epoch import source_date_epoch
from aero_media.media.files import FileRegion, MediaFile
from aero_media.media.isowriter import iso9660_name, write_iso
from aero_media.media.verify import read_iso
from tests.lib.needs import need_tool

FILES = [
    MediaFile("win7/amd64/vioinput/WdfCoInstaller01009.dll", data=b"dll" * 100),
    MediaFile("win7/amd64/viostor/viostor.inf", data=b"[Version]\r\n"),
    MediaFile("THIRD_PARTY_NOTICES.md", data=b"notices"),
    MediaFile("virtio-win_license.txt", data=b"x" * 5000),
    MediaFile("README.txt", data=b"readme"),
]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name,is_dir,expected", [
    ("viostor.inf", False, "VIOSTOR.INF;1"),
    ("WdfCoInstaller01009.dll", False, "WDFCOINSTALLER01009.DLL;1"),
    ("virtio-win_license.txt", False, "VIRTIO_WIN_LICENSE.TXT;1"),
    ("a.b.c", False, "A_B.C;1"),
    ("README", False, "README.;1"),
    ("amd64", True, "AMD64"),
    ("w8.1", True, "W8_1"),
])
def test_iso9660_name_mapping(name: str, is_dir: bool, expected: str) -> None:
    assert iso9660_name(name, is_dir) == expected


def test_written_iso_reads_back_with_exact_names_and_bytes(tmp_path: Path) -> None:
    out = tmp_path / "m.iso"
    write_iso(FILES, out, "AERO_VIRTIO", 0)
    content = read_iso(out)
    assert content.label == "AERO_VIRTIO" and content.joliet_label == "AERO_VIRTIO"
    assert content.joliet == {f.path: (hashlib.sha256(f.data or b"").hexdigest(), f.size) for f in FILES}
    assert content.rock_ridge == set(content.joliet)
    assert [p.name for p in tmp_path.iterdir()] == ["m.iso"]  # no temp file left behind


def test_long_label_full_in_pvd_cut_in_joliet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.iso"
    write_iso(FILES, out, "VIRTIO_WIN_0_1_285_AERO", 0)
    content = read_iso(out)
    assert content.label == "VIRTIO_WIN_0_1_285_AERO"
    assert content.joliet_label == "VIRTIO_WIN_0_1_2"
    # The message says exactly what Windows will show.
    assert "Windows shows the Joliet label, which holds 16: 'VIRTIO_WIN_0_1_2'" in capsys.readouterr().err


@pytest.mark.parametrize("label", ["", "X" * 33, "bad label", "ünï", "virtio-win-0.1.285", "aero_virtio"])
def test_bad_labels_rejected(tmp_path: Path, label: str) -> None:
    with pytest.raises(UsageError, match="volume label"):
        write_iso(FILES, tmp_path / "m.iso", label, 0)


def test_iso9660_clash_is_an_error_not_an_overwrite(tmp_path: Path) -> None:
    files = [MediaFile("d/a-b.inf", data=b"1"), MediaFile("d/a_b.inf", data=b"2")]
    with pytest.raises(SourceError) as exc:
        write_iso(files, tmp_path / "m.iso", "L", 0)
    assert "'d/a-b.inf' and 'd/a_b.inf' map to the same ISO 9660 name 'A_B.INF;1'" in exc.value.render()
    assert not (tmp_path / "m.iso").exists()
    assert list(tmp_path.iterdir()) == []


def test_overlong_joliet_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="longer than 64 characters"):
        write_iso([MediaFile("d/" + "n" * 70 + ".inf", data=b"1")], tmp_path / "m.iso", "L", 0)


def test_failed_write_keeps_previous_iso(tmp_path: Path) -> None:
    out = tmp_path / "m.iso"
    write_iso(FILES, out, "L", 0)
    before = sha(out)
    with pytest.raises(SourceError):
        write_iso([MediaFile("x/a-b", data=b"1"), MediaFile("x/a_b", data=b"2")], out, "L", 0)
    assert sha(out) == before


def test_same_inputs_same_bytes_and_epoch_matters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_iso(FILES, tmp_path / "a.iso", "L", 1700000000)
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    import time

    time.tzset()
    try:
        write_iso(list(reversed(FILES)), tmp_path / "b.iso", "L", 1700000000)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    write_iso(FILES, tmp_path / "c.iso", "L", 1700000001)
    assert sha(tmp_path / "a.iso") == sha(tmp_path / "b.iso")
    assert sha(tmp_path / "a.iso") != sha(tmp_path / "c.iso")


def test_clock_is_not_patched_outside_the_write(tmp_path: Path) -> None:
    import time

    write_iso(FILES, tmp_path / "a.iso", "L", 0)
    assert time.time() > 1e9 and pycdlib.pycdlib.time is time


def test_source_date_epoch_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert source_date_epoch() == 315532800
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234")
    assert source_date_epoch() == 1234
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH='yesterday'"):
        source_date_epoch()


# --- external readers (installed by .ci/run) -------------------------------------------


def _need(tool: str) -> str:
    return need_tool(tool, "an independent ISO reader")


@pytest.fixture
def iso(tmp_path: Path) -> Path:
    out = tmp_path / "m.iso"
    write_iso(FILES, out, "VIRTIO_WIN_0_1_285_AERO", 0)
    return out


def test_xorriso_sees_names_and_bytes(iso: Path, tmp_path: Path) -> None:
    xorriso = _need("xorriso")
    listing = subprocess.run([xorriso, "-indev", str(iso), "-find", "/", "-type", "f"], capture_output=True,
                             text=True, check=True).stdout
    names = sorted(line.strip("'") for line in listing.split())
    assert names == sorted("/" + f.path for f in FILES)
    out = tmp_path / "x"
    subprocess.run([xorriso, "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(out)], check=True,
                   capture_output=True)
    for f in FILES:
        assert (out / f.path).read_bytes() == f.data


def test_isoinfo_reads_labels_and_joliet_names(iso: Path) -> None:
    isoinfo = _need("isoinfo")
    info = subprocess.run([isoinfo, "-d", "-i", str(iso)], capture_output=True, text=True, check=True).stdout
    assert "Volume id: VIRTIO_WIN_0_1_285_AERO" in info
    joliet = subprocess.run([isoinfo, "-J", "-f", "-i", str(iso)], capture_output=True, text=True, check=True).stdout
    assert "/win7/amd64/vioinput/WdfCoInstaller01009.dll" in joliet.split()
    data = subprocess.run([isoinfo, "-J", "-x", "/virtio-win_license.txt", "-i", str(iso)], capture_output=True,
                          check=True).stdout
    assert data == b"x" * 5000


def test_bsdtar_extracts_same_bytes(iso: Path, tmp_path: Path) -> None:
    bsdtar = _need("bsdtar")
    out = tmp_path / "b"
    out.mkdir()
    subprocess.run([bsdtar, "-xf", str(iso), "-C", str(out)], check=True, capture_output=True)
    for f in FILES:
        assert (out / f.path).read_bytes() == f.data


# --- reproducible under threads; every date is the epoch -----------------------------------------


def test_parallel_threads_write_the_same_bytes_as_serial_writes(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(FILES, f"M{i}", 1_700_000_000 + i) for i in range(6)]
    serial = []
    for i, (files, label, epoch) in enumerate(jobs):
        write_iso(files, tmp_path / f"s{i}.iso", label, epoch)
        serial.append(sha(tmp_path / f"s{i}.iso"))
    for _round in range(3):
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda j: write_iso(j[1][0], tmp_path / f"p{j[0]}.iso", j[1][1], j[1][2]),
                          enumerate(jobs)))
        assert [sha(tmp_path / f"p{i}.iso") for i in range(len(jobs))] == serial


def test_every_date_on_the_medium_is_the_epoch(tmp_path: Path) -> None:
    from aero_media.media.isoscan import scan_path

    out = tmp_path / "m.iso"
    write_iso(FILES, out, "AERO_VIRTIO", 1_700_000_000)
    stamps = scan_path(out)
    kinds = {s.where.split(" record")[0].split(" of ")[0] for s in stamps}
    assert {"primary volume creation date", "Joliet volume modification date", "ISO 9660", "Joliet",
            "Rock Ridge TF"} <= kinds
    assert {s.when for s in stamps} == {1_700_000_000, None}
    assert [s.where for s in stamps if s.when is None] == ["primary volume expiration date",
                                                            "Joliet volume expiration date"]


def test_verify_rejects_a_date_that_is_not_the_epoch(tmp_path: Path) -> None:
    from aero_media.errors import VerifyError
    from aero_media.manifests import FileRecord
    from aero_media.media.verify import Expectation, verify_iso

    out = tmp_path / "m.iso"
    write_iso(FILES, out, "AERO_VIRTIO", 1_700_000_000)
    exp = Expectation(files={f.path: (FileRecord(f.path, hashlib.sha256(f.data or b"").hexdigest(), f.size), "t")
                             for f in FILES}, epoch=1_700_000_000)
    verify_iso(out, [], exp, self_described=False)
    # A wall clock leaking into one directory record (the year byte of one file's record).
    data = bytearray(out.read_bytes())
    name = b"README.TXT;1"
    at = data.index(name) - 33 + 18
    data[at] += 1
    out.write_bytes(bytes(data))
    with pytest.raises(VerifyError, match=r"1 date\(s\) differ from the build epoch 2023-11-14 22:13:20 UTC: "
                                          r"ISO 9660 record /:b'README.TXT;1' = 2024-11-14"):
        verify_iso(out, [], exp, self_described=False)


def test_files_from_one_source_share_one_extent(tmp_path: Path) -> None:
    src = tmp_path / "viostor.sys"
    src.write_bytes(b"S" * 10_000)
    files = [MediaFile("win7/amd64/viostor/viostor.sys", source=src),
             MediaFile("$WinPEDriver$/amd64/viostor/viostor.sys", source=src),
             MediaFile("other.bin", data=b"o" * 3000)]
    out = tmp_path / "m.iso"
    write_iso(files, out, "AERO_VIRTIO", 0)
    content = read_iso(out)
    twins = ("win7/amd64/viostor/viostor.sys", "$WinPEDriver$/amd64/viostor/viostor.sys")
    assert content.extents[twins[0]] == content.extents[twins[1]]
    assert content.joliet[twins[0]] == content.joliet[twins[1]]
    single = tmp_path / "single.iso"
    write_iso([files[0], files[2]], single, "AERO_VIRTIO", 0)
    # The second name costs directory records (three new folders, a sector each in both trees),
    # never another copy of the data.
    assert out.stat().st_size - single.stat().st_size == 3 * 2 * 2048
    listing = subprocess.run([need_tool("isoinfo"), "-l", "-R", "-i", str(out)], capture_output=True, text=True,
                             check=True).stdout
    assert listing.count("-r--r--r--   2") == 2  # Rock Ridge counts the two names of one file


def test_too_deep_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nested deeper than ISO 9660 allows \(8 levels\)"):
        write_iso([MediaFile("a/b/c/d/e/f/g/h/x.txt", data=b"x")], tmp_path / "m.iso", "X", 0)
    write_iso([MediaFile("a/b/c/d/e/f/g/x.txt", data=b"x")], tmp_path / "m.iso", "X", 0)


@pytest.mark.parametrize("grown", [-1, 1], ids=["shrank", "grew"])
def test_a_file_that_changes_size_is_an_error(tmp_path: Path, grown: int) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 100)

    class Changed(MediaFile):
        @property
        def size(self) -> int:
            return 100 - grown  # what was measured; the file now holds 100 bytes

    out = tmp_path / "out" / "a.iso"
    with pytest.raises(SourceError, match="changed size"):
        write_iso([Changed("a.bin", source=src)], out, "LABEL", 0)
    assert not out.exists()


def test_long_names_cut_alike_are_numbered_in_the_iso9660_tree_alone(tmp_path: Path) -> None:
    """Windows DVD folders under sources\\ whose first 31 characters agree get distinct ISO 9660 names, in path
    order (the bytes repeat); Joliet and Rock Ridge keep every name as it is."""
    base = "sources/replacementmanifests/microsoft-windows-terminalservices-"
    names = [f"{base}licenseserver/tslicensing-rm.man", f"{base}appserver-licensing/tslicensing-rm.man",
             "sources/dlmanifests/microsoft-windows-textservicesframework-migration-dl.man",
             "sources/dlmanifests/microsoft-windows-textservicesframework-migration-rm.man",
             "sources/license/_Default/Ultimate/license.rtf", "setup.exe", "bootmgr"]
    files = [MediaFile(n, data=n.encode()) for n in names]
    out = tmp_path / "dvd.iso"
    write_iso(files, out, "GRMCULFRER_EN_DVD", 0, udf=True)
    again = tmp_path / "again.iso"
    write_iso(list(reversed(files)), again, "GRMCULFRER_EN_DVD", 0, udf=True)
    assert out.read_bytes() == again.read_bytes()
    iso = pycdlib.PyCdlib()
    iso.open(str(out))
    try:
        iso_names = {rec.file_identifier().decode() for rec in
                     iso.list_children(iso_path="/SOURCES/REPLACEMENTMANIFESTS")} - {".", ".."}
        manifests = {rec.file_identifier().decode() for rec in iso.list_children(iso_path="/SOURCES/DLMANIFESTS")}
        for name in names:
            with iso.open_file_from_iso(joliet_path="/" + name) as fp:
                assert fp.read() == name.encode()
    finally:
        iso.close()
    assert len(iso_names) == 2 and all(len(n) <= 31 for n in iso_names)
    assert len({n for n in manifests if n.endswith(".MAN;1")}) == 2


def test_folders_without_files_are_carried(tmp_path: Path) -> None:
    out = tmp_path / "f.iso"
    write_iso([MediaFile("sources/setup.exe", data=b"x")], out, "F", 0, udf=True,
              folders=["upgrade/empty", "sources", "support/logging"])
    iso = pycdlib.PyCdlib()
    iso.open(str(out))
    try:
        for joliet, udf in (("/upgrade/empty", "/upgrade/empty"), ("/support/logging", "/support/logging")):
            assert iso.get_record(joliet_path=joliet).is_dir()
            assert iso.get_record(udf_path=udf).is_dir()
    finally:
        iso.close()


def test_file_bytes_move_in_the_kernel_and_are_hashed_as_read_back(tmp_path: Path, kernel_copies: list[int]) -> None:
    """Files on disk and regions of a larger file reach the image through copy_file_range (never a user-space
    buffer); the image's sha256 and each asked-for file's, hashed behind the writer, are those of the bytes."""
    moved = kernel_copies
    big = bytes(range(256)) * 9000  # 2.3 MB
    (tmp_path / "big.bin").write_bytes(big)
    (tmp_path / "whole.bin").write_bytes(big[:777])
    files = [MediaFile("sources/install.wim", source=tmp_path / "big.bin"),
             MediaFile("part.bin", region=FileRegion(tmp_path / "big.bin", ((4096, 1000), (10, 500)))),
             MediaFile("empty.txt", data=b""), MediaFile("note.txt", data=b"hello")]
    digests = {"sources/install.wim": "", "part.bin": "", "empty.txt": ""}
    out = tmp_path / "a.iso"
    digest = write_iso(files, out, "LABEL", 0, digests=digests)
    assert sum(moved) == len(big) + 1500
    assert digest == hashlib.sha256(out.read_bytes()).hexdigest()
    assert digests == {"sources/install.wim": hashlib.sha256(big).hexdigest(),
                       "part.bin": hashlib.sha256(big[4096:5096] + big[10:510]).hexdigest(),
                       "empty.txt": hashlib.sha256(b"").hexdigest()}
    seen = read_iso(out).joliet  # pycdlib reads the bytes back
    assert seen["part.bin"] == (hashlib.sha256(big[4096:5096] + big[10:510]).hexdigest(), 1500)


def test_the_hash_follower_closes_its_descriptor_once(tmp_path: Path) -> None:
    """finish() then close(): the second close must not close a descriptor opened since under the same number.

    doit's thread workers share one descriptor table, so a double close hit another task's file.
    """
    import os

    from aero_media import log
    from aero_media.media.isowriter import _Follower

    image = tmp_path / "image"
    image.write_bytes(b"x" * 4096)
    follower = _Follower(image, {}, log.Progress("hashing", 4096))
    follower.written(4096)
    follower.finish()
    other = os.open(tmp_path / "other", os.O_CREAT | os.O_WRONLY, 0o600)  # most likely the number just freed
    try:
        follower.close(stop=True)
        os.fstat(other)  # still open
    finally:
        os.close(other)
