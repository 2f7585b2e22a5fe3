"""The committed sample pack is exactly what its generator writes; it holds recipes, never binaries."""

from __future__ import annotations

from pathlib import Path

from aero_media.devtools.samplepack import main, sample_files
from aero_media.spec.load import load_contract
from tests.lib.project import REPO


def test_committed_pack_matches_generator() -> None:
    assert main(["--check", str(REPO / "prebuilt/sample")]) == 0


def test_check_detects_drift(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    (tmp_path / "win7/x86/viostor/viostor.inf").write_bytes(b"edited")
    assert main(["--check", str(tmp_path)]) == 1


def test_no_binary_is_committed() -> None:
    files = sample_files(load_contract(REPO / "specs/devices.yaml"))
    assert not any(p.lower().endswith((".sys", ".dll")) for p in files)
    assert any(p.endswith(".sys.pestub") for p in files)
    on_disk = [p for p in (REPO / "prebuilt/sample").rglob("*") if p.suffix.lower() in (".sys", ".dll")]
    assert on_disk == []
