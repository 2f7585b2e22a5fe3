"""Selection and staging: both directory layouts, the required/optional rules, hostile trees."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from aero_media.devtools.pestub import build_pe
from aero_media.errors import SourceError, UnsafePathError
from aero_media.paths import Run, SpecPaths
from aero_media.sources.selection import select
from aero_media.sources.tree import DirTree, Entry, EntryKind
from aero_media.spec.load import load_spec
from aero_media.spec.model import Context, Spec
from aero_media.spec.types import Arch
from aero_media.stage.staging import stage_arch
from tests.lib.project import make_project, write_spec
from tests.lib.trees import make_pack, package

DRIVERS = [
    {"name": "viostor", "device": "virtio-blk", "required": True},
    {"name": "netkvm", "device": "virtio-net", "required": True},
    {"name": "vioinput", "device": "virtio-input", "required": False},
    {"name": "viosnd", "device": "virtio-snd", "required": False},
]


def spec_for(root: Path, source: dict[str, Any], **extra: Any) -> Spec:
    make_project(root, with_sample=False)
    extra.setdefault("checks", {"placeholder_catalogs": "allow"})
    data = {"schema_version": 1, "name": "t", "source": source, "drivers": DRIVERS, **extra}
    return load_spec(write_spec(root, "t", data), Context(root=root))


def staged(root: Path, spec: Spec, arch: Arch) -> dict[str, Any]:
    return stage_arch(Run(spec, Context(root=root), 315532800), arch).to_json()


# --- Aero pack layout ---------------------------------------------------------------


def test_pack_dir_stages_each_arch_with_manifest(tmp_path: Path) -> None:
    make_pack(tmp_path / "pack", {"viostor": ("x86", "amd64"), "netkvm": ("x86", "amd64")})
    spec = spec_for(tmp_path, {"kind": "pack-dir", "path": "pack"})
    m = staged(tmp_path, spec, Arch.AMD64)
    paths = [f["path"] for f in m["files"]]
    assert paths == sorted(paths)
    assert "win7/amd64/viostor/viostor.sys" in paths and not any("/x86/" in p for p in paths)
    out = SpecPaths(spec, Context(root=tmp_path))
    on_disk = json.loads(out.stage_manifest(Arch.AMD64).read_text())
    assert on_disk == m
    sys_file = out.stage_dir(Arch.AMD64) / "viostor" / "viostor.sys"
    assert sys_file.read_bytes() == (tmp_path / "pack/win7/amd64/viostor/viostor.sys").read_bytes()
    rec = next(f for f in m["files"] if f["path"].endswith("viostor.sys"))
    import hashlib

    assert rec["sha256"] == hashlib.sha256(sys_file.read_bytes()).hexdigest()
    assert rec["size"] == sys_file.stat().st_size
    assert set(m["warnings"]) == {"optional driver 'vioinput' not found for any arch; media will not include it",
                                         "optional driver 'viosnd' not found for any arch; media will not include it"}


def test_restage_replaces_old_tree(tmp_path: Path) -> None:
    make_pack(tmp_path / "pack", {"viostor": ("x86", "amd64"), "netkvm": ("x86", "amd64")})
    spec = spec_for(tmp_path, {"kind": "pack-dir", "path": "pack"})
    (tmp_path / "pack/win7/x86/netkvm/notes.txt").write_text("old")
    staged(tmp_path, spec, Arch.X86)
    stage_dir = SpecPaths(spec, Context(root=tmp_path)).stage_dir(Arch.X86)
    assert (stage_dir / "netkvm" / "notes.txt").exists()
    (tmp_path / "pack/win7/x86/netkvm/notes.txt").unlink()
    m = staged(tmp_path, spec, Arch.X86)
    assert "win7/x86/netkvm/notes.txt" not in [f["path"] for f in m["files"]]
    assert not (stage_dir / "netkvm" / "notes.txt").exists()


def test_required_missing_names_driver_arch_and_places(tmp_path: Path) -> None:
    make_pack(tmp_path / "pack", {"viostor": ("x86", "amd64"), "netkvm": ("x86",)})
    spec = spec_for(tmp_path, {"kind": "pack-dir", "path": "pack"})
    with pytest.raises(SourceError) as exc:
        staged(tmp_path, spec, Arch.X86)
    text = exc.value.render()
    assert "driver 'netkvm' (virtio-net) not found for amd64 in pack" in text
    assert "looked at: win7/amd64/netkvm/, win7/x64/netkvm/" in text
    assert not SpecPaths(spec, Context(root=tmp_path)).stage_manifest(Arch.X86).exists()


def test_required_only_on_required_arches(tmp_path: Path) -> None:
    make_pack(tmp_path / "pack", {"viostor": ("amd64",), "netkvm": ("amd64",)})
    spec = spec_for(tmp_path, {"kind": "pack-dir", "path": "pack"}, target={"arches": ["amd64"]})
    assert len(staged(tmp_path, spec, Arch.AMD64)["packages"]) == 2


def test_optional_on_one_arch_is_dropped_from_both(tmp_path: Path) -> None:
    make_pack(tmp_path / "pack", {"viostor": ("x86", "amd64"), "netkvm": ("x86", "amd64"), "vioinput": ("amd64",)})
    spec = spec_for(tmp_path, {"kind": "pack-dir", "path": "pack"})
    m = staged(tmp_path, spec, Arch.AMD64)
    assert [p["driver"] for p in m["packages"]] == ["viostor", "netkvm"]
    assert "optional driver 'vioinput' exists only for amd64; dropped from all arches" in m["warnings"]
    assert {"driver": "vioinput", "arch": "amd64", "reason": "dropped: missing for x86"} in m["missing_optional"]


def test_strict_optional_fails(tmp_path: Path) -> None:
    make_pack(tmp_path / "pack", {"viostor": ("x86", "amd64"), "netkvm": ("x86", "amd64"), "vioinput": ("amd64",)})
    spec = spec_for(tmp_path, {"kind": "pack-dir", "path": "pack"}, optional="strict")
    with pytest.raises(SourceError) as exc:
        staged(tmp_path, spec, Arch.AMD64)
    text = exc.value.render()
    assert "optional driver 'vioinput' (virtio-input) not found for x86" in text
    assert "optional driver 'viosnd'" in text and "optional: strict" in text


def test_all_optional_present_under_strict(tmp_path: Path) -> None:
    make_pack(tmp_path / "pack", {d["name"]: ("x86", "amd64") for d in DRIVERS})
    spec = spec_for(tmp_path, {"kind": "pack-dir", "path": "pack"}, optional="strict")
    assert len(staged(tmp_path, spec, Arch.X86)["packages"]) == 4


def test_pdb_files_are_not_staged(tmp_path: Path) -> None:
    make_pack(tmp_path / "pack", {"viostor": ("x86", "amd64"), "netkvm": ("x86", "amd64")})
    (tmp_path / "pack/win7/x86/viostor/viostor.pdb").write_bytes(b"pdb")
    spec = spec_for(tmp_path, {"kind": "pack-dir", "path": "pack"})
    assert not any(f["path"].endswith(".pdb") for f in staged(tmp_path, spec, Arch.X86)["files"])


# --- hostile trees ------------------------------------------------------------------


def _hostile(tmp_path: Path) -> Spec:
    make_pack(tmp_path / "pack", {"viostor": ("x86", "amd64"), "netkvm": ("x86", "amd64")})
    return spec_for(tmp_path, {"kind": "pack-dir", "path": "pack"})


def test_symlink_in_package_is_refused(tmp_path: Path) -> None:
    spec = _hostile(tmp_path)
    os.symlink("/etc/passwd", tmp_path / "pack/win7/x86/viostor/evil.sys")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        staged(tmp_path, spec, Arch.X86)
    assert not (tmp_path / "build/t/stage/win7/x86").exists()


def test_symlinked_package_folder_is_refused(tmp_path: Path) -> None:
    spec = _hostile(tmp_path)
    target = tmp_path / "pack/win7/x86/netkvm"
    os.rename(target, tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", target)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        staged(tmp_path, spec, Arch.X86)


def test_case_clash_is_refused(tmp_path: Path) -> None:
    spec = _hostile(tmp_path)
    (tmp_path / "pack/win7/x86/viostor/VIOSTOR.SYS").write_bytes(b"x")
    with pytest.raises(UnsafePathError) as exc:
        staged(tmp_path, spec, Arch.X86)
    assert "differ only by case" in exc.value.render() and "VIOSTOR.SYS" in exc.value.render()


def test_case_clash_between_driver_folders(tmp_path: Path) -> None:
    spec = _hostile(tmp_path)
    package(tmp_path / "pack/win7/x86/NetKVM", "netkvm", "x86")
    with pytest.raises(UnsafePathError, match="differ only by case"):
        staged(tmp_path, spec, Arch.X86)


@pytest.mark.parametrize("name", ["CON.sys", "aux", "bad:name.inf", "dot."])
def test_windows_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    spec = _hostile(tmp_path)
    (tmp_path / "pack/win7/x86/viostor" / name).write_bytes(b"x")
    with pytest.raises(UnsafePathError, match=r"reserved device name|not allow|ends with a dot"):
        staged(tmp_path, spec, Arch.X86)
    assert not (tmp_path / "build/t/stage/x86.json").exists()


def test_traversal_entry_is_refused(tmp_path: Path) -> None:
    spec = _hostile(tmp_path)
    entries = DirTree(tmp_path / "pack").entries()
    entries.append(Entry("win7/x86/viostor/../../../../evil.sys", EntryKind.FILE, 3, None))
    with pytest.raises(UnsafePathError, match="could escape"):
        select(entries, spec, "hostile.iso")


# --- upstream (virtio-win) layout ----------------------------------------------------


def make_upstream(root: Path) -> None:
    """An extracted virtio-win tree with the real traps (docs/upstream.md#virtio-win-iso-layout)."""
    for arch in ("x86", "amd64"):
        package(root / "viostor/w7" / arch, "viostor", arch, extra={"viostor.pdb": b"pdb"})
        machine = 0x14C if arch == "x86" else 0x8664
        package(root / "NetKVM/w7" / arch, "netkvm", arch,
                extra={"netkvmco.dll": build_pe(machine, 2, dll=True), "readme.doc": b"doc"})
        package(root / "viostor/w10" / arch, "viostor", arch)
        package(root / "NetKVM/w8.1" / arch, "netkvm", arch)
    package(root / "viostor/2k8R2/amd64", "viostor", "amd64")
    package(root / "vioinput/2k8R2/amd64", "vioinput", "amd64")
    package(root / "amd64/w10", "viostor", "amd64")
    package(root / "i386/w10", "viostor", "x86")
    (root / "virtio-win_license.txt").write_text("licence")


def test_virtio_win_dir_picks_w7_case_insensitively(tmp_path: Path) -> None:
    make_upstream(tmp_path / "vw")
    spec = spec_for(tmp_path, {"kind": "virtio-win-dir", "path": "vw"})
    m = staged(tmp_path, spec, Arch.AMD64)
    pk = {p["driver"]: p for p in m["packages"]}
    assert pk["netkvm"]["source_dir"] == "NetKVM/w7/amd64" and pk["netkvm"]["os_dir"] == "w7"
    assert pk["viostor"]["source_dir"] == "viostor/w7/amd64"
    assert "win7/amd64/netkvm/netkvmco.dll" in [f["path"] for f in m["files"]]
    assert not any(f["path"].endswith(".pdb") for f in m["files"])
    # vioinput exists only in 2k8R2, which this spec does not allow.
    assert "vioinput" not in pk


def test_virtio_win_dir_2k8r2_fallback_for_amd64(tmp_path: Path) -> None:
    make_upstream(tmp_path / "vw")
    spec = spec_for(tmp_path, {"kind": "virtio-win-dir", "path": "vw", "os_dirs": {"amd64": ["w7", "2k8R2"]}})
    m = staged(tmp_path, spec, Arch.AMD64)
    # vioinput is found only via 2k8R2 and only for amd64: optional, so dropped from both.
    assert "optional driver 'vioinput' exists only for amd64; dropped from all arches" in m["warnings"]


def test_virtio_win_dir_never_takes_w10_or_auto_tree(tmp_path: Path) -> None:
    make_upstream(tmp_path / "vw")
    for arch in ("x86", "amd64"):
        import shutil

        shutil.rmtree(tmp_path / "vw/viostor/w7" / arch)
    spec = spec_for(tmp_path, {"kind": "virtio-win-dir", "path": "vw"})
    with pytest.raises(SourceError) as exc:
        staged(tmp_path, spec, Arch.X86)
    text = exc.value.render()
    assert "looked at: viostor/w7/x86/, viostor/w7/i386/" in text
    assert "w10" not in text


def test_i386_alias_accepted(tmp_path: Path) -> None:
    make_upstream(tmp_path / "vw")
    os.rename(tmp_path / "vw/viostor/w7/x86", tmp_path / "vw/viostor/w7/i386")
    spec = spec_for(tmp_path, {"kind": "virtio-win-dir", "path": "vw"})
    m = staged(tmp_path, spec, Arch.X86)
    assert next(p for p in m["packages"] if p["driver"] == "viostor")["source_dir"] == "viostor/w7/i386"


def test_folder_without_inf_is_not_a_package(tmp_path: Path) -> None:
    make_upstream(tmp_path / "vw")
    (tmp_path / "vw/viostor/w7/x86/viostor.inf").unlink()
    spec = spec_for(tmp_path, {"kind": "virtio-win-dir", "path": "vw"})
    with pytest.raises(SourceError, match=r"viostor/w7/x86/ \(no .inf\)"):
        staged(tmp_path, spec, Arch.X86)


def test_expect_pins_checked_after_staging(tmp_path: Path) -> None:
    make_upstream(tmp_path / "vw")
    import hashlib

    good = hashlib.sha256((tmp_path / "vw/viostor/w7/amd64/viostor.sys").read_bytes()).hexdigest()
    spec = spec_for(tmp_path, {"kind": "virtio-win-dir", "path": "vw",
                               "expect": {"win7/amd64/viostor/viostor.sys": good}})
    # Without a whole-source pin, every staged file needs one.
    with pytest.raises(SourceError) as partial:
        staged(tmp_path, spec, Arch.AMD64)
    assert "source.expect pins some files but not win7/amd64/netkvm/netkvm.cat" in partial.value.render()
    every = {}
    for drv, folder in (("viostor", "viostor"), ("netkvm", "NetKVM")):
        for f in (tmp_path / "vw" / folder / "w7/amd64").iterdir():
            if f.suffix != ".pdb":
                every[f"win7/amd64/{drv}/{f.name}"] = hashlib.sha256(f.read_bytes()).hexdigest()
    spec = spec_for(tmp_path, {"kind": "virtio-win-dir", "path": "vw", "expect": every})
    staged(tmp_path, spec, Arch.AMD64)
    # Excluded files need no pin and are not staged.
    fewer = {k: v for k, v in every.items() if not k.endswith("readme.doc")}
    spec = spec_for(tmp_path, {"kind": "virtio-win-dir", "path": "vw", "expect": fewer,
                               "exclude": ["win7/*/netkvm/README.DOC"]})
    assert "win7/amd64/netkvm/readme.doc" not in [f["path"] for f in staged(tmp_path, spec, Arch.AMD64)["files"]]
    spec = spec_for(tmp_path, {"kind": "virtio-win-dir", "path": "vw",
                               "expect": {**every, "win7/amd64/viostor/viostor.sys": "0" * 64}})
    with pytest.raises(SourceError) as exc:
        staged(tmp_path, spec, Arch.AMD64)
    assert f"win7/amd64/viostor/viostor.sys: sha256 {good} does not match the pin {'0' * 64}" in exc.value.render()
    assert not SpecPaths(spec, Context(root=tmp_path)).stage_manifest(Arch.AMD64).exists()


def test_virtio_win_dir_from_the_real_2025_listing(tmp_path: Path, realdata: Path) -> None:
    """The real ISO layout with its traps (NetKVM, 2k8R2, w8/w10/w11, root amd64/i386) and the real INFs."""
    from tests.lib.upstream import make_upstream_tree

    files = make_upstream_tree(tmp_path / "vw", listing=realdata / "listings/virtio-win-iso-2025.txt",
                               realdata=realdata)
    spec = spec_for(tmp_path, {"kind": "virtio-win-dir", "path": "vw", "os_dirs": {"amd64": ["w7", "2k8R2"]}})
    for arch in (Arch.X86, Arch.AMD64):
        m = staged(tmp_path, spec, arch)
        dirs = {p["driver"]: p["source_dir"] for p in m["packages"]}
        assert dirs == {"viostor": f"viostor/w7/{arch.value}", "netkvm": f"NetKVM/w7/{arch.value}",
                        "vioinput": f"vioinput/w7/{arch.value}"}
        for rec in m["files"]:
            assert files[rec["source_path"]] == (tmp_path / "build/t/stage" / rec["path"]).read_bytes()
            assert not rec["path"].endswith(".pdb")
        inf = f"win7/{arch.value}/viostor/viostor.inf"
        assert next(r for r in m["files"] if r["path"] == inf)["sha256"] == hashlib.sha256(
            (realdata / "inf/viostor" / arch.value / "viostor.inf").read_bytes()).hexdigest()
        facts = {p["driver"]: p["facts"] for p in m["validation"]["packages"]}
        assert facts["viostor"]["models_sections"] == [f"VioStor.NT{arch.value}.6.1"]
        assert facts["viostor"]["binding"][0]["hwid"] == "PCI\\VEN_1AF4&DEV_1042"
        assert facts["vioinput"]["service"] == "VirtioInput"
        assert m["validation"]["summary"]["error"] == 0


def test_check_policy_follows_the_spec(tmp_path: Path) -> None:
    from aero_media.spec.types import PlaceholderPolicy, SigningPolicy
    from aero_media.stage.validate import check_policy
    from aero_media.win7.findings import CheckPolicy

    make_pack(tmp_path / "pack", {"viostor": ("x86", "amd64"), "netkvm": ("x86", "amd64")})
    spec = spec_for(tmp_path, {"kind": "pack-dir", "path": "pack"},
                    checks={"allow_sha256_only": True, "placeholder_catalogs": "allow"},
                    signing={"policy": "test", "certs": ["x.cer"]})
    assert check_policy(spec) == CheckPolicy(True, PlaceholderPolicy.ALLOW, SigningPolicy.TEST)
