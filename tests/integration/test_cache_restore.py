"""CI restores its caches as copies: every file gets a new inode and ctime. An unchanged ISO is then
neither downloaded nor read again, and no medium is rewritten.

``actions/cache`` saves folders as a tar archive and unpacks it on the next runner, keeping each
file's mtime; the test does the same with ``shutil.copytree`` (mtimes kept to the nanosecond, as
``cp -a`` and ``tar`` keep them) into a new folder that is then moved into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from aero_media.sources.isocache import cache_file_for
from tests.lib.httpserver import serve
from tests.lib.project import make_project, run_doit
from tests.lib.upstream import make_iso, make_upstream_tree

pytestmark = pytest.mark.integration

ISO_URL_PATH = "/virtio-win/virtio-win-0.1.999.iso"

SPEC = """\
schema_version: 1
description: cache restore test
source:
  kind: virtio-win-iso
  url: "{url}"
  sha256: {sha256}
drivers:
  - {{name: viostor,  device: virtio-blk,   required: true}}
  - {{name: netkvm,   device: virtio-net,   required: false}}
checks:
  placeholder_catalogs: allow
"""


def executed(out: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\.  (\S+)", out, re.M)}


def restore_as_actions_cache_does(folder: Path) -> None:
    """Replace ``folder`` by a copy of itself: new inodes and ctimes, the same bytes and mtimes."""
    fresh = folder.with_name(folder.name + ".restored")
    shutil.copytree(folder, fresh, symlinks=True)
    shutil.rmtree(folder)
    fresh.rename(folder)


def spy_hashes(mp: pytest.MonkeyPatch) -> list[Path]:
    """Every file the hash memo reads whole, from now on (the list fills as the build runs in process)."""
    import aero_media.hashmemo

    real = aero_media.hashmemo.sha256_file
    hashed: list[Path] = []

    def spy(path: Path, *args: object, **kwargs: object) -> tuple[str, int]:
        hashed.append(Path(path))
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    mp.setattr(aero_media.hashmemo, "sha256_file", spy)
    return hashed


def identities(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file's (inode, mtime_ns, ctime_ns): a rewrite, even of the same bytes, changes them."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_ctime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(params=["downloaded", "placed-by-hand"])
def built(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path, Path]:
    """A project whose spec downloads its ISO (from a local server, now closed), built once: (project, cache, ISO).

    ``placed-by-hand``: the ISO was copied into the cache entry, as the offline hint says; the build
    proves it in the background, and the proof writes the record.
    """
    cache = tmp_path / "cache"
    monkeypatch.setenv("AERO_MEDIA_CACHE", str(cache))
    tree = tmp_path / "virtio-win"
    make_upstream_tree(tree)
    iso = make_iso(tree, tmp_path / "virtio-win.iso")
    digest = hashlib.sha256(iso.read_bytes()).hexdigest()
    project = make_project(tmp_path / "proj", with_sample=False)
    with serve({ISO_URL_PATH: iso}) as server:
        url = server.url(ISO_URL_PATH)
        (project / "specs" / "t.yaml").write_text(SPEC.format(url=url, sha256=digest))
        if request.param == "placed-by-hand":
            entry = cache_file_for(cache, url, digest)
            entry.parent.mkdir(parents=True)
            shutil.copyfile(iso, entry)
        assert run_doit(project, "build:t") == 0
        assert (server.requests == []) == (request.param == "placed-by-hand")
    assert executed(capsys.readouterr().err) >= {"fetch:t", "extract:t", "drivers_iso:t"}
    cached = [p for p in cache.rglob("*.iso")]
    assert len(cached) == 1 and cached[0].read_bytes() == iso.read_bytes()
    return project, cache, cached[0]


def test_restored_caches_read_no_iso_and_rewrite_no_medium(built: tuple[Path, Path, Path],
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    project, cache, cached_iso = built
    old_inode = cached_iso.stat().st_ino
    for folder in (cache, project / "build", project / "dist"):
        restore_as_actions_cache_does(folder)
    assert cached_iso.stat().st_ino != old_inode

    hashed = spy_hashes(monkeypatch)
    media_before = identities(project / "dist")
    # The server is closed: a download attempt would fail the run.
    assert run_doit(project, "build:t") == 0
    assert executed(capsys.readouterr().err) == set()  # every task up to date: extraction did not open the ISO
    assert all(p.suffix != ".iso" or cache not in p.parents for p in hashed), hashed
    assert identities(project / "dist") == media_before  # no medium rewritten, not even with the same bytes
    # The restored media were hashed once (their stat is new); the next run only stats.
    hashed.clear()
    assert run_doit(project, "build:t") == 0
    assert hashed == []


def test_an_edit_of_the_cached_iso_is_still_noticed(built: tuple[Path, Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The record beside a cached ISO vouches only for the size and mtime it was proven with."""
    project, cache, cached_iso = built
    restore_as_actions_cache_does(cache)
    data = bytearray(cached_iso.read_bytes())
    data[-1] ^= 0x01  # past the last file: the ISO still reads the same, only its hash tells
    cached_iso.write_bytes(bytes(data))  # an ordinary write: new mtime
    assert run_doit(project, "build:t") != 0  # the cache entry is proven damaged (and deleted); the server is gone
    assert not cached_iso.exists()
    capsys.readouterr()


def test_a_record_that_is_not_ours_is_not_trusted(built: tuple[Path, Path, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A record whose size or digest does not describe the entry makes the restored ISO be hashed again."""
    project, cache, cached_iso = built
    side = cached_iso.with_name(cached_iso.name + ".json")
    record = json.loads(side.read_text())
    record["size"] += 1
    side.write_text(json.dumps(record))
    restore_as_actions_cache_does(cache)
    with pytest.MonkeyPatch.context() as mp:
        calls = spy_hashes(mp)
        assert run_doit(project, "build:t") == 0
    assert cached_iso in calls  # re-read, and proven again
    capsys.readouterr()


def test_a_local_iso_outside_the_cache_is_read_again_when_its_ctime_changes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A user's own ISO (source.path) has no record: a new inode or ctime is hashed again, as the design promises."""
    tree = tmp_path / "virtio-win"
    make_upstream_tree(tree)
    iso = make_iso(tree, tmp_path / "isos" / "virtio-win.iso")
    project = make_project(tmp_path / "proj", with_sample=False)
    (project / "specs" / "t.yaml").write_text(SPEC.replace('url: "{url}"', f'path: "{iso}"').format(
        sha256=hashlib.sha256(iso.read_bytes()).hexdigest()))
    assert run_doit(project, "build:t") == 0
    restore_as_actions_cache_does(iso.parent)
    with pytest.MonkeyPatch.context() as mp:
        calls = spy_hashes(mp)
        assert run_doit(project, "build:t") == 0
    assert iso in calls
    capsys.readouterr()
    assert os.path.isfile(iso)
