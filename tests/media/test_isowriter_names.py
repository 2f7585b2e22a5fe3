"""The ISO writer refuses, before writing, names no reader gives back as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from aero_media.errors import UsageError
from aero_media.media.files import MediaFile
from aero_media.media.isowriter import write_iso


@pytest.mark.parametrize("paths", [["a.txt\x00", "a.txt"], ["a\\b"], ["..", "x"], ["d/./x"], ["d//x"], ["/x"],
                                   ["con"], ["d/LPT1.txt"], ["C:/x"], ["x."], ["x/y "], ["x", "X/y"]],
                         ids=["nul", "backslash", "dotdot", "dot", "empty", "absolute", "device", "device-ext",
                              "drive", "trailing-dot", "trailing-space", "file-and-folder"])
@pytest.mark.parametrize("udf", [False, True], ids=["iso", "udf"])
def test_names_that_do_not_read_back_are_refused_before_writing(tmp_path: Path, paths: list[str],
                                                                 udf: bool) -> None:
    out = tmp_path / "out.iso"
    with pytest.raises(UsageError):
        write_iso([MediaFile(p, data=b"1") for p in paths], out, "T", 0, udf=udf)
    assert not out.exists()


def test_good_names_are_written(tmp_path: Path) -> None:
    write_iso([MediaFile("$WinPEDriver$/amd64/viostor/viostor.inf", data=b"1")], tmp_path / "out.iso", "T", 0,
              udf=True)
    assert (tmp_path / "out.iso").stat().st_size > 0
