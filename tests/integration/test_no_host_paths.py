"""No output carries a host path: not the project folder, not a source outside it, not the home folder."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.lib.project import make_project, run_doit, write_spec
from tests.lib.upstream import make_iso, make_upstream_tree

pytestmark = pytest.mark.integration

DRIVERS = [{"name": "viostor", "device": "virtio-blk", "required": True},
           {"name": "netkvm", "device": "virtio-net", "required": True}]


def blobs(dist: Path) -> dict[str, bytes]:
    """Every file under dist/, and every member of every zip (whose deflated bytes would hide text)."""
    out: dict[str, bytes] = {}
    for p in sorted(dist.rglob("*")):
        if not p.is_file():
            continue
        out[p.relative_to(dist).as_posix()] = p.read_bytes()
        if p.suffix == ".zip":
            with zipfile.ZipFile(p) as zf:
                for name in zf.namelist():
                    out[f"{p.relative_to(dist).as_posix()}!{name}"] = zf.read(name)
    return out


def test_no_output_names_a_host_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_MEDIA_PROGRESS", "never")
    project = make_project(tmp_path / "checkout-AbsPathProbe")
    # Sources outside the checkout, as a user points at an unpacked ISO in their home folder.
    outside = tmp_path / "home-UserNameProbe"
    make_upstream_tree(outside / "virtio-win")
    iso = make_iso(outside / "virtio-win", outside / "virtio-win.iso", style="rr")
    for kind, path in (("virtio-win-dir", outside / "virtio-win"), ("virtio-win-iso", iso)):
        name = kind.removeprefix("virtio-win-")
        write_spec(project, name, {"schema_version": 1, "name": name,
                                   "source": {"kind": kind, "path": str(path)},
                                   "drivers": DRIVERS, "checks": {"placeholder_catalogs": "allow"}})
    assert run_doit(project, "build:sample", "build:dir", "build:iso") == 0
    probes = [str(tmp_path), str(project), str(outside), "AbsPathProbe", "UserNameProbe", str(Path.home())]
    encoded = [(p, p.encode(enc)) for p in probes for enc in ("utf-8", "utf-16-be", "utf-16-le")]
    found = []
    for where, data in blobs(project / "dist").items():
        # The FAT disk is 64 MiB of mostly nothing: drop long zero runs (no probe holds 4 KiB of zeros) first.
        data = data.replace(b"\0" * 4096, b"")
        found += [f"{where} holds {p!r}" for p, e in encoded if e in data]
    assert found == []
    assert {p.name for p in (project / "dist").iterdir()} == {"sample", "dir", "iso"}
