"""The sparse working copy of a WIM: wimlib services it as if whole, and the splice is the serviced WIM.

Checked with wimlib itself (``verify`` reads every blob and checks its SHA-1) against a
whole copy serviced the same way: same files, same data, in every image.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
from pathlib import Path

import pytest

from aero_media.servicing import wim, wimsparse
from tests.lib.needs import need_tool

pytestmark = pytest.mark.integration

PAD = 3 * 4096 + 123  # the WIM starts mid-block in its container, as a file in an ISO may not


def _wimlib(*args: str, stdin: bytes | None = None) -> str:
    return subprocess.run(["wimlib-imagex", *args], input=stdin, capture_output=True, check=True,
                          env={**os.environ, "LC_ALL": "C"}).stdout.decode()


def _make_wim(tmp: Path, compress: str, *extra: str) -> Path:
    """Two images of a small tree with a few MiB of incompressible data, as ``compress``."""
    need_tool("wimlib-imagex")
    tree = tmp / "tree"
    (tree / "Windows" / "System32" / "config").mkdir(parents=True)
    (tree / "Windows" / "System32" / "config" / "SOFTWARE").write_bytes(b"regf" + os.urandom(300_000))
    (tree / "Windows" / "System32" / "config" / "SYSTEM").write_bytes(b"regf" + os.urandom(200_000))
    for n in range(6):
        (tree / f"payload{n}.dat").write_bytes(os.urandom(1_000_000 + n))
    out = tmp / "image.wim"
    _wimlib("capture", str(tree), str(out), "one", f"--compress={compress}", *extra)
    (tree / "second.txt").write_bytes(b"only in image 2")
    _wimlib("append", str(tree), str(out), "two", *extra)
    return out


def _contain(wim_file: Path, tmp: Path) -> tuple[Path, tuple[tuple[int, int], ...]]:
    """The WIM's bytes inside a larger file (an ISO stands in), in two extents."""
    data = wim_file.read_bytes()
    cut = len(data) // 2 + 777
    iso = tmp / "container.iso"
    iso.write_bytes(b"\xee" * PAD + data[:cut] + b"\xdd" * 5000 + data[cut:] + b"\xcc" * 999)
    return iso, ((PAD, cut), (PAD + cut + 5000, len(data) - cut))


def _layout(iso: Path, extents: tuple[tuple[int, int], ...]) -> wimsparse.Layout | str:
    raw = iso.read_bytes()
    data = b"".join(raw[o:o + n] for o, n in extents)
    return wimsparse.plan(data[:wimsparse.HEADER_SIZE], lambda o, n: data[o:o + n], len(data))


def _spliced(copy: wimsparse.SparseWim, out_path: Path) -> Path:
    """The serviced WIM the splice describes, written out as the ISO writer would lay its bytes."""
    with open(out_path, "wb") as out:
        for file, offset, length in copy.splice():
            with open(file, "rb") as fp:
                fp.seek(offset)
                out.write(fp.read(length))
    return out_path


def _sparse(tmp: Path, compress: str = "lzx", trailing: int = 0) -> tuple[wimsparse.SparseWim, Path]:
    source = _make_wim(tmp, compress)
    if trailing:
        with open(source, "ab") as fp:
            fp.write(os.urandom(trailing))
    iso, extents = _contain(source, tmp)
    layout = _layout(iso, extents)
    assert isinstance(layout, wimsparse.Layout), layout
    copy = wimsparse.SparseWim(iso, extents, tmp / "work.wim", layout)
    if not copy.holds_only_what_was_copied():
        pytest.skip(f"the file system of {tmp} does not keep holes")
    return copy, source


def _service(w: Path, tmp: Path) -> None:
    """Replace a hive and add a file in both images, as servicing does."""
    new = tmp / "SOFTWARE.new"
    if not new.exists():  # one new hive for every copy serviced
        new.write_bytes(b"regf" + os.urandom(100_000))
    for index in ("1", "2"):
        _wimlib("update", str(w), index,
                stdin=f"add {new} /Windows/System32/config/SOFTWARE\nadd {new} /Windows/added.sys\n".encode())


def _contents(w: Path) -> list[str]:
    """Every image's paths and data hashes (no times: wimlib stamps each update)."""
    lines = []
    for index in ("1", "2"):
        out = _wimlib("dir", str(w), index, "--detailed")
        lines += [ln.strip() for ln in out.splitlines() if ln.strip().startswith(("Full Path", "Hash"))]
    return lines


@pytest.mark.parametrize("compress", ["lzx", "none"])
def test_a_sparse_copy_services_like_a_whole_one(tmp_path: Path, compress: str) -> None:
    copy, source = _sparse(tmp_path, compress)
    assert os.stat(copy.dest).st_blocks * 512 < copy.layout.size // 3  # the payload was never copied
    copy.fetch_blobs(wim.data_hashes(copy.dest, 1, ["Windows/System32/config/SOFTWARE",
                                                    "Windows/System32/config/SYSTEM"]))
    got = wim.extract(copy.dest, 1, ["/Windows/System32/config/SYSTEM"], tmp_path / "x")
    whole_system = tmp_path / "tree" / "Windows" / "System32" / "config" / "SYSTEM"
    assert got[0].read_bytes() == whole_system.read_bytes()
    _service(copy.dest, tmp_path)
    spliced = _spliced(copy, tmp_path / "spliced.wim")
    whole = tmp_path / "whole.wim"
    whole.write_bytes(source.read_bytes())
    _service(whole, tmp_path)
    _wimlib("verify", str(spliced))  # every blob and metadata resource against its SHA-1
    assert _contents(spliced) == _contents(whole)
    copy.fill()  # the published WIM: the same bytes as the splice, in one file
    assert hashlib.sha256(copy.dest.read_bytes()).digest() == hashlib.sha256(spliced.read_bytes()).digest()


def test_a_blob_left_in_the_hole_fails_loudly_in_wimlib(tmp_path: Path) -> None:
    copy, _ = _sparse(tmp_path)
    with pytest.raises(Exception):  # noqa: B017 - wimlib's SHA-1 check, whatever our wrapper calls it
        wim.extract(copy.dest, 1, ["/payload0.dat"], tmp_path / "x")


def test_a_write_into_a_hole_is_refused_at_the_splice(tmp_path: Path) -> None:
    copy, _ = _sparse(tmp_path)
    hole = next(o + n for o, n in copy.copied if o + n < copy.layout.size - 3 * copy.block)
    with open(copy.dest, "r+b") as fp:
        fp.seek(hole + 100)
        fp.write(b"stray")
    with pytest.raises(ValueError, match="written"):
        copy.splice()


@pytest.mark.parametrize("damage", ["magic", "version", "split", "integrity", "table-out", "solid", "resource-out"])
def test_a_wim_it_cannot_vouch_for_gets_a_whole_copy(tmp_path: Path, damage: str) -> None:
    source = _make_wim(tmp_path, "lzx")
    data = bytearray(source.read_bytes())
    table_off = struct.unpack_from("<Q", data, 56)[0]
    if damage == "magic":
        data[0:5] = b"XXWIM"
    elif damage == "version":
        struct.pack_into("<I", data, 12, 0xE00)
    elif damage == "split":
        struct.pack_into("<HH", data, 40, 1, 2)
    elif damage == "integrity":
        struct.pack_into("<Q", data, 124, 4096)  # a stored size for the integrity table
    elif damage == "table-out":
        struct.pack_into("<Q", data, 56, len(data))
    elif damage == "solid":
        data[table_off + 7] |= wimsparse.RES_SOLID
    else:
        struct.pack_into("<Q", data, table_off + 8, len(data) * 2)
    layout = wimsparse.plan(bytes(data[:wimsparse.HEADER_SIZE]), lambda o, n: bytes(data[o:o + n]), len(data))
    assert isinstance(layout, str) and layout


def test_a_real_integrity_table_is_refused(tmp_path: Path) -> None:
    source = _make_wim(tmp_path, "lzx", "--check")
    data = source.read_bytes()
    assert wimsparse.plan(data[:wimsparse.HEADER_SIZE], lambda o, n: data[o:o + n], len(data)) == \
        "an integrity table"


@pytest.mark.parametrize("trailing", [100, 5_000, 100_000])
def test_bytes_after_the_tables_are_copied_where_wimlib_appends(tmp_path: Path, trailing: int) -> None:
    """wimlib appends from the end of its XML, not of the file: a WIM with bytes after its tables (what
    dropping an integrity table leaves) still splices into one that verifies."""
    copy, _ = _sparse(tmp_path, trailing=trailing)
    _service(copy.dest, tmp_path)
    _wimlib("verify", str(_spliced(copy, tmp_path / "spliced.wim")))
