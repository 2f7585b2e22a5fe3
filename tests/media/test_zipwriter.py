"""The zip writer: reproducible, and it stores what would not shrink."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from aero_media.media.files import MediaFile
from aero_media.media.zipwriter import write_zip, zip_date


def test_incompressible_stored_text_deflated_and_reproducible(tmp_path: Path) -> None:
    noise = os.urandom(300_000)
    files = [MediaFile("b/noise.bin", data=noise), MediaFile("a.txt", data=b"hello world\n" * 5000)]
    write_zip(files, tmp_path / "one.zip", 1700000000)
    write_zip(list(reversed(files)), tmp_path / "two.zip", 1700000000)
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.zip") as zf:
        kinds = {i.filename: i.compress_type for i in zf.infolist()}
        assert zf.read("b/noise.bin") == noise
    assert kinds == {"b/": zipfile.ZIP_STORED, "a.txt": zipfile.ZIP_DEFLATED, "b/noise.bin": zipfile.ZIP_STORED}


def test_dates_clamp_to_1980_and_round_to_even_seconds() -> None:
    assert zip_date(0) == (1980, 1, 1, 0, 0, 0)
    assert zip_date(1700000001) == (2023, 11, 14, 22, 13, 20)
