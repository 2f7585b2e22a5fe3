"""Guest Tools media: same tree in ISO and zip, manifest truth, certificate policies, no private keys."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from aero_media.media.notices import NOTICES_NAME
from aero_media.media.verify import read_iso
from aero_media.paths import MediaLayout
from aero_media.spec.load import load_contract
from tests.lib.drivers_fixtures import write_package
from tests.lib.project import REPO, make_project, run_doit, write_spec

DRIVERS = [
    {"name": "viostor", "device": "virtio-blk", "required": True},
    {"name": "netkvm", "device": "virtio-net", "required": True},
    {"name": "vioinput", "device": "virtio-input", "required": False},
]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_tree(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}


def signed_pack(root: Path) -> Path:
    """An Aero pack of clean, signed (throwaway key) packages for both arches."""
    contract = load_contract(REPO / "specs/devices.yaml")
    for arch in ("x86", "amd64"):
        for d in DRIVERS:
            write_package(root / MediaLayout.STAGED.driver_dir(arch, d["name"]), d["name"],
                          contract.device(d["device"]), arch)
    (root / NOTICES_NAME).write_text("# notices\n")
    return root


def gt_spec(project: Path, pack: str, *, placeholders: bool = False, signing: dict[str, Any] | None = None,
            **gt: Any) -> Path:
    source: dict[str, Any] = {"kind": "pack-dir", "path": pack}
    if pack == "prebuilt/sample":
        source["stand_ins"] = True  # the sample pack's .sys files are recipes
    data: dict[str, Any] = {"schema_version": 1, "name": "gt", "source": source,
                            "drivers": DRIVERS, "outputs": {"guest_tools": gt} if gt else {}}
    if signing:
        data["signing"] = signing
    if placeholders:  # the sample pack's catalogs are placeholders
        data["checks"] = {"placeholder_catalogs": "allow"}
    return write_spec(project, "gt", data)


def failed_build(project: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run build:gt, expect failure, return what it printed."""
    assert run_doit(project, "build:gt") != 0
    out = capsys.readouterr()
    return out.out + out.err


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


def test_sample_iso_and_zip_hold_the_manifest_tree(project: Path) -> None:
    assert run_doit(project) == 0
    dist = project / "dist/sample/guest-tools"
    manifest = json.loads((dist / "manifest.json").read_text())
    iso = read_iso(dist / "aero-guest-tools.iso")
    zipped = zip_tree(dist / "aero-guest-tools.zip")
    listed = {r["path"]: (r["sha256"], r["size"]) for r in manifest["files"]}
    assert set(iso.joliet) == set(zipped) == set(listed) | {"manifest.json"}
    for path, (digest, size) in listed.items():
        assert iso.joliet[path] == (digest, size), path
        assert (sha(zipped[path]), len(zipped[path])) == (digest, size), path
    assert zipped["manifest.json"] == (dist / "manifest.json").read_bytes()
    assert iso.label == "AERO_GUEST_TOOLS"
    for required in ("setup.cmd", "uninstall.cmd", "verify.cmd", "README.txt", "THIRD_PARTY_NOTICES.md",
                     "config/devices.cmd", "drivers/x86/viostor/viostor.inf", "drivers/amd64/netkvm/netkvm.sys"):
        assert required in listed, required
    assert not any(p.startswith("certs/") for p in listed)  # placeholder catalogs: no publisher to trust
    assert manifest["package"] == {"name": "aero-guest-tools", "version": "0.0.0", "build_id": "local",
                                   "source_date_epoch": 315532800}
    assert manifest["signing_policy"] == "none" and manifest["certs_required"] is False
    assert manifest["validation"]["amd64"]["error"] == 0
    assert str(project) not in json.dumps(manifest)
    report = json.loads((dist / "aero-guest-tools.iso.verify.json").read_text())
    assert report["ok"] and report["zip"]["files_checked"] == len(zipped)


def test_zip_is_sorted_with_fixed_dates_and_modes(project: Path) -> None:
    assert run_doit(project) == 0
    with zipfile.ZipFile(project / "dist/sample/guest-tools/aero-guest-tools.zip") as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    files = [n for n in names if not n.endswith("/")]
    assert files == sorted(files)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos if not i.is_dir()} == {0o100644}


def test_inf_paths_in_setup_config_exist_for_their_arch(project: Path) -> None:
    assert run_doit(project) == 0
    zipped = zip_tree(project / "dist/sample/guest-tools/aero-guest-tools.zip")
    media = zipped["config/media.cmd"].decode("ascii")
    assert "\r\n" in media
    infs = re.findall(r"drivers\\(x86|amd64)\\([A-Za-z0-9_]+)\\([A-Za-z0-9_]+\.inf)", media)
    assert {(a, d) for a, d, _ in infs} == {(a, d) for a in ("x86", "amd64") for d in ("viostor", "netkvm", "vioinput")}
    for arch, drv, inf in infs:
        assert f"drivers/{arch}/{drv}/{inf}" in zipped


def test_media_holds_what_the_scripts_check(project: Path) -> None:
    """config\\checks.cmd reads config/files.sha256 and finds its sha256 on a line of manifest.json."""
    assert run_doit(project) == 0
    zipped = zip_tree(project / "dist/sample/guest-tools/aero-guest-tools.zip")
    assert "config/checks.cmd" in zipped
    listed = {}
    for line in zipped["config/files.sha256"].decode("ascii").split("\r\n"):
        if line and not line.startswith("#"):
            digest, size, path = line.split(" ", 2)
            listed[path.replace("\\", "/")] = (digest, int(size))
    # Every file but the list itself and manifest.json (which lists the list), with its hash and size.
    assert set(listed) == set(zipped) - {"config/files.sha256", "manifest.json"}
    for path, (digest, size) in listed.items():
        assert (sha(zipped[path]), len(zipped[path])) == (digest, size), path
    manifest = zipped["manifest.json"].decode("utf-8")
    own = sha(zipped["config/files.sha256"])
    assert re.search(rf'^\s*"sha256": "{own}",?$', manifest, re.M), "checks.cmd would not find files.sha256"


def test_publisher_certificate_is_extracted_for_pretrust(project: Path, tmp_path: Path) -> None:
    signed_pack(project / "prebuilt/signed")
    gt_spec(project, "prebuilt/signed")
    assert run_doit(project, "build:gt") == 0
    manifest = json.loads((project / "dist/gt/guest-tools/manifest.json").read_text())
    certs = [r["path"] for r in manifest["files"] if r["path"].startswith("certs/")]
    assert len(certs) == 1 and certs[0].endswith(".cer")
    assert manifest["certs"][0]["stores"] == ["TrustedPublisher"]
    zipped = zip_tree(project / "dist/gt/guest-tools/aero-guest-tools.zip")
    assert certs[0].split("/")[1] in zipped["config/media.cmd"].decode()
    from asn1crypto import x509

    assert x509.Certificate.load(zipped[certs[0]]).subject.native["common_name"]


@pytest.mark.parametrize("policy,trust,expect_certs", [("none", False, 0), ("production", True, 0)])
def test_no_certs_when_policy_says_so(project: Path, policy: str, trust: bool, expect_certs: int) -> None:
    signed_pack(project / "prebuilt/signed")
    gt_spec(project, "prebuilt/signed", signing={"policy": policy, "trust_publisher": trust})
    assert run_doit(project, "build:gt") == 0
    manifest = json.loads((project / "dist/gt/guest-tools/manifest.json").read_text())
    assert len([r for r in manifest["files"] if r["path"].startswith("certs/")]) == expect_certs
    assert manifest["certs_required"] is False


def test_testsigning_requires_certs(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_spec(project, "prebuilt/sample", placeholders=True, signing={"policy": "test"})
    assert "signing.policy is test but signing.certs is empty" in failed_build(project, capsys)


def test_testsigning_ships_test_cert_to_root_and_trustedpublisher(project: Path, tmp_path: Path) -> None:
    from aero_media.devtools.testcert import make_test_cert

    tc = make_test_cert(tmp_path / "tc")
    gt_spec(project, "prebuilt/sample", placeholders=True, signing={"policy": "test", "certs": [str(tc.cer)]})
    assert run_doit(project, "build:gt") == 0
    manifest = json.loads((project / "dist/gt/guest-tools/manifest.json").read_text())
    assert manifest["certs_required"] is True
    assert manifest["certs"][0]["stores"] == ["Root", "TrustedPublisher"]
    assert manifest["certs"][0]["sha1_thumbprint"] == tc.thumbprint
    zipped = zip_tree(project / "dist/gt/guest-tools/aero-guest-tools.zip")
    assert zipped[manifest["certs"][0]["path"]] == tc.cer.read_bytes()
    assert not any(n.endswith((".pfx", ".pem", ".key")) for n in zipped)


def test_private_keys_are_refused(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aero_media.devtools.testcert import make_test_cert

    tc = make_test_cert(tmp_path / "tc")
    # A key passed off as a certificate.
    gt_spec(project, "prebuilt/sample", placeholders=True, signing={"policy": "test", "certs": [str(tc.key_pem)]})
    assert "holds a PEM private key; private keys never go on the media" in failed_build(project, capsys)
    assert not (project / "dist/gt/guest-tools/aero-guest-tools.zip").exists()
    # A .pfx dropped into a driver package.
    (project / "prebuilt/sample/win7/x86/viostor/signing.pfx").write_bytes(tc.pfx.read_bytes())
    gt_spec(project, "prebuilt/sample", placeholders=True, signing={"policy": "none"})
    assert "win7/x86/viostor/signing.pfx is a private-key container" in failed_build(project, capsys)
    assert not (project / "build/gt/stage/x86.json").exists()


def test_certs_outside_testsigning_are_rejected(project: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from aero_media.devtools.testcert import make_test_cert

    tc = make_test_cert(tmp_path / "tc")
    gt_spec(project, "prebuilt/sample", placeholders=True, signing={"policy": "none", "certs": [str(tc.cer)]})
    assert "signing.certs is only used with signing.policy test" in failed_build(project, capsys)


def test_make_test_cert_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aero_media.cli import main

    assert main(["make-test-cert", "--out", str(tmp_path / "c"), "--name", "t"]) == 0
    assert (tmp_path / "c/t.cer").is_file() and (tmp_path / "c/t.pfx").stat().st_mode & 0o077 == 0
    assert main(["make-test-cert", "--out", str(tmp_path / "c"), "--name", "t"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_make_test_cert_refuses_to_write_a_key_into_the_checkout(project: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from aero_media.cli import main

    assert main(["--root", str(project), "make-test-cert", "--out", str(project / "certs")]) == 2
    assert "inside the checkout" in capsys.readouterr().err
    assert not (project / "certs").exists()
    (project / "repo" / ".git").mkdir(parents=True)  # any git work tree counts, wherever --root points
    assert main(["make-test-cert", "--out", str(project / "repo" / "sub" / "keys")]) == 2
    assert not (project / "repo" / "sub").exists()


def test_an_older_layouts_set_is_removed_but_other_outputs_stay(project: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    dist = project / "dist/sample"
    dist.mkdir(parents=True)
    legacy = ["aero-guest-tools.iso", "aero-guest-tools.iso.verify.json", "aero-guest-tools.zip", "manifest.json"]
    for name in [*legacy, "notes-of-mine.txt"]:
        (dist / name).write_text("old\n")
    assert run_doit(project) == 0
    assert "removed the Guest Tools an older version left in dist/sample/" in capsys.readouterr().err
    assert sorted(p.name for p in dist.iterdir()) == [
        "aero-virtio-win7-drivers-fat.vhd", "aero-virtio-win7-drivers-fat.vhd.verify.json",
        "aero-virtio-win7-drivers.iso", "aero-virtio-win7-drivers.iso.verify.json", "guest-tools",
        "notes-of-mine.txt"]


def test_verify_iso_recognises_guest_tools_media(project: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from aero_media.cli import main
    from aero_media.media.files import MediaFile
    from aero_media.media.isowriter import write_iso

    assert run_doit(project) == 0
    dist = project / "dist/sample/guest-tools"
    assert main(["verify-iso", "--iso", str(dist / "aero-guest-tools.iso")]) == 0
    assert "OK:" in capsys.readouterr().out
    # The same tree with setup.cmd changed: caught against the medium's own manifest.
    tree = zip_tree(dist / "aero-guest-tools.zip")
    tree["setup.cmd"] += b"rem changed\r\n"
    forged = tmp_path / "forged.iso"
    write_iso([MediaFile(p, data=d) for p, d in sorted(tree.items())], forged, "AERO_GUEST_TOOLS", 315532800)
    assert main(["verify-iso", "--iso", str(forged)]) == 1
    err = capsys.readouterr().err
    assert "setup.cmd: sha256" in err and "differs from manifest.json" in err
