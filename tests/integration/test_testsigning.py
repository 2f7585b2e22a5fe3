"""Test signing in the pipeline: `signing:` re-creates and signs every catalog, embed-signs boot drivers,
and validation trusts exactly the spec's certificate. osslsigncode is the oracle."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from aero_media.spec.load import project_contract
from aero_media.spec.model import Context
from aero_media.spec.types import Arch, PlaceholderPolicy, SigningPolicy
from aero_media.win7.catalog import parse_catalog
from aero_media.win7.certs import PEM_KEY_MARKER
from aero_media.win7.checks import check_package
from aero_media.win7.findings import CheckPolicy
from tests.lib.doitproc import child_env, doit_argv, run
from tests.lib.needs import need_tool
from tests.lib.project import REPO, make_project, run_doit, write_spec

pytestmark = pytest.mark.integration

SPEC = "sample-testsigned"


def signed_project(root: Path, signing: dict[str, Any] | None = None) -> Path:
    project = make_project(root)
    data = yaml.safe_load((REPO / "specs" / f"{SPEC}.yaml").read_text())
    if signing is not None:
        data["signing"] = signing
    write_spec(project, SPEC, data)
    return project


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tool("osslsigncode")
    project = signed_project(tmp_path_factory.mktemp("signed") / "proj")
    proc = run(doit_argv(project, f"build:{SPEC}"))
    assert proc.returncode == 0, proc.stderr
    (project / "log.txt").write_text(proc.stdout + proc.stderr)
    return project


def stage(project: Path, arch: str) -> Path:
    return project / "build" / SPEC / "stage" / "win7" / arch


def test_every_catalog_and_member_verifies_with_osslsigncode(built: Path) -> None:
    tool = need_tool("osslsigncode")
    cert_pem = built / "build" / SPEC / "signing" / "aero-test.cert.pem"
    for arch in ("x86", "amd64"):
        for pkg in sorted(p for p in stage(built, arch).iterdir() if p.is_dir()):
            cat = pkg / f"{pkg.name}.cat"
            ok = subprocess.run([tool, "verify", "-CAfile", str(cert_pem), "-in", str(cat)], capture_output=True,
                                text=True)
            assert ok.returncode == 0, ok.stdout + ok.stderr
            parsed = parse_catalog(cat.read_bytes(), cat.name)
            assert parsed.signed and parsed.primary is not None and parsed.primary.digest_algorithm == "sha1"
            assert dict(parsed.attributes)["OS"] == ("7X86" if arch == "x86" else "7X64")
            for pe in sorted(pkg.glob("*.sys")):
                member = subprocess.run([tool, "verify", "-CAfile", str(cert_pem), "-catalog", str(cat),
                                         "-in", str(pe)], capture_output=True, text=True)
                assert member.returncode == 0, member.stdout + member.stderr
            inf = pkg / f"{pkg.name}.inf"
            assert hashlib.sha1(inf.read_bytes()).digest() in {m.digest for m in parsed.members}


def test_every_driver_carries_an_embedded_signature(built: Path) -> None:
    """Every .sys is embed-signed, as Aero's ci/sign-drivers.ps1 signs them (not only the boot driver)."""
    tool = need_tool("osslsigncode")
    cert_pem = built / "build" / SPEC / "signing" / "aero-test.cert.pem"
    from aero_media.win7.pe import pe_info

    drivers = sorted(stage(built, "amd64").glob("*/*.sys")) + sorted(stage(built, "x86").glob("*/*.sys"))
    assert len(drivers) >= 6
    for sys_file in drivers:
        proc = subprocess.run([tool, "verify", "-CAfile", str(cert_pem), "-in", str(sys_file)], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        info = pe_info(sys_file.read_bytes())
        assert info.has_signature and info.signature_digest == "sha1" and info.checksum_ok, sys_file


def test_guest_tools_ship_the_certificate_and_turn_on_test_mode(built: Path) -> None:
    import json

    manifest = json.loads((built / "dist" / SPEC / "guest-tools" / "manifest.json").read_text())
    assert manifest["signing_policy"] == "test" and manifest["certs_required"] is True
    cert = (built / "build" / SPEC / "signing" / "aero-test.cer").read_bytes()
    [record] = manifest["certs"]
    assert record["stores"] == ["Root", "TrustedPublisher"]
    assert record["sha1_thumbprint"].lower() == hashlib.sha1(cert).hexdigest()


def test_the_key_reaches_no_medium_manifest_or_log(built: Path) -> None:
    key = (built / "build" / SPEC / "signing" / "aero-test.key.pem").read_bytes()
    body = b"".join(line for line in key.splitlines() if not line.startswith(b"-----"))
    probes = [key, body[:48], PEM_KEY_MARKER.encode()]
    places = [p for p in (built / "dist").rglob("*") if p.is_file()]
    places += [p for p in (built / "build").rglob("*.json")]
    places.append(built / "log.txt")
    places.append(built / "build" / ".doit.db")
    for place in places:
        data = place.read_bytes()
        for probe in probes:
            assert probe not in data, f"{place} holds key material"
    import zipfile

    with zipfile.ZipFile(built / "dist" / SPEC / "guest-tools" / "aero-guest-tools.zip") as zf:
        assert not any(n.endswith((".pem", ".key", ".pfx")) for n in zf.namelist())


def test_tampering_after_signing_fails_both_checks(built: Path, tmp_path: Path) -> None:
    tool = need_tool("osslsigncode")
    cert_pem = built / "build" / SPEC / "signing" / "aero-test.cert.pem"
    pkg = tmp_path / "netkvm"
    shutil.copytree(stage(built, "amd64") / "netkvm", pkg)
    sys_file = pkg / "netkvm.sys"
    data = bytearray(sys_file.read_bytes())
    # Inside the image, not in its embedded signature (which the Authenticode hash leaves out).
    pe_offset = int.from_bytes(data[0x3C:0x40], "little")
    data[(pe_offset + 0x200) // 2] ^= 0xFF
    sys_file.write_bytes(bytes(data))
    proc = subprocess.run([tool, "verify", "-CAfile", str(cert_pem), "-catalog", str(pkg / "netkvm.cat"),
                           "-in", str(sys_file)], capture_output=True, text=True)
    assert proc.returncode != 0
    contract = project_contract(Context(root=built))
    thumb = hashlib.sha1((built / "build" / SPEC / "signing" / "aero-test.cer").read_bytes()).hexdigest().upper()
    policy = CheckPolicy(placeholder_catalogs=PlaceholderPolicy.ALLOW, signing_policy=SigningPolicy.TEST,
                         trusted_signers=(thumb,))
    report = check_package(pkg, Arch.AMD64, contract.device("virtio-net"), policy)
    assert "catalog-missing-file" in {f.code for f in report.errors}
    inf = pkg / "netkvm.inf"
    inf.write_bytes(inf.read_bytes() + b"; changed\r\n")
    report = check_package(pkg, Arch.AMD64, contract.device("virtio-net"), policy)
    assert "catalog-missing-inf" in {f.code for f in report.errors}


def _flip_in_signature(path: Path, back: int = 40) -> None:
    """Change one byte inside the RSA signature, which sits near the end of the PKCS#7 blob."""
    data = bytearray(path.read_bytes())
    data[len(data) - back] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("target", ["catalog", "embedded"])
def test_a_broken_signature_is_an_error_as_it_is_for_osslsigncode(built: Path, tmp_path: Path, target: str) -> None:
    tool = need_tool("osslsigncode")
    cert_pem = built / "build" / SPEC / "signing" / "aero-test.cert.pem"
    pkg = tmp_path / "viostor"
    shutil.copytree(stage(built, "amd64") / "viostor", pkg)
    contract = project_contract(Context(root=built))
    thumb = hashlib.sha1((built / "build" / SPEC / "signing" / "aero-test.cer").read_bytes()).hexdigest().upper()
    policy = CheckPolicy(placeholder_catalogs=PlaceholderPolicy.ALLOW, signing_policy=SigningPolicy.TEST,
                         trusted_signers=(thumb,))
    assert not check_package(pkg, Arch.AMD64, contract.device("virtio-blk"), policy).errors
    if target == "catalog":
        # The catalog ends with the signer's certificate-free SignerInfo: its last bytes are the signature.
        _flip_in_signature(pkg / "viostor.cat", back=10)
        argv = [tool, "verify", "-CAfile", str(cert_pem), "-in", str(pkg / "viostor.cat")]
        code = "catalog-bad-signature"
    else:
        # The certificate table is the last thing in a signed image, and padded to 8 bytes.
        _flip_in_signature(pkg / "viostor.sys", back=40)
        argv = [tool, "verify", "-CAfile", str(cert_pem), "-in", str(pkg / "viostor.sys")]
        code = "pe-bad-signature"
    assert subprocess.run(argv, capture_output=True, text=True).returncode != 0
    report = check_package(pkg, Arch.AMD64, contract.device("virtio-blk"), policy)
    assert code in {f.code for f in report.errors}, [f.code for f in report.findings]


def test_a_package_signed_by_someone_else_is_refused(built: Path, tmp_path: Path) -> None:
    contract = project_contract(Context(root=built))
    policy = CheckPolicy(placeholder_catalogs=PlaceholderPolicy.ALLOW, signing_policy=SigningPolicy.TEST,
                         trusted_signers=("00" * 20,))
    report = check_package(stage(built, "amd64") / "viostor", Arch.AMD64, contract.device("virtio-blk"), policy)
    assert "catalog-untrusted-signer" in {f.code for f in report.errors}


@pytest.fixture(scope="module")
def own_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A user's certificate and key, kept outside every checkout."""
    from aero_media.devtools.testcert import make_test_cert

    made = make_test_cert(tmp_path_factory.mktemp("home") / "aero", not_before=315532800)
    return made.cer, made.key_pem


def test_reproducible_across_folders_and_time_zones(tmp_path: Path, own_pair: tuple[Path, Path]) -> None:
    need_tool("osslsigncode")
    cer, key = own_pair
    outputs = []
    for where, tz in (("one", "UTC"), ("elsewhere/two", "Pacific/Kiritimati")):
        project = signed_project(tmp_path / where, {"mode": "test", "cert": str(cer), "key": str(key)})
        proc = run(doit_argv(project, f"stage:{SPEC}:x86", f"stage:{SPEC}:amd64"), env=child_env(TZ=tz))
        assert proc.returncode == 0, proc.stderr
        outputs.append({p.relative_to(project).as_posix(): p.read_bytes()
                        for p in (project / "build" / SPEC / "stage").rglob("*") if p.suffix in (".cat", ".sys")})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 12


def test_key_from_the_environment(tmp_path: Path, own_pair: tuple[Path, Path],
                                  capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    need_tool("osslsigncode")
    cer, key = own_pair
    project = signed_project(tmp_path / "proj", {"mode": "test", "cert": str(cer), "key_env": "AERO_TEST_KEY"})
    monkeypatch.delenv("AERO_TEST_KEY", raising=False)
    assert run_doit(project, f"stage:{SPEC}:amd64") != 0
    out = capsys.readouterr()
    assert "signing.key_env names AERO_TEST_KEY, which is not set" in out.err + out.out
    monkeypatch.setenv("AERO_TEST_KEY", key.read_text())  # the PEM itself, as a CI secret gives it
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("aero-signing-*"))
    assert run_doit(project, f"stage:{SPEC}:amd64") == 0
    assert set(Path(tempfile.gettempdir()).glob("aero-signing-*")) == before  # the key's temp copy is gone


def test_a_key_inside_the_checkout_is_refused(tmp_path: Path, own_pair: tuple[Path, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    need_tool("osslsigncode", "the stage looks for it before it reads the key")
    cer, key = own_pair
    project = make_project(tmp_path / "proj")
    inside = project / "keys" / "aero-test.key.pem"
    inside.parent.mkdir()
    shutil.copyfile(key, inside)
    data = yaml.safe_load((REPO / "specs" / f"{SPEC}.yaml").read_text())
    data["signing"] = {"mode": "test", "cert": str(cer), "key": "keys/aero-test.key.pem"}
    write_spec(project, SPEC, data)
    assert run_doit(project, f"stage:{SPEC}:amd64") != 0
    out = capsys.readouterr()
    text = out.err + out.out
    assert "the private key is inside the checkout" in text and "a committed key is a leaked key" in text
    assert key.read_bytes().decode()[40:80] not in text


def test_missing_osslsigncode_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    project = signed_project(tmp_path / "proj")
    assert run_doit(project, f"signing_cert:{SPEC}") == 0
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert run_doit(project, f"stage:{SPEC}:amd64") != 0
    out = capsys.readouterr()
    lines = [line for line in (out.err + out.out).splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "osslsigncode" in lines[0] and "apt-get install osslsigncode" in lines[0]


@pytest.mark.parametrize(("signing", "expect"), [
    ({"mode": "test", "generate": True, "cert": "x.cer"}, "generate: true makes its own certificate"),
    ({"mode": "test", "key": "/k.pem"}, "test signing needs the certificate"),
    ({"mode": "test", "cert": "x.cer"}, "exactly one of key:"),
    ({"mode": "test", "cert": "x.cer", "key": "/k", "key_env": "K"}, "exactly one of key:"),
    ({"mode": "production"}, "/signing/mode"),
])
def test_signing_block_errors(tmp_path: Path, signing: dict[str, Any], expect: str) -> None:
    from aero_media.errors import SpecError
    from aero_media.spec.load import load_spec

    project = signed_project(tmp_path / "proj", signing)
    with pytest.raises(SpecError) as exc:
        load_spec(project / "specs" / f"{SPEC}.yaml", Context(root=project))
    assert expect in exc.value.render()


@pytest.mark.parametrize(("which", "expect"), [
    ("cert", "signing.cert {cert}: no such file; fix: point signing.cert at the certificate"),
    ("key", "signing.key: {key}: no such file; fix: point signing.key at the private key"),
])
def test_a_missing_certificate_or_key_names_its_setting(tmp_path: Path, own_pair: tuple[Path, Path],
                                                        capsys: pytest.CaptureFixture[str], which: str,
                                                        expect: str) -> None:
    need_tool("osslsigncode")
    cert, key = own_pair
    cert = tmp_path / "gone.cer" if which == "cert" else cert
    key = tmp_path / "gone.key.pem" if which == "key" else key
    project = signed_project(tmp_path / "proj", {"mode": "test", "cert": str(cert), "key": str(key)})
    assert run_doit(project, f"stage:{SPEC}:amd64") != 0
    out = capsys.readouterr()
    assert expect.format(cert=cert, key=key) in out.err + out.out


# --- Packages we did not build: catalogs as Inf2Cat makes them, dual signatures, signed packages kept ---------

VHD = "aero-virtio-win7-drivers-fat.vhd"
ISO = "aero-virtio-win7-drivers.iso"
MTOOLS_ENV = {"MTOOLSRC": "/dev/null", "MTOOLS_SKIP_CHECK": "1"}


def _iso_tree(iso: Path, out: Path) -> Path:
    xorriso = need_tool("xorriso")
    subprocess.run([xorriso, "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(out)], check=True,
                   capture_output=True)
    return out


def _fat_file(vhd: Path, name: str) -> bytes:
    import os

    mtype = need_tool("mtype")
    return subprocess.run([mtype, "-i", f"{vhd}@@1M", f"::/{name}"], capture_output=True, check=True,
                          env={**os.environ, **MTOOLS_ENV}).stdout


def test_the_certificate_and_the_test_mode_steps_are_on_every_medium(built: Path, tmp_path: Path) -> None:
    """Aero's FAT image has aero-test.cer at its root (ci/make-fat-image.ps1); ours, and the drivers ISO, too."""
    cert = (built / "build" / SPEC / "signing" / "aero-test.cer").read_bytes()
    dist = built / "dist" / SPEC
    iso = _iso_tree(dist / ISO, tmp_path / "iso")
    assert (iso / "aero-test.cer").read_bytes() == cert
    assert [p.read_bytes() for p in (iso / "certs").iterdir()] == [cert]
    assert _fat_file(dist / VHD, "aero-test.cer") == cert
    readme = (iso / "README.txt").read_bytes().decode("ascii")
    install = _fat_file(dist / VHD, "INSTALL.TXT").decode("ascii")
    for text, drive in ((readme, "D:"), (install, "E:")):
        assert "\r\n" in text
        for step in (f"certutil -addstore -f Root {drive}\\aero-test.cer",
                     f"certutil -addstore -f TrustedPublisher {drive}\\aero-test.cer",
                     "bcdedit /set testsigning on"):
            assert step in text, step
        assert text.index("testsigning on") < text.index("pnputil -i -a")  # trust first, then install


def _member_files(cat: Path) -> set[str]:
    return {str(m.file).lower() for m in parse_catalog(cat.read_bytes(), cat.name).members}


def test_catalogs_list_what_the_inf_copies_not_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Inf2Cat lists the INF and the files it copies; a stray file in the folder stays out of the catalog."""
    need_tool("osslsigncode")
    project = signed_project(tmp_path / "proj")
    pkg = project / "prebuilt" / "sample" / "win7" / "amd64" / "netkvm"
    (pkg / "notes.txt").write_bytes(b"not named by the INF\r\n")
    assert run_doit(project, f"stage:{SPEC}:amd64") == 0
    staged = stage(project, "amd64") / "netkvm"
    assert (staged / "notes.txt").is_file()
    assert _member_files(staged / "netkvm.cat") == {"netkvm.inf", "netkvm.sys"}

    inf = pkg / "netkvm.inf"
    inf.write_bytes(inf.read_bytes().replace(b"[netkvm_files]\r\nnetkvm.sys,,,2",
                                             b"[netkvm_files]\r\nnetkvm.sys,,,2\r\nnetkvmco.dll,,,2"))
    assert b"netkvmco.dll" in inf.read_bytes()
    capsys.readouterr()
    assert run_doit(project, f"stage:{SPEC}:amd64") != 0
    out = capsys.readouterr()
    errors = [line for line in (out.err + out.out).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "win7/amd64/netkvm" in errors[0] and "netkvmco.dll" in errors[0], errors


def test_dual_signing_nests_a_sha256_signature_after_the_sha1_one(tmp_path: Path) -> None:
    tool = need_tool("osslsigncode")
    from aero_media.win7.pe import pe_info

    project = signed_project(tmp_path / "proj", {"mode": "test", "generate": True, "dual_sign": True})
    assert run_doit(project, f"stage:{SPEC}:amd64") == 0
    cert_pem = project / "build" / SPEC / "signing" / "aero-test.cert.pem"
    signed = sorted(stage(project, "amd64").glob("*/*.cat")) + sorted(stage(project, "amd64").glob("*/*.sys"))
    assert len(signed) == 6
    for path in signed:
        proc = subprocess.run([tool, "verify", "-CAfile", str(cert_pem), "-in", str(path)], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Number of verified signatures: 2" in proc.stdout, proc.stdout
        if path.suffix == ".cat":
            assert parse_catalog(path.read_bytes(), path.name).digest_algorithms == ("sha1", "sha256")
        else:
            assert pe_info(path.read_bytes()).signature_digest == "sha1"  # the one Windows 7 reads first


def _signed_pack(built: Path, root: Path) -> Path:
    """Aero's out/packages, as our pack layout: the test-signed packages the built project staged."""
    pack = root / "pack"
    shutil.copytree(built / "build" / SPEC / "stage" / "win7", pack / "win7")
    shutil.copyfile(REPO / "prebuilt" / "sample" / "THIRD_PARTY_NOTICES.md", pack / "THIRD_PARTY_NOTICES.md")
    return pack


def kept_project(root: Path, pack: Path, cert: Path) -> Path:
    project = make_project(root, with_sample=False)
    data = yaml.safe_load((REPO / "specs" / f"{SPEC}.yaml").read_text())
    data["source"] = {"kind": "pack-dir", "path": str(pack)}
    data["signing"] = {"mode": "keep", "cert": str(cert)}
    write_spec(project, SPEC, data)
    return project


def test_signed_packages_are_kept_byte_for_byte_and_ship_their_certificate(built: Path, tmp_path: Path) -> None:
    tool = need_tool("osslsigncode")
    pack = _signed_pack(built, tmp_path)
    cert = built / "build" / SPEC / "signing" / "aero-test.cer"
    project = kept_project(tmp_path / "proj", pack, cert)
    proc = run(doit_argv(project, f"build:{SPEC}"))
    assert proc.returncode == 0, proc.stderr
    for arch in ("x86", "amd64"):
        given = {p.relative_to(pack / "win7" / arch): p.read_bytes() for p in (pack / "win7" / arch).rglob("*")
                 if p.is_file()}
        got = {p.relative_to(stage(project, arch)): p.read_bytes() for p in stage(project, arch).rglob("*")
               if p.is_file()}
        assert got == given and len(given) >= 6
    import json

    manifest = json.loads((project / "dist" / SPEC / "guest-tools" / "manifest.json").read_text())
    assert manifest["signing_policy"] == "test" and manifest["certs_required"] is True
    assert _fat_file(project / "dist" / SPEC / VHD, "aero-test.cer") == cert.read_bytes()
    iso = _iso_tree(project / "dist" / SPEC / ISO, tmp_path / "iso")
    (tmp_path / "cert.pem").write_bytes(subprocess.run(["openssl", "x509", "-inform", "DER", "-in",
                                                        str(iso / "aero-test.cer")], capture_output=True,
                                                       check=True).stdout)
    for cat in sorted((iso / "win7").rglob("*.cat")):  # the oracle, with the certificate the medium carries
        ok = subprocess.run([tool, "verify", "-CAfile", str(tmp_path / "cert.pem"), "-in", str(cat)],
                            capture_output=True, text=True)
        assert ok.returncode == 0, ok.stdout + ok.stderr


@pytest.mark.parametrize("damage", ["other-signer", "catalog", "embedded"])
def test_a_kept_package_that_does_not_verify_names_the_package_and_file(
        built: Path, tmp_path: Path, own_pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        damage: str) -> None:
    need_tool("osslsigncode")
    pack = _signed_pack(built, tmp_path)
    cert = built / "build" / SPEC / "signing" / "aero-test.cer"
    if damage == "other-signer":
        cert = own_pair[0]  # the packages are not signed with this one
        victim = "win7/amd64/viostor/viostor.cat"  # the first file checked of the spec's first driver
    elif damage == "catalog":
        victim = "win7/amd64/netkvm/netkvm.cat"
        _flip_in_signature(pack / victim)
    else:
        victim = "win7/amd64/viostor/viostor.sys"
        _flip_in_signature(pack / victim)
    project = kept_project(tmp_path / "proj", pack, cert)
    before = {p: p.read_bytes() for p in pack.rglob("*") if p.is_file()}
    assert run_doit(project, f"stage:{SPEC}:amd64") != 0
    out = capsys.readouterr()
    errors = [line for line in (out.err + out.out).splitlines() if line.startswith("error:")]
    package, name = victim.rsplit("/", 1)
    assert len(errors) == 1 and f"package {package}: {name}" in errors[0], errors
    assert {p: p.read_bytes() for p in pack.rglob("*") if p.is_file()} == before  # never re-signed
    assert not list(stage(project, "amd64").rglob("*.cat"))


@pytest.mark.parametrize(("signing", "expect"), [
    ({"mode": "keep"}, "mode: keep needs cert:"),
    ({"mode": "keep", "cert": "x.cer", "key": "/k.pem"}, "signs nothing, but key is set too"),
    ({"mode": "keep", "cert": "x.cer", "dual_sign": True}, "signs nothing, but dual_sign is set too"),
])
def test_keep_block_errors(tmp_path: Path, signing: dict[str, Any], expect: str) -> None:
    from aero_media.errors import SpecError
    from aero_media.spec.load import load_spec

    project = signed_project(tmp_path / "proj", signing)
    with pytest.raises(SpecError) as exc:
        load_spec(project / "specs" / f"{SPEC}.yaml", Context(root=project))
    assert expect in exc.value.render()
