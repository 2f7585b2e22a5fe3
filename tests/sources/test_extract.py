"""The virtio-win ISO source end to end: download, extract, provenance, notices, incremental reruns."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from aero_media.media.verify import read_iso
from aero_media.sources.isoread import IsoTree
from tests.lib.httpserver import serve
from tests.lib.project import make_project, run_doit, write_spec
from tests.lib.upstream import HOSTILE_KINDS, make_hostile_iso, make_iso, make_upstream_tree

DRIVERS = [
    {"name": "viostor", "device": "virtio-blk", "required": True},
    {"name": "netkvm", "device": "virtio-net", "required": True},
    {"name": "vioinput", "device": "virtio-input", "required": False},
    {"name": "viosnd", "device": "virtio-snd", "required": False},
]


def executed(out: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\.  (\S+)", out, re.M)}


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def upstream_iso(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    work = tmp_path_factory.mktemp("upstream")
    files = make_upstream_tree(work / "src")
    return make_iso(work / "src", work / "virtio-win-0.1.285.iso", style="rr"), files


def iso_spec(root: Path, source: dict[str, Any], **extra: Any) -> Path:
    # Fixture catalogs are placeholders: the checks of real catalogs are tested in test_checks.py.
    extra.setdefault("checks", {"placeholder_catalogs": "allow"})
    data = {"schema_version": 1, "name": "vw", "source": {"kind": "virtio-win-iso", **source}, "drivers": DRIVERS,
            **extra}
    return write_spec(root, "vw", data)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AERO_MEDIA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AERO_MEDIA_PROGRESS", "never")
    return make_project(tmp_path / "proj", with_sample=False)


def test_download_extract_build_then_noop(project: Path, upstream_iso: tuple[Path, dict[str, bytes]],
                                           capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    iso, files = upstream_iso
    data = iso.read_bytes()
    with serve({"/virtio-win-0.1.285.iso": data}) as server:
        iso_spec(project, {"url": server.url("/virtio-win-0.1.285.iso"), "sha256": sha(data)})
        assert run_doit(project, "build:vw") == 0
        out = capsys.readouterr().err
        assert executed(out) == {"fetch:vw", "extract:vw", "stage:vw:x86", "stage:vw:amd64", "prove:vw",
                                 "notices:vw", "drivers_iso:vw", "verify:vw", "guest_tools:vw",
                                 "verify_guest_tools:vw", "fat_disk:vw", "verify_fat_disk:vw", "publish:vw"}
        assert len(server.requests) == 1

        # Extracted bytes are the fixture's, with ordinary modes.
        extracted = project / "build/vw/extract"
        for path in ("viostor/w7/amd64/viostor.sys", "NetKVM/w7/x86/netkvm.inf",
                     "vioinput/w7/amd64/WdfCoInstaller01009.dll", "virtio-win_license.txt", "data/info.json"):
            assert (extracted / path).read_bytes() == files[path], path
            assert (extracted / path).stat().st_mode & 0o777 == 0o644
        assert not any(p.suffix == ".pdb" for p in extracted.rglob("*"))
        assert not (extracted / "viostor/w10").exists() and not (extracted / "amd64").exists()

        prov = json.loads((project / "build/vw/provenance.json").read_text())
        src = prov["source"]
        assert src["sha256"] == sha(data) and src["size"] == len(data)
        assert src["volume_label"] == "virtio-win-0.1.285" and src["version"] == "0.1.285" and src["reader"] == "rr"
        pkg = next(p for p in prov["packages"] if p["driver"] == "netkvm" and p["arch"] == "amd64")
        assert pkg["os_dir"] == "w7" and pkg["iso_dir"] == "NetKVM/w7/amd64"
        inf_ver = re.search(rb"DriverVer\s*=\s*([^\r\n;]+)", files["NetKVM/w7/amd64/netkvm.inf"])
        assert inf_ver is not None and pkg["driver_ver"] == inf_ver.group(1).decode().replace(" ", "").strip()
        rec = next(f for f in pkg["files"] if f["path"] == "netkvm.sys")
        assert rec["sha256"] == sha(files["NetKVM/w7/amd64/netkvm.sys"])
        assert {m["driver"] for m in prov["missing_optional"]} == {"viosnd"}
        text = json.dumps(prov)
        assert str(project) not in text and "/tmp" not in text and str(Path.home()) not in text

        # The media carry the licence, generated notices and the provenance.
        content = read_iso(project / "dist/vw/aero-virtio-win7-drivers.iso")
        assert "licenses/virtio-win/virtio-win_license.txt" in content.joliet
        assert "win7/amd64/vioinput/WdfCoInstaller01009.dll" in content.joliet
        notices = (project / "build/vw/notices/THIRD_PARTY_NOTICES.md").read_text()
        assert sha(data) in notices and "0.1.285" in notices and "`win7/x86/viostor/viostor.sys`" in notices

        # Second run: nothing runs, no request, no ISO opened.
        def no_open(*_a: Any, **_k: Any) -> None:
            raise AssertionError("the ISO was opened on a no-op run")

        monkeypatch.setattr(IsoTree, "open_path", no_open)
        assert run_doit(project, "build:vw") == 0
        assert executed(capsys.readouterr().err) == set()
        assert len(server.requests) == 1


def test_output_change_does_not_reextract_and_expect_rechecks(
        project: Path, upstream_iso: tuple[Path, dict[str, bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    iso, files = upstream_iso
    # With the whole ISO pinned, a partial set of payload pins is fine.
    spec = iso_spec(project, {"path": str(iso), "sha256": sha(iso.read_bytes())})
    assert run_doit(project, "build:vw") == 0
    capsys.readouterr()
    data = yaml.safe_load(spec.read_text())
    data["outputs"] = {"drivers_iso": {"volume_label": "AERO_NEW"}}
    spec.write_text(yaml.safe_dump(data))
    assert run_doit(project, "build:vw") == 0
    assert executed(capsys.readouterr().err) == {"drivers_iso:vw", "verify:vw", "guest_tools:vw",
                                                 "verify_guest_tools:vw", "publish:vw"}

    good = sha(files["viostor/w7/amd64/viostor.sys"])
    data["source"]["expect"] = {"win7/amd64/viostor/viostor.sys": good}
    spec.write_text(yaml.safe_dump(data))
    assert run_doit(project, "build:vw") == 0
    ran = executed(capsys.readouterr().err)
    assert "extract:vw" not in ran and "fetch:vw" not in ran and "stage:vw:amd64" in ran

    data["source"]["expect"] = {"win7/amd64/viostor/viostor.sys": "f" * 64}
    spec.write_text(yaml.safe_dump(data))
    assert run_doit(project, "build:vw") != 0
    out = capsys.readouterr()
    assert f"win7/amd64/viostor/viostor.sys: sha256 {good} does not match the pin {'f' * 64}" in out.out + out.err
    assert "extract:vw" not in executed(out.err)


def test_rr_joliet_style_reads_rock_ridge_names(project: Path, tmp_path: Path) -> None:
    make_upstream_tree(tmp_path / "src")
    iso = make_iso(tmp_path / "src", tmp_path / "old.iso", style="rr-joliet", label="virtio-win-0.1.171")
    iso_spec(project, {"path": str(iso)})
    assert run_doit(project, "build:vw") == 0
    prov = json.loads((project / "build/vw/provenance.json").read_text())
    assert prov["source"]["reader"] == "rr" and prov["source"]["version"] == "0.1.171"
    assert any(p["iso_dir"] == "NetKVM/w7/x86" for p in prov["packages"])


def test_missing_licence_is_an_error(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_upstream_tree(tmp_path / "src")
    (tmp_path / "src/virtio-win_license.txt").unlink()
    iso = make_iso(tmp_path / "src", tmp_path / "nolic.iso")
    iso_spec(project, {"path": str(iso)})
    assert run_doit(project, "build:vw") != 0
    out = capsys.readouterr()
    assert "no licence file at the root of the source" in out.out + out.err
    assert "source.license_file" in out.out + out.err
    lic = tmp_path / "LICENSE.txt"
    lic.write_text("Redistribution and use in source and binary forms ... Neither the name ...")
    iso_spec(project, {"path": str(iso), "license_file": str(lic)})
    assert run_doit(project, "build:vw") == 0
    assert "BSD-3-Clause" in (project / "build/vw/notices/THIRD_PARTY_NOTICES.md").read_text()


@pytest.mark.parametrize("kind", sorted(set(HOSTILE_KINDS) - {"joliet-traversal"}))
def test_hostile_isos_are_rejected_and_nothing_escapes(kind: str, project: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    hostile = make_hostile_iso(tmp_path / "evil" / f"{kind}.iso", kind)
    iso_spec(project, {"path": str(hostile.path)})
    before = {p for p in tmp_path.rglob("*")}
    rc = run_doit(project, "build:vw")
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc != 0, text
    assert "Traceback" not in text
    assert "error:" in text
    new = {p for p in tmp_path.rglob("*")} - before
    allowed = [project / "build", project / "dist", tmp_path / "cache"]
    outside = [p for p in new if p.name != ".doit.db" and not any(p.is_relative_to(a) for a in allowed)]
    assert outside == [], outside
    assert not (project / "build/vw/provenance.json").exists()
    assert not list((project / "build").rglob("evil*"))


def test_cli_extract_writes_tree_and_provenance(upstream_iso: tuple[Path, dict[str, bytes]], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from aero_media.cli import main

    iso, files = upstream_iso
    out = tmp_path / "out"
    assert main(["extract", "--virtio-win-iso", str(iso), "--out-root", str(out), "--drivers", "viostor,netkvm"]) == 0
    assert (out / "viostor/w7/x86/viostor.inf").read_bytes() == files["viostor/w7/x86/viostor.inf"]
    prov = json.loads((out / "virtio-win-provenance.json").read_text())
    assert {p["driver"] for p in prov["packages"]} == {"viostor", "netkvm"}
    assert prov["source"]["sha256"] == sha(iso.read_bytes())
    # A non-empty out-root is refused; strict optional fails on the missing viosnd.
    assert main(["extract", "--virtio-win-iso", str(iso), "--out-root", str(out)]) == 2
    assert "is not an empty folder" in capsys.readouterr().err
    assert main(["extract", "--virtio-win-iso", str(iso), "--out-root", str(tmp_path / "o2"),
                 "--strict-optional"]) == 2
    assert "optional driver 'viosnd'" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_cli_fetch(project: Path, upstream_iso: tuple[Path, dict[str, bytes]],
                   capsys: pytest.CaptureFixture[str]) -> None:
    from aero_media.cli import main

    iso, _ = upstream_iso
    data = iso.read_bytes()
    with serve({"/v.iso": data}) as server:
        iso_spec(project, {"url": server.url("/v.iso"), "sha256": sha(data)})
        assert main(["--root", str(project), "fetch", "vw"]) == 0
        assert main(["--root", str(project), "fetch", "vw"]) == 0
        assert len(server.requests) == 1
    out = capsys.readouterr().out
    assert f"sha256={sha(data)}" in out and "(download)" in out and "(cache)" in out


def test_two_specs_share_one_download_and_a_cleared_cache_refetches(
        project: Path, upstream_iso: tuple[Path, dict[str, bytes]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    iso, _ = upstream_iso
    data = iso.read_bytes()
    with serve({"/v.iso": data}) as server:
        src = {"url": server.url("/v.iso"), "sha256": sha(data)}
        iso_spec(project, src)
        other = {"schema_version": 1, "name": "vw-net", "source": {"kind": "virtio-win-iso", **src},
                 "checks": {"placeholder_catalogs": "allow"}, "target": {"arches": ["amd64"]},
                 "drivers": [{"name": "netkvm", "device": "virtio-net", "required": True}]}
        write_spec(project, "vw-net", other)
        assert run_doit(project, "build:vw", "build:vw-net") == 0
        assert len(server.requests) == 1
        capsys.readouterr()
        import shutil

        shutil.rmtree(tmp_path / "cache")
        assert run_doit(project, "build:vw") == 0
        ran = executed(capsys.readouterr().err)
        assert "fetch:vw" in ran and "extract:vw" not in ran  # same bytes again: nothing downstream reruns
        assert len(server.requests) == 2


def test_tampered_cached_iso_is_caught(project: Path, upstream_iso: tuple[Path, dict[str, bytes]],
                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    iso, files = upstream_iso
    data = iso.read_bytes()
    with serve({"/v.iso": data}) as server:
        iso_spec(project, {"url": server.url("/v.iso"), "sha256": sha(data)})
        assert run_doit(project, "build:vw") == 0
        cached = next((tmp_path / "cache").rglob("v.iso"))
        blob = bytearray(cached.read_bytes())
        inf = files["viostor/w7/amd64/viostor.inf"]
        at = blob.index(inf[:64])
        blob[at:at + 9] = b"[EVIL!!!]"
        cached.write_bytes(bytes(blob))
        capsys.readouterr()
        media = tree_bytes(project / "dist/vw")
        assert run_doit(project, "build:vw") != 0
        out = capsys.readouterr()
        text = out.out + out.err
        assert f"is damaged (sha256 {sha(bytes(blob))}, expected {sha(data)}); it was deleted" in text
        assert "run doit again: it is downloaded anew" in text
        assert not cached.exists()
        # Nothing was published from the tampered bytes: dist/ holds the media of the proven ISO.
        assert tree_bytes(project / "dist/vw") == media
        assert run_doit(project, "build:vw") == 0  # downloaded again, proven, built
        assert len(server.requests) == 2


def test_shipped_0_1_285_spec_pins_exactly_the_real_payload(realdata: Path) -> None:
    """Against the real 2025 ISO listing and INFs: every shipped file is pinned, nothing more."""
    from aero_media.spec.load import load_specs
    from aero_media.spec.model import Context
    from tests.lib.project import REPO

    spec = next(s for s in load_specs(Context(root=REPO)) if s.name == "virtio-win-0.1.285")
    listing = (realdata / "listings/virtio-win-iso-2025.txt").read_text().split()
    folders = {"viostor": "viostor", "netkvm": "NetKVM", "vioinput": "vioinput"}
    shipped = set()
    for line in listing:
        parts = line.removeprefix("cd/").split("/")
        for drv, folder in folders.items():
            if len(parts) == 4 and parts[0] == folder and parts[1] == "w7" and not parts[3].endswith(".pdb"):
                staged = f"win7/{parts[2]}/{drv}/{parts[3]}"
                if not spec.source.excludes(staged):
                    shipped.add(staged)
    assert shipped == set(spec.source.expect)
    for arch in ("x86", "amd64"):
        for drv in folders:
            inf = (realdata / "inf" / drv / arch / f"{drv}.inf").read_bytes()
            assert spec.source.expect[f"win7/{arch}/{drv}/{drv}.inf"] == sha(inf)
