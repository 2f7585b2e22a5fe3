"""An Aero checkout as a source: ci-package.json decides each package, as Aero's ci/make-catalogs.ps1 does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from aero_media.devtools.pestub import build_pe
from aero_media.devtools.testcert import generate_signing_pair
from aero_media.errors import SourceError
from aero_media.media.notices import build_notices
from aero_media.paths import Run, SpecPaths
from aero_media.sources.aero import (
    AeroCheckout,
    driver_name,
    inf_arches,
    input_files,
    parse_ci_package,
    select_aero,
)
from aero_media.spec.load import load_spec
from aero_media.spec.model import Context, Spec
from aero_media.spec.types import AeroInput, Arch
from aero_media.stage.staging import stage_arch
from aero_media.win7.pe import MACHINE_AMD64
from tests.lib.aerotree import fake_aero
from tests.lib.doitproc import doit_argv, error_lines, no_traceback, run
from tests.lib.project import make_project, write_spec

DRIVERS = [
    {"name": "virtio-blk", "device": "virtio-blk", "required": True},
    {"name": "virtio-net", "device": "virtio-net", "required": True},
    {"name": "virtio-input", "device": "virtio-input", "required": False},
    {"name": "virtio-snd", "device": "virtio-snd", "required": False},
]
BLK = "windows7/virtio-blk"


@pytest.fixture
def aero(tmp_path: Path, realdata: Path) -> Path:
    return fake_aero(tmp_path / "aero", realdata)


def spec_for(root: Path, source: dict[str, Any], drivers: list[dict[str, Any]] | None = None,
             **extra: Any) -> Spec:
    make_project(root, with_sample=False)
    data = {"schema_version": 1, "name": "t", "source": {"kind": "aero-checkout", "path": "aero", **source},
            "drivers": drivers or DRIVERS, **extra}
    return load_spec(write_spec(root, "t", data), Context(root=root))


def tree(aero: Path, aero_input: AeroInput = AeroInput.BUILD_OUTPUT) -> AeroCheckout:
    return AeroCheckout(aero, "aero", aero_input)


def package(aero: Path, name: str, arch: Arch, aero_input: AeroInput = AeroInput.BUILD_OUTPUT) -> dict[str, str]:
    """{path in the package: path in the checkout} of one driver's package."""
    t = tree(aero, aero_input)
    files = t.package_files(t.drivers()[name], arch)
    assert files is not None
    return {f.rel: f.entry.path for f in files}


def edit_ci(aero: Path, rel: str, **changes: Any) -> None:
    path = aero / "drivers" / rel / "ci-package.json"
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc, indent=2))


# --- what goes into a package -----------------------------------------------------------------


def test_driver_names_are_aeros(aero: Path) -> None:
    assert sorted(d.name for d in tree(aero).drivers().values()) == [
        "aerogpu", "virtio-blk", "virtio-input", "virtio-net", "virtio-snd"]
    assert driver_name("windows7/virtio-net") == "virtio-net"
    assert driver_name("virtio-net/win7") == "virtio-net"


def test_build_output_package_is_selected_infs_flat_plus_binaries(aero: Path) -> None:
    pkg = package(aero, "virtio-snd", Arch.X86)
    # infFiles only: the other INFs of the driver's folder (ioport, legacy variants) stay out, and go in flat.
    assert [r for r in pkg if r.lower().endswith(".inf")] == ["aero_virtio_snd.inf"]
    assert pkg["aero_virtio_snd.inf"] == "drivers/windows7/virtio-snd/inf/aero_virtio_snd.inf"
    assert pkg["aero_virtio_snd.sys"] == "out/drivers/windows7/virtio-snd/x86/aero_virtio_snd.sys"
    # additionalFiles keep their relative paths; build leftovers and build-output INFs never ship.
    assert pkg["docs/design.md"] == "drivers/windows7/virtio-snd/docs/design.md"
    assert "build.pdb" not in pkg and "stale.inf" not in pkg
    assert sorted(package(aero, "virtio-input", Arch.AMD64)) == [
        "aero_virtio_input.inf", "aero_virtio_input.sys", "aero_virtio_tablet.inf"]


def test_x64_package_takes_wow64_dlls_from_x86_output_and_tools(aero: Path) -> None:
    pkg = package(aero, "aerogpu", Arch.AMD64)
    assert pkg["aerogpu_d3d9.dll"] == "out/drivers/aerogpu/x86/aerogpu_d3d9.dll"
    assert pkg["aerogpu_d3d9_x64.dll"] == "out/drivers/aerogpu/x64/aerogpu_d3d9_x64.dll"
    assert pkg["tools/win7_dbgctl/bin/aerogpu_dbgctl.exe"] == \
        "out/drivers/aerogpu/x64/tools/win7_dbgctl/bin/aerogpu_dbgctl.exe"
    assert pkg["legacy/aerogpu.inf"] == "drivers/aerogpu/legacy/aerogpu.inf"
    assert "aerogpu_d3d9_x64.dll" not in package(aero, "aerogpu", Arch.X86)


def test_wow64_dll_may_not_replace_the_x64_builds_own(aero: Path) -> None:
    (aero / "out/drivers/aerogpu/x64/aerogpu_d3d9.dll").write_bytes(build_pe(MACHINE_AMD64, dll=True))
    with pytest.raises(SourceError, match="wow64Files"):
        package(aero, "aerogpu", Arch.AMD64)


def test_tool_from_the_driver_folder_wins_over_build_output(aero: Path) -> None:
    tool = aero / "drivers/aerogpu/tools/win7_dbgctl/bin/aerogpu_dbgctl.exe"
    tool.parent.mkdir(parents=True, exist_ok=True)
    tool.write_bytes(b"MZ prebuilt")
    assert package(aero, "aerogpu", Arch.X86)["tools/win7_dbgctl/bin/aerogpu_dbgctl.exe"] == \
        "drivers/aerogpu/tools/win7_dbgctl/bin/aerogpu_dbgctl.exe"


def test_inf_goes_to_the_arches_its_models_sections_name(aero: Path) -> None:
    only64 = (b"[Version]\r\nSignature=\"$Windows NT$\"\r\n[Manufacturer]\r\n%M%=M,NTamd64\r\n"
              b"[M.NTamd64]\r\n%D%=I,PCI\\VEN_1AF4&DEV_1042\r\n")
    assert inf_arches(only64, "x.inf") == (Arch.AMD64,)
    assert inf_arches(b"[Version]\r\n", "x.inf") == (Arch.X86, Arch.AMD64)
    (aero / "drivers" / BLK / "inf/aero_virtio_blk_x64only.inf").write_bytes(only64)
    edit_ci(aero, BLK, infFiles=["inf/aero_virtio_blk.inf", "inf/aero_virtio_blk_x64only.inf"])
    assert "aero_virtio_blk_x64only.inf" in package(aero, "virtio-blk", Arch.AMD64)
    assert "aero_virtio_blk_x64only.inf" not in package(aero, "virtio-blk", Arch.X86)


def test_without_inf_files_every_inf_of_the_driver_folder_goes_in(aero: Path) -> None:
    path = aero / "drivers/windows7/virtio-snd/ci-package.json"
    doc = json.loads(path.read_text())
    del doc["infFiles"]
    path.write_text(json.dumps(doc))
    infs = sorted(r for r in package(aero, "virtio-snd", Arch.X86) if r.endswith(".inf"))
    assert infs == ["aero-virtio-snd-ioport.inf", "aero-virtio-snd-legacy.inf", "aero_virtio_snd.inf"]


# --- one-line errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "rel", "victim"), [
    ("infFiles", "virtio-blk", "drivers/windows7/virtio-blk/inf/aero_virtio_blk.inf"),
    ("wow64Files", "aerogpu", "out/drivers/aerogpu/x86/aerogpu_d3d10.dll"),
    ("requiredBuildOutputFiles", "aerogpu", "out/drivers/aerogpu/x64/tools/win7_dbgctl/bin/aerogpu_dbgctl.exe"),
    ("additionalFiles", "virtio-snd", "drivers/windows7/virtio-snd/docs/pci-hwids.md"),
])
def test_missing_listed_file_names_driver_file_and_field(aero: Path, field: str, rel: str, victim: str) -> None:
    (aero / victim).unlink()
    with pytest.raises(SourceError) as exc:
        package(aero, rel, Arch.AMD64)
    text = exc.value.render()
    assert "\n" not in text
    assert repr(rel) in text and field in text and Path(victim).name in text and "ci-package.json" in text


def test_missing_tool_file_names_the_field(aero: Path) -> None:
    edit_ci(aero, "aerogpu", requiredBuildOutputFiles=[], toolFiles=["tools/other.exe"])
    with pytest.raises(SourceError, match=r"'aerogpu'.*tools/other\.exe.*toolFiles"):
        package(aero, "aerogpu", Arch.X86)


@pytest.mark.parametrize(("text", "line"), [
    ('{\n  "infFiles": ["inf/a.inf"],\n  oops\n}\n', 3),
    ('{\n  "infFiles": ["inf/a.inf"],\n  "infFile": ["inf/a.inf"]\n}\n', 3),
    ('{\n  "additionalFiles": [\n    "README.md",\n    "bin/helper.dll"\n  ]\n}\n', 4),
    ('{\n  "wow64Files": ["sub/a.dll"]\n}\n', 2),
    ('{\n  "infFiles": []\n}\n', 2),
    ('{\n  "toolFiles": ["../escape.exe"]\n}\n', 2),
    ('{\n  "infFiles": ["inf/A.inf", "inf\\\\a.inf"]\n}\n', 2),
    ('[]', 1),
])
def test_malformed_ci_package_is_one_line_at_file_and_line(text: str, line: int) -> None:
    with pytest.raises(SourceError) as exc:
        parse_ci_package(text.encode(), "drivers/x/ci-package.json")
    rendered = exc.value.render()
    assert rendered.startswith(f"drivers/x/ci-package.json:{line}: ") and "\n" not in rendered


def test_real_ci_packages_parse(realdata: Path) -> None:
    for path in sorted((realdata / "aero/drivers").rglob("ci-package.json")):
        ci = parse_ci_package(path.read_bytes(), path.name)
        assert ci.inf_files


# --- through the stage ------------------------------------------------------------------------------


def test_stage_keeps_our_layout_and_records_an_unsigned_build_output(tmp_path: Path, aero: Path) -> None:
    # Build output comes without catalogs: the spec's test signing makes them (else validation reports them missing).
    spec = spec_for(tmp_path, {}, DRIVERS[:2],
                    signing={"mode": "test", "generate": True}, checks={"placeholder_catalogs": "allow"})
    # Aero's own service and INF names (until a spec names Aero's contract, the project's devices.yaml does).
    contract = tmp_path / "specs/devices.yaml"
    text = contract.read_text()
    for old, new in (("viostor", "aero_virtio_blk"), ("netkvm", "aero_virtio_net")):
        text = text.replace(f"service: {old}", f"service: {new}").replace(f"inf: {old}.inf", f"inf: {new}.inf")
    contract.write_text(text)
    spec = load_spec(spec.file, Context(root=tmp_path))
    run = Run(spec, Context(root=tmp_path), 315532800)
    generate_signing_pair(run)
    m = stage_arch(run, Arch.AMD64).to_json()
    assert m["source"] == {"kind": "aero-checkout", "tree": "aero", "reader": "aero-build-output",
                           "input": "build-output", "signed": False, "certificate": None}
    by_path = {f["path"]: f["source_path"] for f in m["files"]}
    assert by_path["win7/amd64/virtio-blk/aero_virtio_blk.sys"] == \
        "out/drivers/windows7/virtio-blk/x64/aero_virtio_blk.sys"
    staged = SpecPaths(spec, Context(root=tmp_path)).stage_dir(Arch.AMD64) / "virtio-blk" / "aero_virtio_blk.inf"
    assert staged.read_bytes() == (aero / "drivers" / BLK / "inf/aero_virtio_blk.inf").read_bytes()
    assert m["packages"][0]["source_dir"] == "out/drivers/windows7/virtio-blk/x64"
    # Aero's licences, from the checkout's root, name the project on the media.
    stage_arch(run, Arch.X86)
    notices = build_notices(run)
    assert {f.path for f in notices.files} >= {"licenses/aero/LICENSE-MIT", "licenses/aero/LICENSE-APACHE"}
    text = (SpecPaths(spec, Context(root=tmp_path)).notices_dir / "THIRD_PARTY_NOTICES.md").read_text()
    assert "https://github.com/wilsonzlin/aero" in text


def test_stage_inputs_are_what_ci_package_names_not_the_whole_checkout(tmp_path: Path, aero: Path) -> None:
    (aero / "emulator").mkdir()
    (aero / "emulator/main.rs").write_text("fn main() {}\n")
    files = input_files(spec_for(tmp_path, {}))
    assert files is not None
    assert str(aero / "drivers" / BLK / "ci-package.json") in files
    assert str(aero / "out/drivers" / BLK / "x64/aero_virtio_blk.sys") in files
    assert not any("emulator" in f for f in files)
    (aero / "drivers" / BLK / "ci-package.json").write_text("{")
    assert input_files(spec_for(tmp_path, {})) is None  # the stage runs, and says why in one line


def test_optional_driver_not_built_is_dropped_required_one_fails(tmp_path: Path, aero: Path) -> None:
    shutil.rmtree(aero / "out/drivers/windows7/virtio-snd/x64")
    spec = spec_for(tmp_path, {})
    sel = select_aero(tree(aero), spec)
    assert {(p.driver.name, p.arch) for p in sel.packages if p.driver.name == "virtio-snd"} == set()
    assert any("virtio-snd" in w for w in sel.warnings)
    shutil.rmtree(aero / "out/drivers/windows7/virtio-net/x86")
    with pytest.raises(SourceError, match=r"virtio-net.*out/drivers/windows7/virtio-net/x86/"):
        select_aero(tree(aero), spec)


def test_driver_without_ci_package_is_not_opted_in(tmp_path: Path, aero: Path) -> None:
    (aero / "drivers" / BLK / "ci-package.json").unlink()
    with pytest.raises(SourceError, match=r"virtio-blk.*ci-package\.json"):
        select_aero(tree(aero), spec_for(tmp_path, {}))


# --- signed packages ----------------------------------------------------------------------------------


def _sign_like_aero(aero: Path) -> None:
    """out/packages as ci/make-catalogs.ps1 and ci/sign-drivers.ps1 leave them (a catalog standing in)."""
    t = tree(aero)
    for drv in t.drivers().values():
        for arch in Arch:
            files = t.package_files(drv, arch)
            assert files is not None
            dest = aero / "out/packages" / drv.rel / arch.x64_name
            for f in files:
                (dest / f.rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(aero / f.entry.path, dest / f.rel)
            (dest / f"{drv.name}.cat").write_bytes(b"0\x82catalog")
    (aero / "out/certs").mkdir(parents=True)
    (aero / "out/certs/aero-test.cer").write_bytes(b"0\x82cert")


def test_signed_packages_are_taken_as_they_are(tmp_path: Path, aero: Path) -> None:
    _sign_like_aero(aero)
    pkg = package(aero, "virtio-net", Arch.AMD64, AeroInput.PACKAGES)
    assert pkg["virtio-net.cat"] == "out/packages/windows7/virtio-net/x64/virtio-net.cat"
    spec = spec_for(tmp_path, {"input": "packages"}, DRIVERS[:2])
    sel = select_aero(tree(aero, AeroInput.PACKAGES), spec)
    assert {p.source_dir for p in sel.packages} == {"out/packages/windows7/virtio-blk/x86",
                                                    "out/packages/windows7/virtio-blk/x64",
                                                    "out/packages/windows7/virtio-net/x86",
                                                    "out/packages/windows7/virtio-net/x64"}
    assert tree(aero, AeroInput.PACKAGES).certificate() == aero / "out/certs/aero-test.cer"


def test_signed_package_missing_a_listed_file_or_the_certificate(aero: Path) -> None:
    _sign_like_aero(aero)
    (aero / "out/packages/aerogpu/x64/aerogpu_d3d10.dll").unlink()
    with pytest.raises(SourceError, match=r"'aerogpu'.*aerogpu_d3d10\.dll.*wow64Files"):
        package(aero, "aerogpu", Arch.AMD64, AeroInput.PACKAGES)
    (aero / "out/certs/aero-test.cer").unlink()
    with pytest.raises(SourceError, match=r"aero-test\.cer"):
        tree(aero, AeroInput.PACKAGES).certificate()


# --- the spec ----------------------------------------------------------------------------------------


def test_spec_reads_input_and_refuses_unknown_values(tmp_path: Path) -> None:
    assert spec_for(tmp_path, {"input": "packages"}).source.aero_input is AeroInput.PACKAGES
    assert spec_for(tmp_path, {}).source.aero_input is AeroInput.BUILD_OUTPUT
    from aero_media.errors import SpecError

    with pytest.raises(SpecError, match="input"):
        spec_for(tmp_path, {"input": "signed"})


def test_doit_reports_a_malformed_ci_package_in_one_line(tmp_path: Path, aero: Path) -> None:
    spec_for(tmp_path, {}, DRIVERS[:2])
    trailing_comma = '{\n  "infFiles": [\n    "inf/aero_virtio_blk.inf",\n  ]\n}\n'
    (aero / "drivers" / BLK / "ci-package.json").write_text(trailing_comma)
    proc = run(doit_argv(tmp_path, "stage:t:x86"))
    assert proc.returncode != 0
    errors = error_lines(no_traceback(proc))
    assert len(errors) == 1 and f"drivers/{BLK}/ci-package.json:4:" in errors[0], proc.stderr
