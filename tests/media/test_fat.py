"""The FAT32 driver disk: round trip through our reader, fsck.fat and mtools; names; reproducibility; hostile images."""

from __future__ import annotations

import hashlib
import os
import random
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aero_media.errors import PipelineError, SourceError, UsageError
from aero_media.media import vhd
from aero_media.media.fatread import FatContent, FatError, read_fat_disk, stamp_matches
from aero_media.media.fatwriter import FatDiskInfo, lfn_checksum, short_names, write_fat_disk
from aero_media.media.files import MediaFile
from aero_media.media.vhd import VhdError
from tests.lib import fatimg
from tests.lib.fatimg import EPOCH, LABEL, sample_files
from tests.lib.needs import need_tool

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
FILES = sample_files()
EXPECTED = {f.path: (hashlib.sha256(f.data or b"").hexdigest(), f.size) for f in FILES}
DIRS = {"/".join(f.path.split("/")[:i]) for f in FILES for i in range(1, f.path.count("/") + 1)}


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FatDiskInfo]:
    out = tmp_path_factory.mktemp("fat") / "aero-drivers-fat.vhd"
    return out, write_fat_disk(FILES, out, LABEL, EPOCH)


@pytest.fixture(scope="module")
def content(disk: tuple[Path, FatDiskInfo]) -> FatContent:
    return read_fat_disk(disk[0])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the round trip ----------------------------------------------------------------------------


def test_reader_sees_every_file_with_its_long_name_and_bytes(disk: tuple[Path, FatDiskInfo],
                                                            content: FatContent) -> None:
    out, _ = disk
    assert content.files == EXPECTED
    assert set(content.dirs) == DIRS
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left behind


def test_file_system_facts(disk: tuple[Path, FatDiskInfo], content: FatContent) -> None:
    out, info = disk
    assert out.stat().st_size == info.size + 512 == content.footer.current_size + 512
    assert info.size == vhd.disk_size(sum(f.size for f in FILES), None) == vhd.chs_exact(64 * MIB)
    assert content.footer.unique_id == info.unique_id
    assert content.oem_name == "MSWIN4.1" and content.fs_type == "FAT32"
    assert content.label == content.root_label == LABEL
    assert content.serial == info.serial and content.disk_signature == info.disk_signature
    assert content.cluster_size == info.cluster_size == 512
    assert content.clusters == info.clusters >= 65525
    assert content.free_clusters == content.fsinfo_free == info.free_clusters
    used = content.clusters - content.free_clusters
    assert content.fsinfo_next_free == 2 + used  # contiguous allocation from cluster 2
    assert content.backup_boot_matches and content.fats_match and content.num_fats == 2


def test_mbr_has_one_fat32_lba_partition_from_1mib_to_the_end(disk: tuple[Path, FatDiskInfo],
                                                              content: FatContent) -> None:
    _, info = disk
    (part,) = content.partitions
    assert (part.index, part.status, part.type, part.first_lba) == (1, 0, 0x0C, 2048)
    assert part.first_lba + part.sectors == info.size // 512
    assert info.partition_offset == 2048 * 512 and info.partition_size == part.sectors * 512
    assert part.chs_first == bytes([32, 33, 0])  # LBA 2048 in the 255 × 63 translation, as fdisk writes it
    assert content.disk_signature != 0


def test_every_timestamp_is_the_epoch(content: FatContent) -> None:
    assert content.stamps
    assert {s.kind for s in content.stamps} == {"created", "written", "accessed"}
    wrong = [s for s in content.stamps if not stamp_matches(s, EPOCH)]
    assert wrong == []
    created = {s.when for s in content.stamps if s.kind == "created"}
    assert created == {EPOCH}  # the odd second survives in the hundredths
    # Every entry has its three stamps: the label, '.' and '..' of each folder, every file and folder.
    assert len(content.stamps) == 3 * (1 + 2 * len(DIRS) + len(DIRS) + len(FILES))


def test_short_names_and_aliases(content: FatContent) -> None:
    s = content.short_names
    assert s["INSTALL.TXT"] == "INSTALL.TXT"
    assert s["$WinPEDriver$"] == "$WINPE~1"
    assert s["THIRD_PARTY_NOTICES.md"] == "THIRD_~1.MD"
    assert s["x64"] == "X64" and s["x64/viostor/viostor.inf"] == "VIOSTOR.INF"
    assert s["licenses/virtio-win/virtio-win_license.txt"] == "VIRTIO~1.TXT"
    assert s["x64/viostor/WdfCoInstaller01009.dll"] == "WDFCOI~1.DLL"
    assert s["x64/viostor/WdfCoInstaller01011.dll"] == "WDFCOI~2.DLL"
    assert s["names/LONGNA~1.TXT"] == "LONGNA~1.TXT"
    assert s["names/longname1.txt"] == "LONGNA~2.TXT"
    assert s["names/longname2.txt"] == "LONGNA~3.TXT"
    assert s["names/Mixed.Txt"] == "MIXED.TXT"
    assert s["names/résumé.txt"] == "R_SUM_~1.TXT"
    assert s["names/a.b.c.txt"] == "ABC~1.TXT"
    assert s["names/.hidden"] == "HIDDEN~1"
    assert s["names/c++ notes.txt"] == "C__NOT~1.TXT"
    assert len(set(s[p] for p in s if p.startswith("many/"))) == fatimg.MANY


def test_short_name_scheme_is_deterministic() -> None:
    names = ["b long name.txt", "a long name.txt", "A_LONG~1.TXT", "x.inf", "X86"]
    got = short_names(names)
    assert got == short_names(list(reversed(names)))
    assert got["A_LONG~1.TXT"] == (b"A_LONG~1TXT", False)
    assert got["a long name.txt"] == (b"ALONGN~1TXT", True)
    assert got["b long name.txt"] == (b"BLONGN~1TXT", True)
    assert got["x.inf"] == (b"X       INF", True)
    assert got["X86"] == (b"X86        ", False)
    # Tails grow into the stem: ~10 leaves six characters.
    many = short_names([f"long file name {i:02d}.txt" for i in range(12)])
    assert many["long file name 00.txt"][0] == b"LONGFI~1TXT"
    assert many["long file name 08.txt"][0] == b"LONGFI~9TXT"
    assert many["long file name 09.txt"][0] == b"LONGF~10TXT"
    assert many["long file name 11.txt"][0] == b"LONGF~12TXT"


def test_lfn_checksum_matches_the_specification_example() -> None:
    # The rotate-right-and-add sum over the 11 bytes, computed here long-hand.
    name = b"THIRD_~1MD "
    total = 0
    for b in name:
        total = ((total >> 1) + ((total & 1) << 7) + b) % 256
    assert lfn_checksum(name) == total


# --- independent oracles -----------------------------------------------------------------------


def _mtools_env() -> dict[str, str]:
    return {**os.environ, "MTOOLSRC": "/dev/null", "LC_ALL": "C.UTF-8", "TZ": "UTC"}


def test_fsck_fat_finds_no_problem(disk: tuple[Path, FatDiskInfo], tmp_path: Path) -> None:
    fsck = need_tool("fsck.fat")
    part = fatimg.extract_partition(disk[0], tmp_path / "part.img")
    run = subprocess.run([fsck, "-n", "-V", "-v", str(part)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    text = run.stdout + run.stderr
    for word in ("differ", "wrong", "nvalid", "orphan", "Bad", "Reclaim", "Free cluster summary"):
        assert word not in text, text
    assert text.splitlines()[-1].endswith(f"/{disk[1].clusters} clusters")


def test_mtools_lists_the_same_tree(disk: tuple[Path, FatDiskInfo]) -> None:
    mdir = need_tool("mdir")
    out = subprocess.run([mdir, "-i", f"{disk[0]}@@1M", "-/", "-b", "::/"], capture_output=True, text=True,
                         env=_mtools_env(), check=True).stdout
    listed = {line[3:] for line in out.splitlines() if line.startswith("::/")}
    assert {p.rstrip("/") for p in listed if p.endswith("/")} == DIRS
    assert {p for p in listed if not p.endswith("/")} == set(EXPECTED)
    head = subprocess.run([mdir, "-i", f"{disk[0]}@@1M", "::/"], capture_output=True, text=True,
                          env=_mtools_env(), check=True).stdout
    assert f"Volume in drive : is {LABEL}" in head
    assert f"{disk[1].serial >> 16:04X}-{disk[1].serial & 0xFFFF:04X}" in head


def test_mtools_copies_out_the_same_bytes(disk: tuple[Path, FatDiskInfo], tmp_path: Path) -> None:
    mcopy = need_tool("mcopy")
    dest = tmp_path / "out"
    dest.mkdir()
    subprocess.run([mcopy, "-i", f"{disk[0]}@@1M", "-s", "-n", "::/", str(dest)], check=True, env=_mtools_env(),
                   capture_output=True)
    got = {p.relative_to(dest).as_posix(): (sha(p), p.stat().st_size) for p in dest.rglob("*") if p.is_file()}
    assert got == EXPECTED
    mtype = str(Path(mcopy).with_name("mtype"))  # same package (mtools) as mcopy
    one = subprocess.run([mtype, "-i", f"{disk[0]}@@1M", "::/x64/viostor/viostor.sys"], check=True,
                         env=_mtools_env(), capture_output=True).stdout
    assert hashlib.sha256(one).hexdigest() == EXPECTED["x64/viostor/viostor.sys"][0]


def test_7z_opens_the_whole_stack_vhd_mbr_fat(disk: tuple[Path, FatDiskInfo], tmp_path: Path) -> None:
    """7-Zip reads the VHD footer, the MBR and the FAT itself: a third, unrelated reader."""
    seven = need_tool("7z")
    listing = subprocess.run([seven, "l", str(disk[0])], check=True, capture_output=True, text=True).stdout
    assert "Type = VHD" in listing and "Type = MBR" in listing and "File System = FAT32-LBA" in listing
    dest = tmp_path / "out"
    subprocess.run([seven, "x", "-y", f"-o{dest}", str(disk[0])], check=True, capture_output=True)
    got = {p.relative_to(dest).as_posix(): (sha(p), p.stat().st_size) for p in dest.rglob("*") if p.is_file()}
    assert got == EXPECTED


def test_reader_reads_a_disk_made_by_mkfs_fat_and_mtools(tmp_path: Path) -> None:
    """The reader against another writer: dosfstools' mkfs.fat and mtools' mcopy (which uses the NT case flags)."""
    mkfs, mcopy = need_tool("mkfs.fat"), need_tool("mcopy")
    size = vhd.chs_exact(40 * MIB)
    img = tmp_path / "m.vhd"
    mbr = bytearray(512)
    mbr[446:462] = bytes([0, 0, 0, 0, 0x0C, 0, 0, 0]) + struct.pack("<II", 2048, size // 512 - 2048)
    mbr[510:512] = b"\x55\xaa"
    with open(img, "wb") as fp:
        fp.write(mbr)
        fp.truncate(size)
    subprocess.run([mkfs, "-F", "32", "-s", "1", "--offset", "2048", "-n", "OTHER", "--invariant", str(img),
                    str((size - MIB) // 1024)], check=True, capture_output=True)
    src = tmp_path / "src"
    for rel, data in (("x64/viostor.inf", b"inf"), ("$WinPEDriver$/Some Long Name.txt", b"long"),
                      ("UPPER.TXT", b"upper")):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    for top in sorted(src.iterdir()):
        subprocess.run([mcopy, "-i", f"{img}@@1M", "-s", str(top), "::/"], check=True, env=_mtools_env())
    with open(img, "ab") as fp:
        fp.write(vhd.footer(size, 0, bytes(16)))
    content = read_fat_disk(img)
    assert content.files == {"x64/viostor.inf": (hashlib.sha256(b"inf").hexdigest(), 3),
                             "$WinPEDriver$/Some Long Name.txt": (hashlib.sha256(b"long").hexdigest(), 4),
                             "UPPER.TXT": (hashlib.sha256(b"upper").hexdigest(), 5)}
    assert content.label == content.root_label == "OTHER" and content.serial == 0x1234ABCD
    assert content.free_clusters == content.fsinfo_free


def test_qemu_img_sees_the_disk_size(disk: tuple[Path, FatDiskInfo]) -> None:
    qemu_img = need_tool("qemu-img")
    run = subprocess.run([qemu_img, "info", "-f", "vpc", "--output=json", str(disk[0])], check=True,
                         capture_output=True, text=True)
    assert f'"virtual-size": {disk[1].size},' in run.stdout


# --- reproducibility ---------------------------------------------------------------------------


def test_same_inputs_same_bytes_in_any_order(disk: tuple[Path, FatDiskInfo], tmp_path: Path) -> None:
    again = tmp_path / "again.vhd"
    write_fat_disk(list(reversed(FILES)), again, LABEL, EPOCH)
    assert sha(again) == sha(disk[0])


def test_same_bytes_under_another_time_zone_umask_locale_and_cwd(disk: tuple[Path, FatDiskInfo],
                                                                 tmp_path: Path) -> None:
    other = tmp_path / "other.vhd"
    script = ("import os, sys; os.umask(0o077)\n"
              "from pathlib import Path\n"
              "from aero_media.media.fatwriter import write_fat_disk\n"
              "from tests.lib.fatimg import EPOCH, LABEL, sample_files\n"
              "write_fat_disk(sample_files(), Path(sys.argv[1]), LABEL, EPOCH)\n")
    env = {**os.environ, "TZ": "America/St_Johns", "LC_ALL": "tr_TR.UTF-8", "LANG": "tr_TR.UTF-8",
           "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "123"}
    work = tmp_path / "cwd"
    work.mkdir()
    subprocess.run([sys.executable, "-c", script, str(other)], check=True, cwd=work, env=env)
    assert sha(other) == sha(disk[0])
    assert other.stat().st_mode & 0o777 == 0o644


def test_one_changed_byte_changes_serial_signature_and_unique_id(disk: tuple[Path, FatDiskInfo],
                                                                 tmp_path: Path) -> None:
    changed = [MediaFile(f.path, data=(f.data or b"")[:-1] + b"!") if f.path == "INSTALL.TXT" else f for f in FILES]
    info = write_fat_disk(changed, tmp_path / "c.vhd", LABEL, EPOCH)
    old = disk[1]
    assert info.serial != old.serial and info.disk_signature != old.disk_signature
    assert info.unique_id != old.unique_id


def test_another_epoch_changes_the_dates(tmp_path: Path) -> None:
    files = [MediaFile("A.TXT", data=b"a")]
    write_fat_disk(files, tmp_path / "a.vhd", LABEL, 1_000_000_000)
    content = read_fat_disk(tmp_path / "a.vhd")
    assert all(stamp_matches(s, 1_000_000_000) for s in content.stamps)
    assert not any(stamp_matches(s, EPOCH) for s in content.stamps)
    assert content.footer.timestamp == 1_000_000_000 - 946684800


def test_epoch_before_1980_is_stored_as_1980(tmp_path: Path) -> None:
    write_fat_disk([MediaFile("A.TXT", data=b"a")], tmp_path / "a.vhd", LABEL, 0)
    content = read_fat_disk(tmp_path / "a.vhd")
    assert {s.when for s in content.stamps if s.kind == "written"} == {315532800}
    assert all(stamp_matches(s, 0) for s in content.stamps)


# --- sizes -------------------------------------------------------------------------------------


def test_explicit_size_is_rounded_up_to_an_exact_chs_size(tmp_path: Path) -> None:
    info = write_fat_disk([MediaFile("A.TXT", data=b"a")], tmp_path / "a.vhd", LABEL, EPOCH, size_mib=40)
    c, h, s = info.geometry
    assert info.size == c * h * s * 512 == vhd.chs_exact(40 * MIB) >= 40 * MIB
    assert read_fat_disk(tmp_path / "a.vhd").clusters >= 65525


def test_smallest_fat32_disk(tmp_path: Path) -> None:
    info = write_fat_disk([MediaFile("A.TXT", data=b"a")], tmp_path / "a.vhd", LABEL, EPOCH, size_mib=34)
    assert info.clusters >= 65525
    with pytest.raises(UsageError, match="too small for FAT32"):
        write_fat_disk([MediaFile("A.TXT", data=b"a")], tmp_path / "b.vhd", LABEL, EPOCH, size_mib=33)


def test_clusters_start_on_4k_boundaries(disk: tuple[Path, FatDiskInfo]) -> None:
    geo = fatimg.geometry(disk[0])
    assert geo.cluster(2) % 4096 == 0 and geo.reserved >= 32


def test_a_300_mib_disk_has_4k_clusters_and_passes_fsck(tmp_path: Path) -> None:
    fsck = need_tool("fsck.fat")
    img = tmp_path / "a.vhd"
    files = FILES[:12]
    info = write_fat_disk(files, img, LABEL, EPOCH, size_mib=300)
    assert info.cluster_size == 4096  # fatgen103: 4 KiB from 260 MB
    content = read_fat_disk(img)
    assert content.files == {f.path: EXPECTED[f.path] for f in files}
    assert fatimg.geometry(img).cluster(2) % 4096 == 0
    part = fatimg.extract_partition(img, tmp_path / "part.img")
    run = subprocess.run([fsck, "-n", "-V", str(part)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_payload_too_large_for_the_size_is_refused_before_writing(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as fp:
        fp.truncate(50 * MIB)  # sparse: costs nothing
    out = tmp_path / "a.vhd"
    with pytest.raises(UsageError) as exc:
        write_fat_disk([MediaFile("big.bin", source=big)], out, LABEL, EPOCH, size_mib=40)
    assert "outputs.fat_disk.size_mib" in exc.value.render() and "cannot hold" in exc.value.render()
    assert not out.exists()


def test_cluster_slack_is_counted_exactly(tmp_path: Path) -> None:
    # 1,000 files of 63 KiB + 1 byte: 61.5 MiB of bytes, which the 62 MiB of clusters of a 64 MiB disk would
    # hold, but each takes 127 one-sector clusters: 127,000 plus the folders, and the disk has 127,038.
    blob = bytes(63 * 1024 + 1)
    files = [MediaFile(f"d/F{i:04d}.BIN", data=blob) for i in range(1000)]  # 8.3: one entry each
    with pytest.raises(UsageError, match="it needs at least 65 MiB") as exc:
        write_fat_disk(files, tmp_path / "x.vhd", LABEL, EPOCH, size_mib=64)
    assert "outputs.fat_disk.size_mib" in exc.value.render()
    info = write_fat_disk(files[:990], tmp_path / "a.vhd", LABEL, EPOCH, size_mib=64)
    folder = -(-(2 + 990) * 32 // 512)
    assert info.free_clusters == info.clusters - 990 * 127 - folder - 1


def test_auto_size_grows_when_slack_needs_it(tmp_path: Path) -> None:
    # 43,000 files of 1,025 bytes: 42 MiB of bytes (Aero's rule says 64 MiB), but three clusters each.
    blob = b"x" * 1025
    files = [MediaFile(f"D{i // 4000:02d}/{i:05d}.TXT", data=blob) for i in range(43000)]
    info = write_fat_disk(files, tmp_path / "a.vhd", LABEL, EPOCH)
    assert info.size > vhd.chs_exact(64 * MIB)
    c, h, s = info.geometry
    assert info.size == c * h * s * 512
    assert info.clusters - info.free_clusters >= 129000
    content = read_fat_disk(tmp_path / "a.vhd")
    assert len(content.files) == 43000 and content.free_clusters == info.free_clusters


# --- names and labels --------------------------------------------------------------------------


@pytest.mark.parametrize("paths,message", [
    (["CON"], "reserved device name"),
    (["x/aux.txt"], "reserved device name"),
    (["x/lpt1"], "reserved device name"),
    (["a:b.txt"], "contains ':'"),
    (['q".txt'], "contains '\"'"),
    (["a\x01.txt"], "contains '\\x01'"),
    (["star*.inf"], "contains '*'"),
    (["back\\slash"], "contains '\\\\'"),
    (["trailing."], "ends with a dot or space"),
    (["dir /x.inf"], "ends with a dot or space"),
    (["a//b"], "'' is not a file name"),
    (["/abs"], "'' is not a file name"),
    (["a/../b"], "'..' is not a file name"),
    (["n" * 256], "longer than 255 characters"),
    (["/".join(["abcdefgh"] * 29)], "Windows handles at most 256"),
    (["x86/viostor.inf", "X86/viostor.sys"], "differ only in case"),
    (["a/B.txt", "a/b.txt"], "differ only in case"),
    (["a", "a/b"], "both a file and a folder"),
    (["a/b", "a"], "both a file and a folder"),
    (["a/b", "a/b"], "given twice"),
    (["\udc80.txt"], "lone surrogate"),
])
def test_names_fat_cannot_hold_are_refused(tmp_path: Path, paths: list[str], message: str) -> None:
    out = tmp_path / "a.vhd"
    with pytest.raises(SourceError) as exc:
        write_fat_disk([MediaFile(p, data=b"x") for p in paths], out, LABEL, EPOCH)
    assert message in exc.value.render()
    assert "fix:" in exc.value.render()
    assert list(tmp_path.iterdir()) == []


def test_a_255_character_name_and_a_256_character_path_are_fine(tmp_path: Path) -> None:
    long = "L" * 251 + ".txt"
    deep = "/".join(["abcdefg"] * 32)[:-1]  # 255 characters
    files = [MediaFile(long, data=b"long"), MediaFile(deep + "x", data=b"deep")]
    write_fat_disk(files, tmp_path / "a.vhd", LABEL, EPOCH)
    assert set(read_fat_disk(tmp_path / "a.vhd").files) == {long, deep + "x"}


@pytest.mark.parametrize("label", ["", "aero", "TOO_LONG_LABEL", " AERO", "AERO ", "AE.RO", "ÄERO", "A+B", "A/B"])
def test_bad_labels_are_refused(tmp_path: Path, label: str) -> None:
    with pytest.raises(UsageError, match="FAT volume label"):
        write_fat_disk([MediaFile("A.TXT", data=b"a")], tmp_path / "a.vhd", label, EPOCH)
    assert list(tmp_path.iterdir()) == []


def test_label_with_inner_space_and_eleven_characters(tmp_path: Path) -> None:
    write_fat_disk([MediaFile("A.TXT", data=b"a")], tmp_path / "a.vhd", "AERO DRV 01", EPOCH)
    content = read_fat_disk(tmp_path / "a.vhd")
    assert content.label == content.root_label == "AERO DRV 01"


def test_a_file_that_changes_size_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 100)

    class Shrinking(MediaFile):
        @property
        def size(self) -> int:
            return 200

    with pytest.raises(SourceError, match="changed size"):
        write_fat_disk([Shrinking("a.bin", source=src)], tmp_path / "out" / "a.vhd", LABEL, EPOCH)
    assert not (tmp_path / "out" / "a.vhd").exists()


def test_progress_is_drawn_on_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AERO_MEDIA_PROGRESS", "always")
    write_fat_disk([MediaFile("A.BIN", data=bytes(2 * MIB))], tmp_path / "a.vhd", LABEL, EPOCH)
    captured = capsys.readouterr()
    assert "write a.vhd" in captured.err and captured.out == ""


def test_a_big_file_from_disk_streams(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    data = random.Random(3).randbytes(9 * MIB + 17)
    src.write_bytes(data)
    info = write_fat_disk([MediaFile("x64/big.bin", source=src)], tmp_path / "a.vhd", LABEL, EPOCH)
    assert read_fat_disk(tmp_path / "a.vhd").files == {"x64/big.bin": (hashlib.sha256(data).hexdigest(),
                                                                       len(data))}
    assert info.size == vhd.chs_exact(64 * MIB)


# --- hostile images ----------------------------------------------------------------------------


@pytest.fixture
def victim(disk: tuple[Path, FatDiskInfo], tmp_path: Path) -> tuple[Path, fatimg.Geometry]:
    img = tmp_path / "victim.vhd"
    fatimg.sparse_copy(disk[0], img)
    return img, fatimg.geometry(img)


def _refused(img: Path, message: str, error: type[PipelineError] = FatError) -> None:
    start = time.monotonic()
    with pytest.raises(error) as exc:
        read_fat_disk(img)
    assert message in exc.value.render(), exc.value.render()
    assert "\n" not in exc.value.render()
    assert time.monotonic() - start < 5


def test_truncated_image(victim: tuple[Path, fatimg.Geometry]) -> None:
    img, _ = victim
    with open(img, "r+b") as fp:
        fp.truncate(img.stat().st_size // 2)
    _refused(img, f"{img.name}: VHD footer", VhdError)  # names the disk, then what is wrong with it
    _refused(img, "cookie", VhdError)


def test_truncated_disk_with_a_valid_footer(victim: tuple[Path, fatimg.Geometry]) -> None:
    # The footer says the disk is smaller than the partition the MBR describes.
    img, _ = victim
    small = 40 * MIB
    with open(img, "r+b") as fp:
        fp.truncate(small)
        fp.seek(small)
        fp.write(vhd.footer(small, 0, bytes(16)))
    _refused(img, "does not lie inside")


def test_cluster_chain_loop(victim: tuple[Path, fatimg.Geometry]) -> None:
    img, geo = victim
    first = fatimg.first_cluster(img, fatimg.find_entry(img, geo, b"VIOSTOR SYS"))
    fatimg.set_fat(img, geo, first + 3, first)  # the fourth cluster points back to the first
    _refused(img, f"cluster {first} is already in use")


def test_chain_into_a_free_cluster(victim: tuple[Path, fatimg.Geometry]) -> None:
    img, geo = victim
    entry = fatimg.find_entry(img, geo, b"INSTALL TXT")
    first = fatimg.first_cluster(img, entry)
    fatimg.patch(img, entry + 28, struct.pack("<I", 2000))  # four clusters long now
    fatimg.set_fat(img, geo, first, 120000)
    _refused(img, "followed by a free cluster")


def test_directory_cycle(victim: tuple[Path, fatimg.Geometry]) -> None:
    img, geo = victim
    viostor = fatimg.find_entry(img, geo, b"VIOSTOR    ")  # the first 'viostor' folder entry
    fatimg.set_first_cluster(img, viostor, geo.root)  # a folder that is the root again
    _refused(img, "already in use")


def test_directory_pointing_to_its_parent(victim: tuple[Path, fatimg.Geometry]) -> None:
    img, geo = victim
    x86 = fatimg.find_entry(img, geo, b"X86        ")
    x86_first = fatimg.first_cluster(img, x86)
    with open(img, "rb") as fp:  # find the viostor entry inside x86, not another one
        fp.seek(geo.cluster(x86_first))
        data = fp.read(512)
    pos = next(i for i in range(0, 512, 32) if data[i:i + 11] == b"VIOSTOR    ")
    viostor = geo.cluster(x86_first) + pos
    fatimg.set_first_cluster(img, viostor, x86_first)
    _refused(img, "already in use")


def test_out_of_range_first_cluster(victim: tuple[Path, fatimg.Geometry]) -> None:
    img, geo = victim
    fatimg.set_first_cluster(img, fatimg.find_entry(img, geo, b"INSTALL TXT"), 0x0FFFFF00)
    _refused(img, "is outside the volume")


def test_out_of_range_next_cluster(victim: tuple[Path, fatimg.Geometry]) -> None:
    img, geo = victim
    first = fatimg.first_cluster(img, fatimg.find_entry(img, geo, b"VIOSTOR SYS"))
    fatimg.set_fat(img, geo, first, 0x0FFFFF00)
    _refused(img, "cluster 268435200 is outside the volume")


def test_cross_linked_files(victim: tuple[Path, fatimg.Geometry]) -> None:
    img, geo = victim
    a = fatimg.first_cluster(img, fatimg.find_entry(img, geo, b"INSTALL TXT"))
    fatimg.set_first_cluster(img, fatimg.find_entry(img, geo, b"THIRD_~1MD "), a)
    _refused(img, "already in use")


def test_broken_long_name_checksum(victim: tuple[Path, fatimg.Geometry]) -> None:
    img, geo = victim
    entry = fatimg.find_entry(img, geo, b"THIRD_~1MD ")
    fatimg.patch(img, entry - 32 + 13, b"\x00")  # the long-name entry just before it
    _refused(img, "checksum")


def test_not_fat32(victim: tuple[Path, fatimg.Geometry]) -> None:
    img, geo = victim
    fatimg.patch(img, geo.partition + 17, struct.pack("<H", 512))  # root entries: a FAT16 BPB
    _refused(img, "not FAT32")


def test_no_fat_partition(victim: tuple[Path, fatimg.Geometry]) -> None:
    img, _ = victim
    fatimg.patch(img, 446 + 4, b"\x07")
    _refused(img, "no FAT32 partition")


def test_random_damage_never_crashes_or_hangs(victim: tuple[Path, fatimg.Geometry]) -> None:
    """Change bytes in the metadata (MBR, boot sector, FSInfo, FAT head, directories): our errors, or success."""
    img, geo = victim
    regions = [(0, 512), (geo.partition, geo.partition + 1024), (geo.fat(0), geo.fat(0) + 4096),
               (geo.cluster(geo.root), geo.cluster(geo.root) + 64 * 1024)]
    rng = random.Random(2024)
    start = time.monotonic()
    outcomes = {"ok": 0, "refused": 0}
    with open(img, "r+b") as fp:
        for _ in range(60):
            saved = []
            for _ in range(rng.randint(1, 8)):
                lo, hi = rng.choice(regions)
                at = rng.randrange(lo, hi)
                fp.seek(at)
                saved.append((at, fp.read(1)))
                fp.seek(at)
                fp.write(bytes([rng.randrange(256)]))
            fp.flush()
            try:
                read_fat_disk(img)
                outcomes["ok"] += 1
            except FatError:
                outcomes["refused"] += 1
            for at, old in reversed(saved):
                fp.seek(at)
                fp.write(old)
    assert outcomes["refused"] > 10
    assert time.monotonic() - start < 30
