"""Servicing at retail size: each input read once, nothing hashed twice, and a line in the log for every step.

Timing is the bench's (bench/run.py --only service); these tests assert what makes it fast:
which files are hashed and how often, and that every step reports progress off a terminal.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aero_media import fsutil, hashmemo, log
from aero_media.errors import SourceError
from aero_media.servicing import service
from tests.lib.needs import need_tool

pytestmark = pytest.mark.integration


def _spy(monkeypatch: pytest.MonkeyPatch, hashed: list[Path]) -> None:
    """Record every file hashed whole, wherever the servicing code or the memo hashes one."""
    real = fsutil.sha256_file

    def spying(path: Path, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
        hashed.append(Path(path))
        return real(path, progress)

    for module in (service, hashmemo, fsutil):
        monkeypatch.setattr(module, "sha256_file", spying)


def test_service_iso_reads_the_iso_once_and_logs_every_step(tmp_path: Path, media_iso: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    need_tool("wimlib-imagex")
    need_tool("hivexregedit")
    from aero_media.cli import main
    from tests.lib.project import expanded_sample

    want = hashlib.sha256(media_iso.read_bytes()).hexdigest()
    pack = expanded_sample(tmp_path / "pack")
    hashed: list[Path] = []
    _spy(monkeypatch, hashed)
    # stderr is captured (not a terminal, as a log file); every progress line is due at once.
    monkeypatch.delenv("AERO_MEDIA_PROGRESS", raising=False)
    monkeypatch.setattr(log, "PLAIN_INTERVAL", 0.0)
    out_iso = tmp_path / "out" / "win7-aero.iso"
    assert main(["service-iso", "--windows-iso", str(media_iso), "--drivers-root", str(pack), "--output",
                 str(out_iso), "--allow-placeholder-catalogs"]) == 0
    rec: dict[str, Any] = json.loads((out_iso.parent / "win7-aero.iso.servicing.json").read_text())
    assert rec["source"]["sha256"] == want  # hashed beside the copy and the servicing
    assert rec["outputs"][0]["sha256"] == hashlib.sha256(out_iso.read_bytes()).hexdigest()
    big = {p.name for p in hashed if p.name in (media_iso.name, "boot.wim", "install.wim")}
    assert big == set(), f"hashed again: {big}"
    err = capsys.readouterr().err
    labels = {line.split(":", 1)[0] for line in err.splitlines() if ":" in line}
    steps = [f"copy {media_iso.name}", "extract from boot.wim image 2", "edit hives of boot.wim image 2",
             "update boot.wim image 2", "extract from install.wim image 1", "edit hives of install.wim image 1",
             "update install.wim image 1", f"write {out_iso.name}"]
    missing = [s for s in steps if not any(label.startswith(s) for label in labels)]
    assert not missing, f"no progress line for {missing}"
    assert "\r" not in err


def test_copy_out_copies_every_extent_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of one or several extents, crossing copy steps, come out byte for byte."""
    monkeypatch.setattr(fsutil, "COPY_STEP", 1000)  # many steps, extents across their boundaries
    image = bytes(range(256)) * 40  # 10240 bytes
    iso = tmp_path / "in.iso"
    iso.write_bytes(image)
    extents = {tmp_path / "one": ((2048, 3000),), tmp_path / "two": ((8192, 100), (512, 1500), (6000, 2000)),
               tmp_path / "empty": ((4096, 0),)}
    service._copy_out(iso, extents)
    for dest, parts in extents.items():
        assert dest.read_bytes() == b"".join(image[o:o + n] for o, n in parts), dest.name


def test_the_iso_hash_runs_beside_the_caller_and_lands_in_the_memo(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "HASH_CHUNK", 1000)
    image = bytes(range(256)) * 40
    iso = tmp_path / "in.iso"
    iso.write_bytes(image)
    memo = hashmemo.HashMemo(tmp_path / "memo")
    hashing = service.IsoHash(iso, memo)
    assert hashing.result() == hashlib.sha256(image).hexdigest()
    assert memo.lookup(iso, iso.stat()) == hashlib.sha256(image).hexdigest()


def test_copy_out_moves_the_extents_inside_the_kernel(tmp_path: Path, kernel_copies: list[int]) -> None:
    """Every extent byte goes through copy_file_range (no user-space buffer)."""
    moved = kernel_copies
    image = bytes(range(256)) * 40
    iso = tmp_path / "in.iso"
    iso.write_bytes(image)
    extents = {tmp_path / "one": ((2048, 3000),), tmp_path / "two": ((8192, 100), (512, 1500))}
    service._copy_out(iso, extents)
    assert sum(moved) == 4600
    assert (tmp_path / "two").read_bytes() == image[8192:8292] + image[512:2012]


@pytest.mark.parametrize("refusal", [errno.EXDEV, errno.ENOSYS])
def test_copy_range_falls_back_to_reads_and_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   refusal: int) -> None:
    def refuse(*args: object) -> int:
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    monkeypatch.setattr(fsutil, "HASH_CHUNK", 1000)  # several reads
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(bytes(range(256)) * 20)
    with open(src, "rb") as s, open(dst, "wb") as d:
        assert fsutil.copy_range(s.fileno(), d.fileno(), 100, 4000, 8) == 4000
        assert fsutil.copy_range(s.fileno(), d.fileno(), 5000, 500, 5000) == 120  # the source ends first
    assert dst.read_bytes()[8:4008] == src.read_bytes()[100:4100]
    assert dst.read_bytes()[5000:] == src.read_bytes()[5000:]


def test_copy_out_of_a_truncated_iso_is_a_source_error(tmp_path: Path) -> None:
    iso = tmp_path / "in.iso"
    iso.write_bytes(bytes(4096))
    with pytest.raises(SourceError, match="ended before"):
        service._copy_out(iso, {tmp_path / "wim": ((2048, 4096),)})


def test_the_wims_are_never_copied_whole(tmp_path: Path, media_iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """boot.wim and install.wim are copied sparsely: only what wimlib reads leaves the ISO before the rebuild."""
    need_tool("wimlib-imagex")
    need_tool("hivexregedit")
    from aero_media.cli import main
    from aero_media.servicing import wimsparse
    from tests.lib.project import expanded_sample

    made: list[wimsparse.SparseWim] = []
    real = service._sparse_copy

    def recording(*args: Any) -> wimsparse.SparseWim | None:
        copy = real(*args)
        assert copy is not None, "a whole copy of a WIM our own tools made"
        made.append(copy)
        return copy

    monkeypatch.setattr(service, "_sparse_copy", recording)
    pack = expanded_sample(tmp_path / "pack")
    out_iso = tmp_path / "out" / "win7-aero.iso"
    assert main(["service-iso", "--windows-iso", str(media_iso), "--drivers-root", str(pack), "--output",
                 str(out_iso), "--allow-placeholder-catalogs"]) == 0
    # Both went the sparse way (tests/servicing/test_wimsparse.py shows what that leaves in the ISO).
    assert sorted(c.dest.name for c in made) == ["boot.wim", "install.wim"]
