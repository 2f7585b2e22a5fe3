"""The aero-media CLI: Aero-compatible build-iso/verify-iso, list-specs, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aero_media.cli import main
from aero_media.media.files import MediaFile
from aero_media.media.isowriter import write_iso
from aero_media.spec.types import Stage
from tests.lib.project import REPO, expanded_sample, make_project
from tests.lib.trees import make_pack

SAMPLE: Path = Path()


@pytest.fixture(autouse=True, scope="module")
def _sample(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The sample pack as doit expands it (build/sample/pack): what build-iso and check are given."""
    global SAMPLE
    SAMPLE = expanded_sample(tmp_path_factory.mktemp("sample") / "pack")


def test_build_iso_then_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "drivers.iso"
    rc = main(["--root", str(REPO), "build-iso", "--drivers-root", str(SAMPLE), "--output", str(out),
               "--label", "MY_LABEL", "--source-date-epoch", "1700000000", "--allow-placeholder-catalogs"])
    assert rc == 0 and out.is_file()
    assert f"Wrote {out}" in capsys.readouterr().out
    assert main(["verify-iso", "--iso", str(out), "--report", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and report["label"] == "MY_LABEL"
    assert sorted(p.name for p in out.parent.iterdir()) == ["drivers.iso"]


def test_build_iso_is_deterministic(tmp_path: Path) -> None:
    for name in ("a.iso", "b.iso"):
        assert main(["build-iso", "--drivers-root", str(SAMPLE), "--output", str(tmp_path / name),
                     "--source-date-epoch", "5", "--allow-placeholder-catalogs"]) == 0
    assert (tmp_path / "a.iso").read_bytes() == (tmp_path / "b.iso").read_bytes()


def test_build_iso_require_arch_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = make_pack(tmp_path / "pack", {"viostor": ("amd64",), "netkvm": ("amd64",)})
    rc = main(["build-iso", "--drivers-root", str(pack), "--output", str(tmp_path / "x.iso"),
               "--require-arch", "both", "--allow-placeholder-catalogs"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error: driver 'viostor' (virtio-blk) not found for x86" in err
    assert not (tmp_path / "x.iso").exists()
    assert main(["build-iso", "--drivers-root", str(pack), "--output", str(tmp_path / "x.iso"),
                 "--require-arch", "amd64", "--allow-placeholder-catalogs"]) == 0


def test_verify_iso_reports_missing_required_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    iso = tmp_path / "foreign.iso"
    write_iso([MediaFile("README.txt", data=b"r"), MediaFile("win7/x86/viostor/viostor.inf", data=b"i")], iso, "X", 0)
    assert main(["verify-iso", "--iso", str(iso), "--require-arch", "x86"]) == 1
    err = capsys.readouterr().err
    assert "missing required file THIRD_PARTY_NOTICES.md" in err
    assert "missing required file win7/x86/netkvm/netkvm.inf" in err
    assert "amd64" not in err


def test_verify_iso_detects_tampering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    iso = tmp_path / "d.iso"
    assert main(["build-iso", "--drivers-root", str(SAMPLE), "--output", str(iso),
                 "--allow-placeholder-catalogs"]) == 0
    data = bytearray(iso.read_bytes())
    marker = b"AERO STAND-IN"
    at = data.index(marker)
    data[at:at + len(marker)] = b"EVIL STAND-IN"
    iso.write_bytes(bytes(data))
    assert main(["verify-iso", "--iso", str(iso)]) == 1
    assert "differs from manifest.json" in capsys.readouterr().err


def test_verify_iso_missing_file_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify-iso", "--iso", str(tmp_path / "nope.iso")]) == 2
    assert "nope.iso: no such file" in capsys.readouterr().err


def test_list_and_show_specs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path)
    assert main(["--root", str(root), "list-specs"]) == 0
    out = capsys.readouterr().out
    assert "sample" in out and "pack-dir" in out and "yes" in out
    assert main(["--root", str(root), "show-spec", "sample"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["slices"]["drivers_iso"]["out"] == {"filename": "aero-virtio-win7-drivers.iso",
                                                     "volume_label": "AERO_VIRTIO"}
    assert shown["slices"]["drivers_iso"]["winpe"] is True
    # Every stage's slice, by the stages' one list.
    assert set(shown["slices"]) == {s.value for s in Stage}
    assert main(["--root", str(root), "show-spec", "nope"]) == 2
    assert "no spec named 'nope'" in capsys.readouterr().err


def test_show_spec_names_per_arch_winpe_drivers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.lib.project import sample_spec_data, write_spec

    root = make_project(tmp_path)
    data = sample_spec_data(name="perarch", default=False)
    data["media"]["winpe_drivers"] = "per-arch"
    write_spec(root, "perarch", data)
    assert main(["--root", str(root), "show-spec", "perarch"]) == 0
    slices = json.loads(capsys.readouterr().out)["slices"]
    assert {slices[s]["winpe"] for s in ("drivers_iso", "arch_drivers_iso", "fat_disk", "service")} == {"per-arch"}


def test_bad_spec_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path)
    (root / "specs/bad.yaml").write_text("schema_version: 2\n")
    assert main(["--root", str(root), "list-specs"]) == 2
    out = capsys.readouterr()
    assert "specs/bad.yaml:1:17: /schema_version" in out.out and "1 broken spec(s): specs/bad.yaml" in out.err


def test_usage_error_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "aero_media", "build-iso"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "--drivers-root" in proc.stderr


def test_build_command_runs_doit(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "aero_media", "--root", str(root), "build", "sample"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert (root / "dist/sample/aero-virtio-win7-drivers.iso").is_file()


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = SAMPLE
    assert main(["check", str(sample)]) == 1
    captured = capsys.readouterr()
    assert "placeholder catalog" in captured.err and "12 error(s)" in captured.out
    assert main(["check", str(sample), "--allow-placeholder-catalogs", "--json", str(tmp_path / "r.json")]) == 0
    reports = json.loads((tmp_path / "r.json").read_text())
    assert len(reports) == 6 and {r["arch"] for r in reports} == {"x86", "amd64"}
    assert main(["check", str(sample), "--allow-placeholder-catalogs", "--warnings-as-errors"]) == 1
    # A Windows 10 INF in a w7 folder is an error that names the reason.
    pkg = tmp_path / "w7" / "amd64" / "viostor"
    import shutil

    shutil.copytree(sample / "win7/amd64/viostor", pkg)
    inf = pkg / "viostor.inf"
    inf.write_bytes(inf.read_bytes().replace(b"NTamd64.6.1", b"NTamd64.10.0"))
    capsys.readouterr()
    assert main(["check", str(pkg), "--allow-placeholder-catalogs"]) == 1
    assert "only has NTamd64.10.0 models: this is a Windows 10 driver" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "nope")]) == 2


def test_verify_iso_broken_manifest_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    iso = tmp_path / "f.iso"
    write_iso([MediaFile("manifest.json", data=b"{not json"), MediaFile("README.txt", data=b"r")], iso, "X", 0)
    assert main(["verify-iso", "--iso", str(iso)]) == 1
    err = capsys.readouterr().err
    assert "manifest.json is not valid JSON" in err and "Traceback" not in err


@pytest.mark.parametrize("manifest", [b"[1, 2]", b'{"files": [{"path": 1}]}',
                                      b'{"schema_version": 1, "id": "viostor", "arch": "x86", "packages": []}'])
def test_verify_iso_foreign_manifest_is_media_from_elsewhere(tmp_path: Path, manifest: bytes,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest.json that is not ours (Aero's build.py --include-manifest writes one) is not read as ours."""
    iso = tmp_path / "f.iso"
    write_iso([MediaFile("manifest.json", data=manifest), MediaFile("README.txt", data=b"r")], iso, "X", 0)
    assert main(["verify-iso", "--iso", str(iso)]) == 1
    err = capsys.readouterr().err
    assert "missing required file THIRD_PARTY_NOTICES.md" in err and "Traceback" not in err


def test_cli_output_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build-iso", "--drivers-root", str(SAMPLE), "--output", str(tmp_path),
                 "--allow-placeholder-catalogs"]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["build-iso", "--drivers-root", str(SAMPLE), "--output", str(tmp_path / "x.iso"),
                 "--source-date-epoch", "99999999999"]) == 2
    assert "outside 0..4102444799" in capsys.readouterr().err


def test_build_iso_manifest_has_no_absolute_paths(tmp_path: Path) -> None:
    from aero_media.media.verify import read_media_manifest

    out = tmp_path / "d.iso"
    assert main(["build-iso", "--drivers-root", str(SAMPLE), "--output", str(out),
                 "--allow-placeholder-catalogs"]) == 0
    manifest = read_media_manifest(out)
    assert manifest is not None
    text = json.dumps(manifest.to_json())
    assert str(REPO) not in text and str(tmp_path) not in text and "/tmp/" not in text


@pytest.mark.parametrize(("command", "module", "verify"), [
    ("build-iso", "aero_media.media.drivers_iso", "verify_drivers_iso"),
    ("build-fat", "aero_media.media.fat_disk", "verify_fat_disk"),
])
def test_output_appears_only_once_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str,
                                           module: str, verify: str) -> None:
    """Interrupted (or failed) while verifying: nothing at --output, no temp left beside it."""
    import importlib

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), verify, interrupted)
    out = tmp_path / "out" / "media.bin"
    assert main(["--root", str(REPO), command, "--drivers-root", str(SAMPLE), "--output", str(out),
                 "--allow-placeholder-catalogs"]) == 130
    assert list(out.parent.iterdir()) == []
