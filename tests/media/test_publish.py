"""The publish stage's file moves: one rename per file, a link where it can, nothing left behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from aero_media.media import publish


def test_a_file_is_linked_into_place_over_the_old_one(tmp_path: Path) -> None:
    made = tmp_path / "build" / "a.iso"
    made.parent.mkdir()
    made.write_bytes(b"new")
    final = tmp_path / "dist" / "a.iso"
    final.parent.mkdir()
    final.write_bytes(b"old")
    publish.link_into_place(made, final)
    assert final.read_bytes() == b"new" and os.path.samefile(made, final)
    assert sorted(p.name for p in final.parent.iterdir()) == ["a.iso"]


def test_publishing_the_same_file_again_leaves_no_temp(tmp_path: Path) -> None:
    made = tmp_path / "a.iso"
    made.write_bytes(b"x")
    final = tmp_path / "dist" / "a.iso"
    publish.link_into_place(made, final)
    publish.link_into_place(made, final)  # rename(2) between two links of one inode would keep the temp
    assert sorted(p.name for p in final.parent.iterdir()) == ["a.iso"]


@pytest.mark.parametrize("code", [errno.EXDEV, errno.EPERM])
def test_where_no_link_can_be_made_the_file_is_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      code: int) -> None:
    made = tmp_path / "a.iso"
    made.write_bytes(b"bytes" * 1000)
    made.chmod(0o644)

    def no_link(_src: object, _dst: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(publish.os, "link", no_link)
    final = tmp_path / "dist" / "a.iso"
    old_umask = os.umask(0o077)  # the copy keeps the writer's mode whatever the umask
    try:
        publish.link_into_place(made, final)
    finally:
        os.umask(old_umask)
    assert final.read_bytes() == made.read_bytes() and not os.path.samefile(made, final)
    assert final.stat().st_mode & 0o777 == made.stat().st_mode & 0o777
    assert sorted(p.name for p in final.parent.iterdir()) == ["a.iso"]


def test_a_failed_link_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = tmp_path / "a.iso"
    made.write_bytes(b"new")
    final = tmp_path / "dist" / "a.iso"
    final.parent.mkdir()
    final.write_bytes(b"old")

    def full(_src: object, _dst: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(publish.os, "link", full)
    with pytest.raises(OSError):
        publish.link_into_place(made, final)
    assert final.read_bytes() == b"old"
    assert sorted(p.name for p in final.parent.iterdir()) == ["a.iso"]


def test_a_set_is_linked_whole_before_any_file_is_renamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure (or a kill) while the set is being linked leaves dist/ as it was: renames come last."""
    made, dist = tmp_path / "build", tmp_path / "dist"
    (made / "gt").mkdir(parents=True)
    (dist / "gt").mkdir(parents=True)
    for name in ("a.iso", "b.vhd", "gt/t.iso"):
        (made / name).write_bytes(b"new " + name.encode())
        (dist / name).write_bytes(b"old " + name.encode())
    real = publish._link_or_copy

    def failing_on_b(src: Path, dst: Path) -> None:
        if src.name == "b.vhd":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(src, dst)

    monkeypatch.setattr(publish, "_link_or_copy", failing_on_b)
    singles = [(made / "a.iso", dist / "a.iso"), (made / "b.vhd", dist / "b.vhd")]
    with pytest.raises(OSError):
        publish._publish_all(singles, (made / "gt/t.iso",), dist / "gt", made / "gt")
    assert {p.relative_to(dist).as_posix(): p.read_bytes() for p in dist.rglob("*") if p.is_file()} == {
        "a.iso": b"old a.iso", "b.vhd": b"old b.vhd", "gt/t.iso": b"old gt/t.iso"}
    monkeypatch.setattr(publish, "_link_or_copy", real)
    publish._publish_all(singles, (made / "gt/t.iso",), dist / "gt", made / "gt")
    assert {p.relative_to(dist).as_posix(): p.read_bytes() for p in dist.rglob("*") if p.is_file()} == {
        "a.iso": b"new a.iso", "b.vhd": b"new b.vhd", "gt/t.iso": b"new gt/t.iso"}
