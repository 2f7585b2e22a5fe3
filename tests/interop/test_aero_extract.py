"""`aero-media extract` as Aero's make-driver-pack.ps1 uses it.

It runs from any folder (no --root, no checkout), writes the fields of Aero's
virtio-win-provenance.json beside ours, copies the release's VERSION files, and finds
Windows 7 drivers under every OS folder name upstream and re-mastered trees use.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aero_media.sources.selection import select
from aero_media.sources.tree import DirTree
from aero_media.spec.load import spec_from_mapping
from aero_media.spec.model import Context
from aero_media.spec.types import SPEC_FIELDS, Arch
from tests.lib.project import REPO
from tests.lib.trees import package
from tests.lib.upstream import DEFAULT_LABEL, make_iso, make_upstream_tree

pytestmark = pytest.mark.integration

METADATA = {"VERSION": b"0.1.285\n", "version.txt": b"0.1.285-1\n", "virtio-win-version.txt": b"virtio-win 0.1.285\n"}


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("upstream")
    make_upstream_tree(work / "src", extra=METADATA)
    return make_iso(work / "src", work / "virtio-win-0.1.285.iso", style="rr")


def test_extract_runs_anywhere_and_writes_aeros_fields(iso: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"  # no specs/, not a checkout
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "aero_media", "extract", "--virtio-win-iso", str(iso),
                           "--out-root", "pack"], cwd=elsewhere, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = elsewhere / "pack"
    prov = json.loads((out / "virtio-win-provenance.json").read_text())
    # What make-driver-pack.ps1 takes: the ISO's hash and label.
    assert prov["virtio_win_iso"]["sha256"] == hashlib.sha256(iso.read_bytes()).hexdigest()
    assert prov["virtio_win_iso"]["volume_id"] == DEFAULT_LABEL
    assert prov["virtio_win_iso"]["path"] and not os.path.isabs(prov["virtio_win_iso"]["path"])
    assert prov["backend"] == "aero-virtio-media"
    extracted = {(e["driver"], e["arch"], e["iso_path"]) for e in prov["extracted"]}
    assert ("viostor", "amd64", "viostor/w7/amd64") in extracted and ("netkvm", "x86", "NetKVM/w7/x86") in extracted
    assert "virtio-win_license.txt" in prov["extracted_notice_files"]
    assert sorted(prov["extracted_metadata_files"]) == sorted(METADATA)
    assert prov["missing_optional"] and {m["driver"] for m in prov["missing_optional"]} == {"viosnd"}
    assert "created_utc" not in prov
    # Ours is all there too.
    assert prov["schema_version"] == 1 and prov["source"]["sha256"] == prov["virtio_win_iso"]["sha256"]
    for name, data in METADATA.items():
        assert (out / name).read_bytes() == data
    assert (out / "viostor" / "w7" / "amd64" / "viostor.inf").is_file()


def test_extract_twice_gives_the_same_provenance(iso: Path, tmp_path: Path) -> None:
    from aero_media.cli import main

    texts = []
    for name in ("a", "b"):
        assert main(["extract", "--virtio-win-iso", str(iso), "--out-root", str(tmp_path / name)]) == 0
        texts.append((tmp_path / name / "virtio-win-provenance.json").read_bytes())
    assert texts[0] == texts[1]


def _spec(tmp_path: Path, root: Path) -> object:
    data = {"schema_version": 1, "name": "t", "source": {"kind": "virtio-win-dir", "path": str(root)},
            "drivers": [{"name": "viostor", "device": "virtio-blk", "required": True}]}
    return spec_from_mapping(data, Context(root=tmp_path), SPEC_FIELDS)


@pytest.mark.parametrize("os_dir", ["w7", "win7", "Win7", "w7.1", "w7_1"])
def test_each_os_folder_name_is_found(tmp_path: Path, os_dir: str) -> None:
    root = tmp_path / "tree"
    for arch in ("x86", "amd64"):
        package(root / "viostor" / os_dir / arch, "viostor", arch)
    sel = select(DirTree(root).entries(), _spec(tmp_path, root), "tree")  # type: ignore[arg-type]
    assert {(p.arch.value, p.source_dir) for p in sel.packages} == {
        ("x86", f"viostor/{os_dir}/x86"), ("amd64", f"viostor/{os_dir}/amd64")}


def test_2k8r2_serves_amd64_only_and_w7_wins(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    package(root / "viostor" / "w7" / "x86", "viostor", "x86")
    package(root / "viostor" / "2k8R2" / "amd64", "viostor", "amd64")
    sel = select(DirTree(root).entries(), _spec(tmp_path, root), "tree")  # type: ignore[arg-type]
    assert {p.source_dir for p in sel.packages} == {"viostor/w7/x86", "viostor/2k8R2/amd64"}
    # All names present: the table's order decides, w7 first.
    for os_dir in Arch.AMD64.os_dirs:
        package(root / "viostor" / os_dir / "amd64", "viostor", "amd64")
    sel = select(DirTree(root).entries(), _spec(tmp_path, root), "tree")  # type: ignore[arg-type]
    assert {p.source_dir for p in sel.for_arch(Arch.AMD64)} == {"viostor/w7/amd64"}
    assert "2k8R2" not in Arch.X86.os_dirs


def test_extract_from_a_checkout_copy_without_specs(iso: Path, tmp_path: Path) -> None:
    """The schema and contract ship with the package: no specs/ folder is needed anywhere near."""
    assert not (tmp_path / "specs").exists()
    proc = subprocess.run([sys.executable, "-m", "aero_media", "extract", "--virtio-win-iso", str(iso),
                           "--out-root", str(tmp_path / "o"), "--drivers", "viostor,netkvm"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
