"""Publishing: the media are made and verified under build/<spec>/media/, and reach dist/ together once
verified and proven. A pinned ISO's media are made while the ISO is still being hashed; nothing a wrong
ISO led to is published, and a medium records the digest the ISO was proven to have."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from aero_media.paths import Run
from aero_media.spec.load import load_spec
from aero_media.spec.model import Context
from tests.lib.project import make_project, run_doit, write_spec
from tests.lib.upstream import make_iso, make_upstream_tree

pytestmark = pytest.mark.integration

MEDIA_TASKS = ("notices", "drivers_iso", "fat_disk", "guest_tools", "verify", "verify_fat_disk", "verify_guest_tools")


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("upstream") / "virtio-win"
    make_upstream_tree(tree)
    return make_iso(tree, tree.parent / "virtio-win.iso")


def iso_project(root: Path, iso: Path, pin: str | None) -> Path:
    project = make_project(root, with_sample=False)
    write_spec(project, "t", {
        "schema_version": 1, "name": "t", "default": True,
        "drivers": [{"name": "viostor", "device": "virtio-blk", "required": True},
                    {"name": "netkvm", "device": "virtio-net", "required": False}],
        "source": {"kind": "virtio-win-iso", "path": str(iso), **({"sha256": pin} if pin else {})},
        "checks": {"placeholder_catalogs": "allow"}})
    return project


def task_order(err: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^\.  (\S+)", err, re.M)]


def the_run(project: Path) -> Run:
    ctx = Context(root=project)
    return Run(load_spec(project / "specs" / "t.yaml", ctx), ctx, 0)


def notices_digest(run: Run) -> str:
    text = (run.paths.notices_dir / "THIRD_PARTY_NOTICES.md").read_text()
    found = re.search(r"Source ISO sha256:\*\* `([0-9a-f]{64})`", text)
    assert found, text
    return found.group(1)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_pinned_isos_media_are_made_before_the_proof_and_published_after_it(
        tmp_path: Path, iso: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = iso_project(tmp_path / "proj", iso, sha(iso))
    assert run_doit(project) == 0
    order = task_order(capsys.readouterr().err)
    media = [t for t in order if t.split(":")[0] in MEDIA_TASKS]
    assert len(media) == len(MEDIA_TASKS)
    # Serially, every medium and its verify run while the ISO's hash runs, before prove joins it.
    assert max(map(order.index, media)) < order.index("prove:t") < order.index("publish:t")
    run = the_run(project)
    published = [*run.paths.media_files, *run.paths.guest_tools_files]
    assert len(published) == 8
    for made, shipped in zip([*run.pending.media_files, *run.pending.guest_tools_files], published, strict=True):
        assert os.path.samefile(made, shipped)  # linked, not copied
    assert notices_digest(run) == sha(iso)
    # The memo knows every published file under its stat after the link: a no-op run runs and hashes nothing.
    assert run_doit(project) == 0
    assert task_order(capsys.readouterr().err) == []


def test_a_wrong_iso_publishes_nothing_and_the_right_pin_rebuilds_what_named_the_wrong_one(
        tmp_path: Path, iso: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "0" * 64
    project = iso_project(tmp_path / "proj", iso, wrong)
    assert run_doit(project) != 0
    err = capsys.readouterr().err
    assert "prove:t" in task_order(err) and "publish:t" not in task_order(err)
    run = the_run(project)
    assert run.pending.drivers_iso.is_file()  # made while the ISO was hashed, never published
    assert not run.paths.dist.exists()
    assert notices_digest(run) == wrong
    # The pin corrected: every medium that recorded the wrong digest is made again before it is published.
    project_spec = project / "specs" / "t.yaml"
    project_spec.write_text(project_spec.read_text().replace(wrong, sha(iso)))
    assert run_doit(project) == 0
    order = task_order(capsys.readouterr().err)
    assert {"notices:t", "drivers_iso:t", "fat_disk:t", "guest_tools:t", "publish:t"} <= set(order)
    run = the_run(project)
    assert notices_digest(run) == sha(iso)
    assert run.paths.drivers_iso.is_file()


def test_a_published_set_stays_when_a_later_iso_is_wrong(tmp_path: Path, iso: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    project = iso_project(tmp_path / "proj", iso, sha(iso))
    assert run_doit(project) == 0
    run = the_run(project)
    before = {p: sha(p) for p in run.paths.dist.rglob("*") if p.is_file()}
    spec = project / "specs" / "t.yaml"
    spec.write_text(spec.read_text().replace(sha(iso), "f" * 64))
    assert run_doit(project) != 0
    capsys.readouterr()
    assert {p: sha(p) for p in run.paths.dist.rglob("*") if p.is_file()} == before


def test_an_unpinned_isos_media_wait_for_its_proof(tmp_path: Path, iso: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    project = iso_project(tmp_path / "proj", iso, None)
    assert run_doit(project) == 0
    order = task_order(capsys.readouterr().err)
    assert order.index("prove:t") < min(order.index(t) for t in order if t.split(":")[0] in MEDIA_TASKS)
    assert notices_digest(the_run(project)) == sha(iso)


def test_a_medium_the_spec_stops_making_leaves_dist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    project = make_project(tmp_path / "proj")
    spec = project / "specs" / "sample.yaml"
    data = yaml.safe_load(spec.read_text())
    data["media"]["winpe_drivers"] = "per-arch"
    spec.write_text(yaml.safe_dump(data))
    assert run_doit(project) == 0
    dist = project / "dist" / "sample"
    made = {"aero-virtio-win7-drivers-fat.vhd", "aero-virtio-win7-drivers-x86.iso",
            "aero-virtio-win7-drivers-amd64.iso"}
    assert made <= {p.name for p in dist.iterdir()}
    (dist / "notes.txt").write_text("mine")  # not a name the spec gives: never touched
    data["media"]["winpe_drivers"] = True
    data["outputs"]["fat_disk"] = {"enabled": False}
    spec.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert run_doit(project) == 0
    assert "what the spec no longer makes" in capsys.readouterr().err
    left = {p.name for p in dist.iterdir()}
    assert not {n for n in left if n.startswith(tuple(made))}, left
    assert {"aero-virtio-win7-drivers.iso", "guest-tools", "notes.txt"} <= left
    assert (dist / "notes.txt").read_text() == "mine"


def test_clean_never_removes_a_users_folder_of_a_retired_name(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    assert run_doit(project) == 0
    mine = project / "dist" / "sample" / "aero-virtio-win7-drivers-x86.iso"  # a one-arch name the sample does not make
    mine.mkdir()
    (mine / "my-notes.txt").write_text("mine")
    assert run_doit(project) == 0
    assert run_doit(project, "clean", "publish:sample") == 0
    assert (mine / "my-notes.txt").read_text() == "mine"
