"""$WinPEDriver$ on the drivers ISO: hard-linked copies, Setup's scan proven per arch, the README's two ways."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aero_media.errors import VerifyError
from aero_media.media.files import MediaFile
from aero_media.media.isowriter import write_iso
from aero_media.media.verify import Expectation, linked_copies, read_iso, verify_iso
from aero_media.spec.types import Arch
from aero_media.win7.setupscan import OfferedInf, scan_problems
from tests.lib.project import REPO, make_project, run_doit, sample_spec_data, write_spec
from tests.lib.trees import inf_for

pytestmark = pytest.mark.integration

ISO = "dist/sample/aero-virtio-win7-drivers.iso"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project(tmp_path_factory.mktemp("winpe") / "proj")
    data = sample_spec_data(name="nowinpe", default=False)
    data["media"]["winpe_drivers"] = False
    write_spec(project, "nowinpe", data)
    assert run_doit(project, "publish:sample", "publish:nowinpe") == 0
    return project


def extents(iso: Path) -> dict[str, int]:
    return read_iso(iso).extents


def test_winpe_tree_mirrors_win7_and_shares_every_extent(built: Path) -> None:
    found = extents(built / ISO)
    winpe = {p for p in found if p.startswith("$WinPEDriver$/")}
    win7 = {p for p in found if p.startswith("win7/")}
    assert winpe and {p.replace("$WinPEDriver$/", "win7/", 1) for p in winpe} == win7
    assert all(found[p] == found[p.replace("$WinPEDriver$/", "win7/", 1)] for p in winpe)
    assert "$WinPEDriver$/amd64/viostor/viostor.inf" in winpe


def test_pycdlib_sees_the_same_shared_extents(built: Path) -> None:
    """An independent reader agrees: one extent per pair."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(str(built / ISO))
    try:
        for arch in ("x86", "amd64"):
            a = iso.get_record(joliet_path=f"/$WinPEDriver$/{arch}/viostor/viostor.sys").extent_location()
            b = iso.get_record(joliet_path=f"/win7/{arch}/viostor/viostor.sys").extent_location()
            assert a == b
    finally:
        iso.close()


def test_the_iso_grows_by_directory_records_only(built: Path) -> None:
    with_winpe = (built / ISO).stat().st_size
    without = (built / "dist/nowinpe/aero-virtio-win7-drivers.iso").stat().st_size
    grown = with_winpe - without
    # No file's bytes are stored twice: both ISOs hold the same number of distinct extents.
    plain = built / "dist/nowinpe/aero-virtio-win7-drivers.iso"
    assert len(set(extents(built / ISO).values())) == len(set(extents(plain).values()))
    assert grown > 0
    # Each new folder costs one sector in the ISO 9660 and Joliet trees, plus path tables.
    folders = 1 + 2 + 2 * 3
    assert grown <= (2 * folders + 4) * 2048, grown


def test_readme_explains_both_ways(built: Path) -> None:
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(str(built / ISO))
    import io

    buf = io.BytesIO()
    iso.get_file_from_iso_fp(buf, joliet_path="/README.txt")
    iso.close()
    text = buf.getvalue().decode("ascii")
    assert "AUTOMATICALLY" in text and "$WinPEDriver$" in text and '"Load Driver"' in text
    assert text.index("AUTOMATICALLY") < text.index("Load Driver\")")


def test_verify_catches_copies_stored_twice(tmp_path: Path) -> None:
    src = tmp_path / "viostor.sys"
    src.write_bytes(b"MZ" + b"\0" * 3000)
    files = [MediaFile("win7/amd64/viostor/viostor.sys", source=src),
             MediaFile("$WinPEDriver$/amd64/viostor/viostor.sys", data=src.read_bytes())]
    iso = tmp_path / "two.iso"
    write_iso(files, iso, "X", 315532800)
    exp = Expectation(same_extent=linked_copies(f.path for f in files), extra_files_allowed=True)
    with pytest.raises(VerifyError, match=re.escape("stored apart from win7/amd64/viostor/viostor.sys")):
        verify_iso(iso, [], exp, self_described=False)


# --- Setup's scan, decided from the INFs ------------------------------------------------------


def _inf(driver: str, sections: str) -> bytes:
    """The sample INF with its [Manufacturer] line and models section header rewritten."""
    text = inf_for(driver, "x86").decode("ascii")
    text = re.sub(r"(?m)^%VENDOR% = .*$", f"%VENDOR% = {sections}", text)
    return text.encode("ascii")


def _with_models(driver: str, base: str, decorations: list[str]) -> bytes:
    text = inf_for(driver, "x86").decode("ascii")
    body = re.search(r"(?ms)^\[[^\]]+\.NTx86[^\]]*\]\r\n(.*?)\r\n\r\n", text)
    assert body is not None
    models = body.group(1)
    text = re.sub(r"(?m)^%VENDOR% = .*$", "%VENDOR% = " + ",".join([base, *[d for d in decorations if d]]), text)
    text = text.replace(body.group(0), "")
    extra = "".join(f"[{base}{'.' + d if d else ''}]\r\n{models}\r\n\r\n" for d in decorations)
    return text.replace("[viostor_inst]", extra + "[viostor_inst]", 1).encode("ascii")


def test_per_arch_packages_are_safe() -> None:
    offered = [OfferedInf("$WinPEDriver$/x86/viostor/viostor.inf", Arch.X86, inf_for("viostor", "x86")),
               OfferedInf("$WinPEDriver$/amd64/viostor/viostor.inf", Arch.AMD64, inf_for("viostor", "amd64"))]
    assert scan_problems(offered, [Arch.X86, Arch.AMD64]) == []


def test_an_inf_for_both_arches_in_the_x86_folder_is_caught() -> None:
    both = _with_models("viostor", "VIOSTOR", ["NTx86.6.1", "NTamd64.6.1"])
    problems = scan_problems([OfferedInf("$WinPEDriver$/x86/viostor/viostor.inf", Arch.X86, both)],
                             [Arch.X86, Arch.AMD64])
    assert len(problems) == 1
    assert "an amd64 Windows 7 Setup scanning $WinPEDriver$ could install this x86 INF" in problems[0]
    assert "NTamd64.6.1" in problems[0] and problems[0].startswith("$WinPEDriver$/x86/viostor/viostor.inf")


def test_an_undecorated_section_in_the_amd64_folder_is_caught() -> None:
    """Undecorated models sections are what 32-bit Windows reads: an x86 Setup would take the amd64 INF."""
    amd64 = _with_models("viostor", "VIOSTOR", ["", "NTamd64.6.1"])
    problems = scan_problems([OfferedInf("$WinPEDriver$/amd64/viostor/viostor.inf", Arch.AMD64, amd64)],
                             [Arch.X86, Arch.AMD64])
    assert len(problems) == 1 and "undecorated" in problems[0] and "an x86 Windows 7 Setup" in problems[0]
    # The same undecorated INF in the x86 folder binds nothing on amd64: fine.
    x86 = _with_models("viostor", "VIOSTOR", [""])
    assert scan_problems([OfferedInf("$WinPEDriver$/x86/viostor/viostor.inf", Arch.X86, x86)],
                         [Arch.X86, Arch.AMD64]) == []


def test_the_scan_judges_by_the_contract_in_force(realdata: Path) -> None:
    """An other-arch INF matters only when it binds a device of the spec's contract: Aero's AeroGPU INF
    (``VEN_A3A0``, both arches) binds nothing under the virtio-win contract, and AeroGPU under Aero's."""
    from aero_media.spec.load import load_contract

    gpu = (realdata / "aero" / "drivers" / "aerogpu" / "packaging" / "win7" / "aerogpu_dx11.inf").read_bytes()
    offered = [OfferedInf("$WinPEDriver$/x86/aerogpu/aerogpu_dx11.inf", Arch.X86, gpu)]
    virtio_win = load_contract(REPO / "specs" / "devices.yaml")
    aero = load_contract(REPO / "specs" / "contracts" / "aero-in-tree.json")
    assert scan_problems(offered, [Arch.AMD64], virtio_win) == []
    problems = scan_problems(offered, [Arch.AMD64], aero)
    assert len(problems) == 1 and "aero-gpu" in problems[0] and "PCI\\VEN_A3A0&DEV_0001" in problems[0]
    # Without a contract (a bare scan) any models section for the arch counts.
    assert len(scan_problems(offered, [Arch.AMD64])) == 1
    # A both-arch virtio INF binds the contract's virtio-blk on either side.
    both = _with_models("viostor", "VIOSTOR", ["NTx86.6.1", "NTamd64.6.1"])
    hit = scan_problems([OfferedInf("$WinPEDriver$/x86/viostor/viostor.inf", Arch.X86, both)], [Arch.AMD64],
                        virtio_win)
    assert len(hit) == 1 and "virtio-blk" in hit[0]


def test_a_wrong_arch_inf_fails_the_build_with_the_reason(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tests.lib.project import expanded_sample

    project = make_project(tmp_path / "proj")
    pack = expanded_sample(project / "prebuilt" / "both")
    inf = pack / "win7" / "x86" / "viostor" / "viostor.inf"
    inf.write_bytes(_with_models("viostor", "VIOSTOR", ["NTx86.6.1", "NTamd64.6.1"]))
    data = sample_spec_data(name="both", default=False)
    data["source"] = {"kind": "pack-dir", "path": "prebuilt/both"}
    write_spec(project, "both", data)
    assert run_doit(project, "drivers_iso:both") != 0
    err = capsys.readouterr()
    text = err.out + err.err
    assert "$WinPEDriver$/x86/viostor/viostor.inf: an amd64 Windows 7 Setup" in text
    assert "media.winpe_drivers: per-arch" in text
    assert not (project / "dist/both/aero-virtio-win7-drivers.iso").exists()


def test_under_the_cli_the_fix_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aero_media.cli import main
    from tests.lib.project import expanded_sample

    pack = expanded_sample(tmp_path / "pack")
    inf = pack / "win7" / "x86" / "viostor" / "viostor.inf"
    inf.write_bytes(_with_models("viostor", "VIOSTOR", ["NTx86.6.1", "NTamd64.6.1"]))
    assert main(["build-iso", "--drivers-root", str(pack), "--output", str(tmp_path / "out" / "d.iso"),
                 "--allow-placeholder-catalogs"]) != 0
    err = capsys.readouterr().err
    assert "--no-winpe-drivers" in err and "media.winpe_drivers" not in err, err


def _joliet_files(iso: Path) -> dict[str, bytes]:
    """Every file of an ISO by its Joliet path, read with pycdlib (not our reader)."""
    import io

    import pycdlib

    cd = pycdlib.PyCdlib()
    cd.open(str(iso))
    try:
        out: dict[str, bytes] = {}
        for root, _dirs, names in cd.walk(joliet_path="/"):
            for name in names:
                path = f"{root.rstrip('/')}/{name}"
                buf = io.BytesIO()
                cd.get_file_from_iso_fp(buf, joliet_path=path)
                out[path.lstrip("/")] = buf.getvalue()
        return out
    finally:
        cd.close()


@pytest.fixture(scope="module")
def per_arch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-arch pack whose x86 viostor INF also names NTamd64 (as Aero's INFs do), built per-arch."""
    from tests.lib.project import expanded_sample

    project = make_project(tmp_path_factory.mktemp("perarch") / "proj")
    pack = expanded_sample(project / "prebuilt" / "both")
    for arch in ("x86", "amd64"):
        inf = pack / "win7" / arch / "viostor" / "viostor.inf"
        inf.write_bytes(_with_models("viostor", "VIOSTOR", ["NTx86.6.1", "NTamd64.6.1"]))
    data = sample_spec_data(name="both", default=False)
    data["source"] = {"kind": "pack-dir", "path": "prebuilt/both"}
    data["media"]["winpe_drivers"] = "per-arch"
    write_spec(project, "both", data)
    assert run_doit(project, "build:both") == 0
    return project


def test_per_arch_puts_winpe_only_on_one_arch_isos(per_arch: Path) -> None:
    dist = per_arch / "dist" / "both"
    both = _joliet_files(dist / "aero-virtio-win7-drivers.iso")
    assert not any(p.startswith("$WinPEDriver$/") for p in both)
    assert {p.split("/")[1] for p in both if p.startswith("win7/")} == {"x86", "amd64"}
    for arch, other in (("x86", "amd64"), ("amd64", "x86")):
        files = _joliet_files(dist / f"aero-virtio-win7-drivers-{arch}.iso")
        winpe = {p for p in files if p.startswith("$WinPEDriver$/")}
        win7 = {p for p in files if p.startswith("win7/")}
        assert f"$WinPEDriver$/{arch}/viostor/viostor.inf" in winpe
        assert {p.replace("$WinPEDriver$/", "win7/", 1) for p in winpe} == win7
        assert not any(f"/{other}/" in p for p in winpe | win7), sorted(winpe | win7)
        assert f"win7/{arch}/viostor/viostor.inf" in win7 and "THIRD_PARTY_NOTICES.md" in files
        readme = files["README.txt"].decode("ascii")
        assert f"win7\\{arch}\\<driver>" in readme and f"win7\\{other}\\<driver>" not in readme
        assert "$WinPEDriver$" in readme and "to no other" in readme
        import json

        manifest = json.loads(files["manifest.json"])
        assert manifest["target"]["arches"] == [arch] and {p["arch"] for p in manifest["packages"]} == {arch}
        assert (dist / f"aero-virtio-win7-drivers-{arch}.iso.verify.json").is_file()
    # The two-arch README sends the user to the one-arch ISOs.
    text = both["README.txt"].decode("ascii")
    assert "aero-virtio-win7-drivers-amd64.iso" in text and "aero-virtio-win7-drivers-x86.iso" in text


def test_per_arch_leaves_the_fat_disk_without_winpe(per_arch: Path, tmp_path: Path) -> None:
    from aero_media.media.fatread import read_fat_disk

    files = read_fat_disk(per_arch / "dist/both/aero-virtio-win7-drivers-fat.vhd").files
    assert "x64/viostor/viostor.inf" in files
    assert not any(p.startswith("$WinPEDriver$") for p in files)


def test_per_arch_isos_are_reproducible_and_incremental(per_arch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib
    import shutil

    iso = per_arch / "dist/both/aero-virtio-win7-drivers-amd64.iso"
    first = hashlib.sha256(iso.read_bytes()).hexdigest()
    capsys.readouterr()
    assert run_doit(per_arch, "build:both") == 0
    out = capsys.readouterr().err  # doit's task lines go to stderr with the diagnostics
    ran = set(re.findall(r"^\.  (\S+)", out, re.M))
    assert "-- arch_drivers_iso:both:amd64" in out and not ran, ran
    shutil.rmtree(per_arch / "dist/both")
    assert run_doit(per_arch, "build:both") == 0
    assert hashlib.sha256(iso.read_bytes()).hexdigest() == first


def test_per_arch_iso_names_are_checked_against_the_other_outputs(tmp_path: Path) -> None:
    from aero_media.errors import SpecError
    from aero_media.spec.load import load_spec
    from aero_media.spec.model import Context

    project = make_project(tmp_path / "proj")
    data = sample_spec_data(name="clash", default=False)
    data["media"]["winpe_drivers"] = "per-arch"
    data["outputs"]["drivers_iso"] = {"filename": "d.iso"}
    data["outputs"]["fat_disk"] = {"filename": "d-amd64.iso"}
    with pytest.raises(SpecError, match=re.escape("'d-amd64.iso' is already used")):
        load_spec(write_spec(project, "clash", data), Context(root=project))
    data["media"]["winpe_drivers"] = "sometimes"
    with pytest.raises(SpecError, match="winpe_drivers"):
        load_spec(write_spec(project, "clash", data), Context(root=project))
