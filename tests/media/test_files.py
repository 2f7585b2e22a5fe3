"""MediaFile bytes from a region of a larger file: size, streaming, and one extent per region on a medium."""

from __future__ import annotations

from pathlib import Path

import pytest

from aero_media.errors import SourceError
from aero_media.media.files import FileRegion, MediaFile
from aero_media.media.isowriter import write_iso
from aero_media.media.verify import read_iso


@pytest.fixture
def container(tmp_path: Path) -> Path:
    path = tmp_path / "dvd.iso"
    path.write_bytes(bytes(range(256)) * 40)  # 10240 bytes
    return path


def test_a_region_is_its_extents_in_order(container: Path) -> None:
    data = container.read_bytes()
    region = FileRegion(container, ((6000, 3000), (10, 20), (9000, 0), (4000, 1)))
    f = MediaFile("sources/x.wim", region=region)
    assert f.size == 3021
    expected = data[6000:9000] + data[10:30] + data[4000:4001]
    with f.open() as fp:
        assert fp.read() == expected
    with f.open() as fp:  # small reads cross extent boundaries
        pieces = []
        while chunk := fp.read(7):
            pieces.append(chunk)
    assert b"".join(pieces) == expected


def test_files_of_one_region_share_one_extent(container: Path, tmp_path: Path) -> None:
    region = FileRegion(container, ((2048, 4096),))
    files = [MediaFile("a/install.wim", region=region), MediaFile("b/install.wim", region=region),
             MediaFile("c/other.wim", region=FileRegion(container, ((0, 4096),)))]
    out = tmp_path / "m.iso"
    write_iso(files, out, "L", 0, udf=True)
    content = read_iso(out)
    assert content.extents["a/install.wim"] == content.extents["b/install.wim"] != content.extents["c/other.wim"]
    data = out.read_bytes()
    at = content.extents["a/install.wim"] * 2048
    assert data[at:at + 4096] == container.read_bytes()[2048:6144]


def test_a_region_past_the_end_of_its_file_is_an_error(container: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.iso"
    with pytest.raises(SourceError, match="changed size"):
        write_iso([MediaFile("x.bin", region=FileRegion(container, ((10000, 1000),)))], out, "L", 0)
    assert not out.exists()
