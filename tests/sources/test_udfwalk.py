"""The UDF tree is walked by our own bounded parser: hostile UDF structures are refused fast, in flat memory.

Each test writes a small UDF bridge image with our writer and patches one structure (ECMA-167 part 4),
re-sealing the descriptor tag so only the patched meaning is wrong.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import pytest

from aero_media.errors import SourceError, UnsafePathError
from aero_media.media.files import MediaFile
from aero_media.sources import isoread
from aero_media.sources.isoread import IsoTree
from tests.lib.udfpatch import S, Udf, rename, retag

FILES = [MediaFile("a.txt", data=b"A" * 10), MediaFile("b.txt", data=b"B" * 10),
         MediaFile("dir/c.txt", data=b"C" * 3000)]


def _entries(path: Path) -> dict[str, Any]:
    with IsoTree.open_path(path) as tree:
        assert tree.reader == "udf"
        return {e.path: e for e in tree.entries()}


def test_the_clean_image_reads(tmp_path: Path) -> None:
    assert set(_entries(Udf(tmp_path, FILES).save())) == {"a.txt", "b.txt", "dir", "dir/c.txt"}


def test_identifiers_claiming_a_gib_each_read_one_block_each(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """pycdlib reads the length an identifier's ICB claims; a File Entry is one block whatever it claims."""
    files = [MediaFile(f"f{i:02}.txt", data=b"x") for i in range(20)] + [MediaFile("pad.bin", data=b"\1" * (4 << 20))]
    img = Udf(tmp_path, files)
    for name, fid in img.fids(img.root).items():
        if name:
            struct.pack_into("<I", img.b, fid + 20, 0x3FFFFFFF)
            retag(img.b, fid)
    path = img.save()
    read = [0]

    class Counting(io.FileIO):
        def read(self, n: int = -1) -> bytes:  # type: ignore[override]
            data = super().read(n)
            read[0] += len(data or b"")
            return data  # type: ignore[return-value]

    monkeypatch.setattr(isoread, "open", lambda p, mode: Counting(p, mode), raising=False)
    assert len(_entries(path)) == 21
    assert read[0] < 1 << 20  # the image is over 4 MiB; the old walk read it once per identifier


def test_repeated_allocation_descriptors_of_a_folder_are_refused(tmp_path: Path) -> None:
    img = Udf(tmp_path, [MediaFile(f"f{i:03}.txt", data=b"x") for i in range(100)])
    at = img.ads(img.root)
    ad = bytes(img.b[at:at + 8])
    img.b[at:at + 8 * 20] = ad * 20
    struct.pack_into("<I", img.b, img.root * S + 172, 8 * 20)
    struct.pack_into("<Q", img.b, img.root * S + 56, 20 * (struct.unpack_from("<I", ad)[0] & 0x3FFFFFFF))
    retag(img.b, img.root * S, 176 + 8 * 20 - 16)
    with pytest.raises(SourceError, match=r"in\.iso: '/'"):
        _entries(img.save())


def test_a_name_twice_in_one_folder_is_refused(tmp_path: Path) -> None:
    img = Udf(tmp_path, FILES)
    rename(img, b"b.txt", b"a.txt")
    with pytest.raises(UnsafePathError, match=r"'a\.txt'"):
        _entries(img.save())


@pytest.mark.parametrize("block", [0x7FFFFFF0, 40], ids=["past-the-end", "blank-block"])
def test_an_identifier_pointing_nowhere_names_the_file(tmp_path: Path, block: int) -> None:
    img = Udf(tmp_path, FILES)
    fid = img.fids(img.root)[b"b.txt"]
    if block == 40:
        img.b.extend(bytes(64 * S))  # a blank block inside the image
    struct.pack_into("<I", img.b, fid + 24, block)
    retag(img.b, fid)
    with pytest.raises(SourceError, match=r"'b\.txt'"):
        _entries(img.save())


def test_a_folder_whose_data_lies_past_the_end_is_truncated(tmp_path: Path) -> None:
    img = Udf(tmp_path, FILES)
    fe = img.fe_of(b"dir")
    struct.pack_into("<I", img.b, img.ads(fe) + 4, 0x7FFFFFF0)
    retag(img.b, fe * S)
    with pytest.raises(SourceError, match="truncated: 'dir'"):
        _entries(img.save())


@pytest.mark.parametrize("block", [0, 0x3FFFF], ids=["file-set-descriptor", "past-the-partition"])
def test_file_data_on_metadata_or_outside_the_partition_is_refused(tmp_path: Path, block: int) -> None:
    img = Udf(tmp_path, FILES)
    if block:
        img.b.extend(bytes((block + 8) * S))  # inside the image, past the partition
    fe = img.fe_of(b"a.txt")
    struct.pack_into("<I", img.b, img.ads(fe) + 4, block)
    retag(img.b, fe * S)
    with pytest.raises(SourceError, match=r"'a\.txt'"):
        _entries(img.save())


def test_damaged_udf_descriptors_are_not_called_a_non_iso(tmp_path: Path) -> None:
    img = Udf(tmp_path, FILES)
    size = len(img.b) // S
    for block in (256, size - 1, size - 257):
        if struct.unpack_from("<H", img.b, block * S)[0] == 2:  # Anchor Volume Descriptor Pointer
            img.b[block * S:block * S + 16] = bytes(16)
    with pytest.raises(SourceError) as info:
        _entries(img.save())
    assert "UDF" in str(info.value) and "not an ISO 9660" not in str(info.value)
