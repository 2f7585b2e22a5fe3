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


def test_a_failed_rename_names_the_final_file_and_leaves_no_temp(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    made, dist = tmp_path / "build", tmp_path / "dist"
    made.mkdir()
    (made / "a.iso").write_bytes(b"new")
    real = os.replace

    def immutable(src: object, dst: object) -> None:
        if Path(str(dst)).name == "a.iso":
            raise OSError(errno.EPERM, os.strerror(errno.EPERM), str(src), None, str(dst))
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(publish.os, "replace", immutable)
    with pytest.raises(OSError) as failed:
        publish.link_into_place(made / "a.iso", dist / "a.iso")
    assert failed.value.filename == str(dist / "a.iso")
    assert list(dist.iterdir()) == []


class _FullOnClose:
    """A file that takes every write and refuses the last block when closed, as a full disk may."""

    def __init__(self, real: object) -> None:
        self._real = real

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def __enter__(self) -> _FullOnClose:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_copy_refused_when_closed_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = tmp_path / "a.json"
    made.write_bytes(b"{}")
    real_open = open

    def opening(path: object, mode: str = "r", *args: object) -> object:
        f = real_open(path, mode, *args)  # type: ignore[call-overload]
        return _FullOnClose(f) if mode == "xb" else f

    def no_link(_src: object, _dst: object) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(publish.os, "link", no_link)
    monkeypatch.setattr(publish, "open", opening, raising=False)
    final = tmp_path / "dist" / "a.json"
    with pytest.raises(OSError):
        publish.link_into_place(made, final)
    assert list(final.parent.iterdir()) == []


def test_retired_names_never_match_a_current_output_in_any_case(tmp_path: Path) -> None:
    from aero_media.paths import SpecPaths
    from aero_media.spec.load import load_spec
    from aero_media.spec.model import Context
    from tests.lib.project import make_project, sample_spec_data, write_spec

    project = make_project(tmp_path / "proj")
    data = sample_spec_data(name="c", default=False)
    data["outputs"]["drivers_iso"]["filename"] = "drivers.iso"
    data["outputs"]["fat_disk"] = {"enabled": True, "filename": "Drivers-x86.iso"}
    ctx = Context(root=project)
    paths = SpecPaths(load_spec(write_spec(project, "c", data), ctx), ctx)
    current = {p.name.casefold() for p in paths.media_files}
    assert "drivers-x86.iso" in current
    assert all(p.name.casefold() not in current for p in paths.retired_media)
