"""Rebuilding refuses, before writing, names the input tree or a change path should not put on Windows media."""

from __future__ import annotations

from pathlib import Path

import pytest

from aero_media.errors import UnsafePathError, UsageError
from aero_media.media.files import MediaFile
from aero_media.servicing.isorepack import repack
from tests.lib.udfpatch import Udf, rename

FILES = [MediaFile("a.txt", data=b"A" * 10), MediaFile("b.txt", data=b"B" * 10),
         MediaFile("setup.exe", data=b"MZ"), MediaFile("dir/c.txt", data=b"C" * 3000)]


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    return Udf(tmp_path, FILES).save()


@pytest.mark.parametrize("name", [b"A.txt", b"con  ", b"a<b>c", b"b.tx ", b"DIR  "],
                         ids=["case-clash", "device", "bad-char", "trailing-space", "folder-case-space"])
def test_input_names_windows_would_not_keep_are_refused(tmp_path: Path, name: bytes) -> None:
    img = Udf(tmp_path, FILES)
    rename(img, b"b.txt", name)
    with pytest.raises(UnsafePathError, match=r"in\.iso"):
        repack(img.save(), tmp_path / "out.iso", {}, epoch=1_700_000_000)
    assert not (tmp_path / "out.iso").exists()


@pytest.mark.parametrize("dest", ["setup.exe/x", "SETUP.EXE/sub/x", "a.txt\x00", "dir\\x", "dir/../../etc",
                                  "con/x", "x./y", "dir/x ", "C:/x"])
def test_bad_change_paths_are_refused(clean: Path, tmp_path: Path, dest: str) -> None:
    with pytest.raises(UsageError):
        repack(clean, tmp_path / "out.iso", {dest: b"1"}, epoch=1_700_000_000)
    assert not (tmp_path / "out.iso").exists()


def test_a_folder_under_an_input_file_is_refused(clean: Path, tmp_path: Path) -> None:
    """As when the input holds a file named like a folder service adds (``$WinPEDriver$``)."""
    folder = tmp_path / "drivers"
    (folder / "amd64").mkdir(parents=True)
    (folder / "amd64" / "d.inf").write_bytes(b"x")
    with pytest.raises(UsageError, match=r"setup\.exe"):
        repack(clean, tmp_path / "out.iso", {"setup.exe": folder}, epoch=1_700_000_000)


def test_two_new_folders_differing_by_case_are_refused(clean: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        repack(clean, tmp_path / "out.iso", {"new/a.txt": b"1", "NEW/b.txt": b"2"}, epoch=1_700_000_000)


def test_good_changes_still_go_in(clean: Path, tmp_path: Path) -> None:
    result = repack(clean, tmp_path / "out.iso", {"Dir/new.txt": b"1", "b.txt": b"2"}, epoch=1_700_000_000)
    assert result.reader == "udf" and (tmp_path / "out.iso").exists()
