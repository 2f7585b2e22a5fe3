"""specs/aero-in-tree.yaml end to end: Aero's checkout (the real ci-package.json files and INFs, stand-in
binaries) in, every medium out, catalogued and test-signed, and accepted by Aero's own config validator."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.lib.aerotree import fake_aero
from tests.lib.doitproc import child_env, doit_argv, error_lines, no_traceback, run
from tests.lib.fatimg import extract_partition
from tests.lib.needs import need_tool
from tests.lib.project import REPO, make_project, write_spec

pytestmark = pytest.mark.integration

SPEC = "aero-in-tree"
VALIDATOR = Path(__file__).parent / "aero" / "validate_config.py.txt"
DRIVERS = ("aerogpu", "virtio-blk", "virtio-net", "virtio-input", "virtio-snd")
ARCHES = ("x86", "amd64")


def _project(root: Path) -> Path:
    """A project holding the shipped spec and its contract; the stand-ins are reported, not fatal."""
    project = make_project(root, with_sample=False)
    shutil.copytree(REPO / "specs" / "contracts", project / "specs" / "contracts")
    shutil.copyfile(REPO / "specs" / "aero-contract.schema.json", project / "specs" / "aero-contract.schema.json")
    data = yaml.safe_load((REPO / "specs" / f"{SPEC}.yaml").read_text())
    data["checks"] = {"placeholder_catalogs": "allow"}  # stand-in binaries: no Aero build exists here
    write_spec(project, SPEC, data)
    return project


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, realdata: Path) -> Path:
    need_tool("osslsigncode")
    need_tool("xorriso")
    need_tool("mcopy")
    base = tmp_path_factory.mktemp("aero-in-tree")
    aero = fake_aero(base / "aero", realdata)
    project = _project(base / "proj")
    proc = run(doit_argv(project, f"build:{SPEC}"), env=child_env(AERO_ROOT=str(aero)), timeout=900)
    assert proc.returncode == 0, proc.stderr
    return project


def _iso_tree(iso: Path, out: Path) -> Path:
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(out)],
                   check=True, capture_output=True)
    return out


def _fat_tree(vhd: Path, out: Path) -> Path:
    part = extract_partition(vhd, out.parent / "fat.img")
    out.mkdir()
    subprocess.run(["mcopy", "-s", "-n", "-i", str(part), "::/", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def media(built: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each medium's file tree: drivers ISO, FAT disk, Guest Tools zip."""
    dist = built / "dist" / SPEC
    out = tmp_path_factory.mktemp("media")
    gt = out / "guest-tools"
    with zipfile.ZipFile(dist / "guest-tools" / "aero-guest-tools.zip") as z:
        z.extractall(gt)
    return {"drivers-iso": _iso_tree(dist / "aero-virtio-win7-drivers.iso", out / "iso"),
            "fat-disk": _fat_tree(dist / "aero-virtio-win7-drivers-fat.vhd", out / "fat"),
            "guest-tools": gt,
            # media.winpe_drivers: per-arch: one drivers ISO per arch, each with that arch's $WinPEDriver$.
            **{f"drivers-iso-{a}": _iso_tree(dist / f"aero-virtio-win7-drivers-{a}.iso", out / f"iso-{a}")
               for a in ARCHES}}


def _package_dirs(name: str, tree: Path) -> dict[tuple[str, str], Path]:
    """(driver, arch) -> the package folder, in each medium's own layout."""
    if name == "guest-tools":
        return {(d, a): tree / "drivers" / a / d for d in DRIVERS for a in ARCHES}
    if name == "fat-disk":  # Aero's FAT image layout (ci/make-fat-image.ps1): x86/ and x64/ at the root
        return {(d, a): tree / ("x64" if a == "amd64" else a) / d for d in DRIVERS for a in ARCHES}
    return {(d, a): tree / "win7" / a / d for d in DRIVERS for a in ARCHES}


@pytest.mark.parametrize("medium", ["drivers-iso", "fat-disk", "guest-tools"])
def test_every_medium_holds_every_driver_for_both_arches(media: dict[str, Path], medium: str) -> None:
    for (driver, arch), folder in _package_dirs(medium, media[medium]).items():
        infs = [p.name.lower() for p in folder.glob("*.inf")] if folder.is_dir() else []
        assert infs, f"{medium}: no {driver} package for {arch}"
        cats = [p for p in folder.glob("*.cat")]
        assert cats, f"{medium}: {driver}/{arch} has no catalog"
    snd = _package_dirs(medium, media[medium])
    for arch in ARCHES:
        assert (snd[("virtio-snd", arch)] / "aero_virtio_snd.inf").is_file()


def _cert_pem(tree: Path, dest: Path) -> Path:
    # The drivers ISO and FAT disk carry aero-test.cer at their root; the Guest Tools one in certs/.
    found = [tree / "aero-test.cer"] if (tree / "aero-test.cer").is_file() else sorted((tree / "certs").glob("*.cer"))
    assert len(found) == 1, f"not one certificate on {tree}: {found}"
    cert = x509.load_der_x509_certificate(found[0].read_bytes())
    dest.write_bytes(cert.public_bytes(Encoding.PEM))
    return dest


@pytest.mark.parametrize("medium", ["drivers-iso", "fat-disk", "guest-tools"])
def test_every_catalog_verifies_with_the_certificate_on_the_medium(media: dict[str, Path], medium: str,
                                                                   tmp_path: Path) -> None:
    tool = need_tool("osslsigncode")
    tree = media[medium]
    pem = _cert_pem(tree, tmp_path / "cert.pem")
    cats = sorted(p for folder in _package_dirs(medium, tree).values() for p in folder.glob("*.cat"))
    assert len(cats) >= len(DRIVERS) * len(ARCHES)
    for cat in cats:
        proc = subprocess.run([tool, "verify", "-CAfile", str(pem), "-in", str(cat)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{cat}: {proc.stdout}{proc.stderr}"


def test_the_fat_disk_carries_the_certificate_at_its_root(media: dict[str, Path]) -> None:
    assert (media["fat-disk"] / "aero-test.cer").is_file() or (media["fat-disk"] / "AERO-TEST.CER").is_file()


def test_aeros_validate_config_accepts_devices_cmd(media: dict[str, Path], realdata: Path, tmp_path: Path) -> None:
    """Aero's own validator, run as Aero runs it, for its canonical contract and win7-signed.json."""
    script = tmp_path / "tools" / "guest-tools" / "validate_config.py"
    script.parent.mkdir(parents=True)
    shutil.copyfile(VALIDATOR, script)
    aero = realdata / "aero"
    argv = [sys.executable, str(script), "--devices-cmd", str(media["guest-tools"] / "config" / "devices.cmd"),
            "--spec", str(aero / "tools" / "packaging" / "specs" / "win7-signed.json"),
            "--windows-device-contract", str(aero / "docs" / "windows-device-contract.json")]
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The same validator refuses Aero's virtio-win contract for this file: the acceptance is not vacuous.
    argv[-1] = str(aero / "docs" / "windows-device-contract-virtio-win.json")
    assert subprocess.run(argv, capture_output=True, text=True).returncode != 0


def test_a_missing_aero_root_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj")
    env = child_env()
    env.pop("AERO_ROOT", None)
    proc = run(doit_argv(project, f"stage:{SPEC}:x86"), env=env)
    assert proc.returncode != 0
    errors = error_lines(no_traceback(proc))
    assert len(errors) == 1 and "AERO_ROOT" in errors[0] and "source.path" in errors[0], proc.stderr


def test_the_spec_is_not_built_by_default() -> None:
    data = yaml.safe_load((REPO / "specs" / f"{SPEC}.yaml").read_text())
    assert data["default"] is False


def test_signs_with_aeros_pfx_from_the_environment(tmp_path: Path, realdata: Path) -> None:
    """AERO_DRIVER_PFX_BASE64 and its password set: the catalogs verify with that PFX's certificate, which the
    build writes (never its key) into build/; unset, the same spec made its own pair (the module build)."""
    import base64

    from aero_media.devtools.testcert import make_test_cert

    tool = need_tool("osslsigncode")
    # Valid from the build epoch (SOURCE_DATE_EPOCH, 1980 here), the signing time.
    user = make_test_cert(tmp_path / "mine", subject="Aero stable test signing", pfx_password="s3cret",
                          not_before=315532800)
    aero = fake_aero(tmp_path / "aero", realdata)
    project = _project(tmp_path / "proj")
    env = child_env(AERO_ROOT=str(aero), AERO_DRIVER_PFX_BASE64=base64.b64encode(user.pfx.read_bytes()).decode(),
                    AERO_DRIVER_PFX_PASSWORD="s3cret")
    proc = run(doit_argv(project, f"stage:{SPEC}:amd64"), env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    signing = project / "build" / SPEC / "signing"
    assert (signing / "aero-test.cer").read_bytes() == user.cer.read_bytes()
    assert sorted(p.name for p in signing.iterdir()) == ["aero-test.cer", "aero-test.cert.pem"]  # no key
    cat = project / "build" / SPEC / "stage" / "win7" / "amd64" / "virtio-snd" / "aero_virtio_snd.cat"
    ok = subprocess.run([tool, "verify", "-CAfile", str(user.cert_pem), "-in", str(cat)], capture_output=True)
    assert ok.returncode == 0, ok.stdout
    # A wrong password is one line naming the variable to fix, and nothing is signed.
    env["AERO_DRIVER_PFX_PASSWORD"] = "wrong"
    proc = run(doit_argv(project, f"stage:{SPEC}:amd64"), env=env, timeout=600)
    assert proc.returncode != 0
    errors = error_lines(no_traceback(proc))
    assert len(errors) == 1 and "AERO_DRIVER_PFX_PASSWORD" in errors[0], proc.stderr


@pytest.mark.parametrize(("signing", "field"), [
    ({"mode": "test", "pfx_env": "P", "cert": "x.cer"}, "cert"),
    ({"mode": "test", "pfx": "/k.pfx", "pfx_env": "P"}, "pfx_env"),
    ({"mode": "test", "pfx": "/k.pfx", "generate": True}, "generate"),
    ({"mode": "test", "cert": "x.cer", "key": "/k.pem", "pfx_password_env": "P"}, "pfx_password_env"),
])
def test_pfx_settings_that_contradict_each_other_are_refused(tmp_path: Path, signing: dict[str, object],
                                                             field: str) -> None:
    from aero_media.errors import SpecError
    from aero_media.spec.load import load_spec
    from aero_media.spec.model import Context

    project = _project(tmp_path / "proj")
    data = yaml.safe_load((project / "specs" / f"{SPEC}.yaml").read_text())
    data["signing"] = signing
    path = write_spec(project, SPEC, data)
    with pytest.raises(SpecError) as err:
        load_spec(path, Context(project))
    assert f"{field}" in str(err.value) and "/signing" in str(err.value)


def _winpe_packages(tree: Path) -> set[tuple[str, str]]:
    """(driver, arch) of every package folder with an INF under the medium's $WinPEDriver$ (any case: FAT)."""
    roots = [p for p in tree.iterdir() if p.name.lower() == "$winpedriver$"]
    # <arch>/<driver>/...: aerogpu keeps a legacy INF in a subfolder of its package.
    return {(rel.parts[1], rel.parts[0]) for root in roots for rel in (inf.relative_to(root)
                                                                       for inf in root.rglob("*.inf"))}


def test_winpe_drivers_hold_every_driver_for_both_arches_on_the_one_arch_isos(media: dict[str, Path]) -> None:
    """per-arch: together the one-arch ISOs give Setup every driver (virtio-snd too) for both arches under
    $WinPEDriver$, each ISO its own arch alone; the media holding both arches carry no $WinPEDriver$."""
    found: set[tuple[str, str]] = set()
    for arch in ARCHES:
        tree = media[f"drivers-iso-{arch}"]
        winpe = _winpe_packages(tree)
        assert winpe == {(d, arch) for d in DRIVERS}, sorted(winpe)
        assert (tree / "$WinPEDriver$" / arch / "virtio-snd" / "aero_virtio_snd.inf").is_file()
        # Only its arch, in both layouts (Load Driver's win7/<arch>/ too).
        assert sorted(p.name for p in (tree / "win7").iterdir()) == [arch]
        assert sorted(p.name for p in (tree / "$WinPEDriver$").iterdir()) == [arch]
        assert (tree / "aero-test.cer").is_file() and (tree / "THIRD_PARTY_NOTICES.md").is_file()
        found |= winpe
    assert found == {(d, a) for d in DRIVERS for a in ARCHES}
    for medium in ("drivers-iso", "fat-disk"):
        assert _winpe_packages(media[medium]) == set(), medium
        assert not [p for p in media[medium].iterdir() if p.name.lower() == "$winpedriver$"], medium


@pytest.mark.parametrize("arch", ARCHES)
def test_every_catalog_of_a_one_arch_iso_verifies(media: dict[str, Path], arch: str, tmp_path: Path) -> None:
    tool = need_tool("osslsigncode")
    tree = media[f"drivers-iso-{arch}"]
    pem = _cert_pem(tree, tmp_path / "cert.pem")
    cats = sorted((tree / "$WinPEDriver$" / arch).rglob("*.cat"))
    assert len(cats) >= len(DRIVERS)
    for cat in cats:
        proc = subprocess.run([tool, "verify", "-CAfile", str(pem), "-in", str(cat)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{cat}: {proc.stdout}{proc.stderr}"


def test_winpe_drivers_true_is_refused_because_aeros_infs_name_both_arches(tmp_path: Path, realdata: Path) -> None:
    """Under true, the $WinPEDriver$ proof refuses the two-arch drivers ISO: each arch's copy of Aero's INFs
    binds the contract's devices on the other arch too, so Setup could load an x86 driver on amd64."""
    aero = fake_aero(tmp_path / "aero", realdata)
    project = _project(tmp_path / "proj")
    data = yaml.safe_load((project / "specs" / f"{SPEC}.yaml").read_text())
    data["media"] = {"winpe_drivers": True}
    write_spec(project, SPEC, data)
    proc = run(doit_argv(project, f"drivers_iso:{SPEC}"), env=child_env(AERO_ROOT=str(aero)), timeout=600)
    assert proc.returncode != 0
    errors = error_lines(no_traceback(proc))
    assert len(errors) == 1 and "$WinPEDriver$/x86/virtio-snd/aero_virtio_snd.inf" in errors[0], proc.stderr
    assert "binds virtio-snd" in errors[0] and "media.winpe_drivers: per-arch" in errors[0]


def _virtio_snd_package(realdata: Path, folder: Path) -> Path:
    """Aero's amd64 virtio-snd package as Aero's ci/make-catalogs.ps1 leaves it before signing: its real INF, a
    stand-in binary per SourceDisksFiles entry (without the sample's stand-in marker, so the only finding
    left is about the contract) and the INF's Windows 7 catalog, unsigned (policy test expects that)."""
    from aero_media.devtools.pestub import build_pe
    from aero_media.devtools.testcert import make_test_cert
    from aero_media.spec.types import Arch
    from aero_media.win7.catalogmake import CatalogMemberFile, inf_catalog_files, make_catalog
    from aero_media.win7.inf import parse_inf
    from aero_media.win7.pe import MACHINE_AMD64
    from aero_media.win7.signing import SigningKey, sign_catalog

    inf_path = next((realdata / "aero" / "drivers").rglob("aero_virtio_snd.inf"))
    folder.mkdir(parents=True)
    (folder / inf_path.name).write_bytes(inf_path.read_bytes())
    inf = parse_inf(inf_path.read_bytes(), inf_path.name)
    for name in inf.source_disks_files("amd64"):
        (folder / name).write_bytes(build_pe(MACHINE_AMD64, dll=name.lower().endswith(".dll"), marker=b""))
    members = [CatalogMemberFile(inf_path.name, folder / inf_path.name),
               *(CatalogMemberFile(n, folder / n) for n in inf_catalog_files(inf, Arch.AMD64))]
    need_tool("osslsigncode")
    # Test-signed as Aero's ci/sign-drivers.ps1 does, with a throwaway certificate valid at the signing time.
    cert = make_test_cert(folder.parent / "cert", not_before=315532800)
    sign_catalog(make_catalog(members, Arch.AMD64, this_update=315532800), folder / "aero_virtio_snd.cat",
                 SigningKey(cert.cert_pem, cert.key_pem), signing_time=315532800)
    return folder


def _check(folder: Path, *extra: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "aero_media", "check", str(folder), "--signing-policy", "test",
            "--warnings-as-errors", *extra]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("contract", ["shipped", "aero"])
def test_check_passes_aeros_virtio_snd_with_aeros_contract(tmp_path: Path, realdata: Path, contract: str) -> None:
    """`check --contract` takes Aero's contract: ours as shipped, or Aero's own file read directly."""
    path = (REPO / "specs" / "contracts" / "aero-in-tree.json" if contract == "shipped"
            else realdata / "aero" / "docs" / "windows-device-contract.json")
    pkg = _virtio_snd_package(realdata, tmp_path / "virtio-snd")
    proc = _check(pkg, "--contract", str(path), cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_fails_aeros_virtio_snd_against_the_default_contract(tmp_path: Path, realdata: Path) -> None:
    pkg = _virtio_snd_package(realdata, tmp_path / "virtio-snd")
    proc = _check(pkg, "--json", str(tmp_path / "report.json"), cwd=REPO)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    import json

    (report,) = json.loads((tmp_path / "report.json").read_text())
    failing = [f for f in report["findings"] if f["severity"] in ("error", "warning")]
    # Aero's service name is not the default contract's virtio-snd service: that, and only that, fails it.
    assert len(failing) == 1 and "virtio-snd" in failing[0]["message"] and "aero_virtio_snd" in failing[0]["message"]


@pytest.mark.parametrize(("content", "where"), [
    (None, "no such file"),
    ('{"schema_version": 1,\n  "devices": [,]}\n', ":2:"),
])
def test_check_refuses_a_missing_or_malformed_contract_in_one_line(tmp_path: Path, realdata: Path,
                                                                   content: str | None, where: str) -> None:
    path = tmp_path / "contract.json"
    if content is not None:
        path.write_text(content)
    pkg = _virtio_snd_package(realdata, tmp_path / "virtio-snd")
    proc = _check(pkg, "--contract", str(path), cwd=REPO)
    assert proc.returncode == 2
    errors = error_lines(no_traceback(proc))
    assert len(errors) == 1 and str(path) in errors[0] and where in errors[0], proc.stderr


@pytest.mark.parametrize("arch", ARCHES)
def test_the_tablet_inf_is_validated_for_its_own_contract_device(built: Path, arch: str) -> None:
    """virtio-input's folder holds the keyboard/mouse INF and the tablet INF: each is checked, each for the
    contract device its SUBSYS IDs name, so neither is left unchecked."""
    import json

    manifest = json.loads((built / "build" / SPEC / "stage" / f"{arch}.json").read_text())
    report = next(r for r in manifest["validation"]["packages"] if r["driver"] == "virtio-input")
    assert report["facts"]["inf"] == "aero_virtio_input.inf"
    tablet = report["facts"]["more_infs"]["aero_virtio_tablet.inf"]
    assert tablet["device"] == "aero-virtio-input-tablet"
    assert tablet["models_sections"], tablet
    assert not [f for f in report["findings"] if f["code"] == "package-multiple-infs"]


def test_a_whole_build_leaves_the_spec_out_when_aero_root_is_unset(tmp_path: Path) -> None:
    """`doit build` (every spec) builds the others and warns; only naming the spec asks for AERO_ROOT."""
    project = make_project(tmp_path / "proj")  # the sample spec beside this one
    shutil.copytree(REPO / "specs" / "contracts", project / "specs" / "contracts")
    shutil.copyfile(REPO / "specs" / "aero-contract.schema.json", project / "specs" / "aero-contract.schema.json")
    write_spec(project, SPEC, yaml.safe_load((REPO / "specs" / f"{SPEC}.yaml").read_text()))
    env = child_env()
    env.pop("AERO_ROOT", None)
    whole = run(doit_argv(project, "build"), env=env)
    assert whole.returncode == 0, whole.stderr
    assert (project / "dist" / "sample" / "aero-virtio-win7-drivers.iso").is_file()
    assert not (project / "dist" / SPEC).exists()
    left_out = [ln for ln in no_traceback(whole).splitlines() if "left out" in ln]
    assert len(left_out) == 1 and "AERO_ROOT" in left_out[0] and f"doit build:{SPEC}" in left_out[0], whole.stderr
    assert error_lines(whole.stderr) == [], whole.stderr  # nothing of the left-out spec is reported as built or missing
    assert "== sample" in whole.stdout and f"== {SPEC}" not in whole.stdout, whole.stdout
    assert not (project / "build" / SPEC / "report.json").exists()
    named = run(doit_argv(project, f"build:{SPEC}"), env=env)
    assert named.returncode != 0
    assert any("AERO_ROOT" in e for e in error_lines(no_traceback(named))), named.stderr
