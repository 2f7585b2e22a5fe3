"""The service stage end to end: a spec's install_media: serviced from a synthetic Windows 7 DVD by doit.

Every change servicing.json lists is read back from the published WIMs and ISO with
hivex and with regipy; untouched keys are identical; a second servicing changes
nothing; the ISO keeps its El Torito entries and boots in QEMU.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from aero_media.servicing import hive, wim
from aero_media.servicing.isorepack import read_report
from tests.lib import win7image
from tests.lib.needs import need_tool
from tests.lib.project import REPO, make_project, run_doit, write_spec

pytestmark = pytest.mark.integration

SPEC = "serviced"


PAIR: dict[str, str] = {}


def spec_for(project: Path, iso: Path, **extra: Any) -> None:
    """The test-signed sample with install_media:, signed with one pair kept outside every project."""
    data = yaml.safe_load((REPO / "specs" / "sample-testsigned.yaml").read_text())
    if PAIR:
        data["signing"] = {"mode": "test", **PAIR}
    data["install_media"] = {"path": str(iso), "sha256": hashlib.sha256(iso.read_bytes()).hexdigest(), **extra}
    data["outputs"]["fat_disk"] = {"enabled": False}
    write_spec(project, SPEC, data)


@pytest.fixture(scope="module")
def serviced(tmp_path_factory: pytest.TempPathFactory, media_iso: Path) -> Path:
    need_tool("osslsigncode")
    need_tool("wimlib-imagex")
    need_tool("hivexregedit")
    from aero_media.devtools.testcert import make_test_cert

    made = make_test_cert(tmp_path_factory.mktemp("home") / "aero", not_before=315532800)
    PAIR.update(cert=str(made.cer), key=str(made.key_pem))
    project = make_project(tmp_path_factory.mktemp("svc") / "proj")
    spec_for(project, media_iso)
    assert run_doit(project, f"service:{SPEC}") == 0
    return project


def out(project: Path) -> Path:
    return project / "dist" / SPEC / "install-media"


def record(project: Path) -> dict[str, Any]:
    return json.loads((out(project) / "servicing.json").read_text())


def extracted_hive(tmp: Path, wim_path: Path, index: int, hive_path: str) -> Path:
    wim.extract(wim_path, index, [hive_path], tmp)
    found = wim.find_case_insensitive(tmp, hive_path)
    assert found is not None
    return found


def test_every_listed_change_is_in_the_published_images(serviced: Path, tmp_path: Path) -> None:
    regipy = pytest.importorskip("regipy")
    rec = record(serviced)
    assert rec["arch"] == "amd64" and {i["kind"] for i in rec["images"]} == {"winpe", "setup", "install"}
    changed = 0
    for image in rec["images"]:
        for change in image["registry"]:
            path = extracted_hive(tmp_path / f"{image['wim']}-{image['index']}-{change['hive'].replace('/', '_')}",
                                  out(serviced) / image["wim"], image["index"], change["hive"])
            value = hive.read_value(path, change["key"], change["name"])
            assert value is not None and value.record() == change["new"], change
            # A second, independent reader: regipy.
            reg = regipy.registry.RegistryHive(str(path))
            key = reg.get_key("\\" + change["key"].replace("/", "\\"))
            names = {v.name.lower() for v in key.iter_values()}
            assert change["name"].lower() in names or (change["name"] == "" and "(default)" in names)
            changed += change["changed"]
    assert changed > 10
    kinds = {i["kind"]: i for i in rec["images"]}
    keys = {c["key"].lower() for c in kinds["setup"]["registry"]}
    assert any("criticaldevicedatabase\\pci#ven_1af4&dev_1042" in k for k in keys)
    for kind in ("install", "setup", "winpe"):  # boot.wim's Windows PE and Setup trust the signer too
        listed = {c["key"] for c in kinds[kind]["registry"] if c["hive"] == "Windows/System32/config/SOFTWARE"}
        assert {k.split("\\")[2] for k in listed if "SystemCertificates" in k} == {"ROOT", "TrustedPublisher"}, kind
    assert any(c["key"].endswith("\\Elements\\16000049") for c in kinds["install"]["registry"])
    files = {f["path"] for f in kinds["install"]["files"]}
    assert "Windows/System32/drivers/viostor.sys" in files and "Windows/Setup/Scripts/SetupComplete.cmd" in files
    assert any(f.startswith("Windows/Drivers/Aero/netkvm/") for f in files)


def test_boot_wim_setup_image_trusts_the_signing_certificate(serviced: Path, tmp_path: Path) -> None:
    """Read back with regipy: the certificate is in ROOT and TrustedPublisher of boot.wim index 2 (Setup), where
    Aero's tools/win7-slipstream/src/verify.rs looks for it, and of index 1 (Windows PE)."""
    regipy = pytest.importorskip("regipy.registry")
    from aero_media.servicing import certblob
    from aero_media.win7.certs import load_cert_file

    cert = load_cert_file(Path(PAIR["cert"]), "the test certificate")
    for index in (1, 2):
        path = extracted_hive(tmp_path / f"boot-{index}", out(serviced) / "boot.wim", index,
                              "Windows/System32/config/SOFTWARE")
        reg = regipy.RegistryHive(str(path))
        for store in ("ROOT", "TrustedPublisher"):
            key = reg.get_key(f"\\Microsoft\\SystemCertificates\\{store}\\Certificates\\{cert.thumbprint}")
            # regipy gives REG_BINARY data as hex text.
            got = [(v.name, bytes.fromhex(v.value) if isinstance(v.value, str) else v.value)
                   for v in key.get_values()]
            assert got == [("Blob", certblob.serialized_cert(cert.der))]


def test_untouched_keys_are_unchanged(serviced: Path, media_tree: win7image.Media, tmp_path: Path) -> None:
    for hive_name, keys in win7image.UNTOUCHED_KEYS.items():
        rel = f"Windows/System32/config/{hive_name}"
        before = extracted_hive(tmp_path / "before", media_tree.install_wim, 1, rel)
        after = extracted_hive(tmp_path / "after", out(serviced) / "install.wim", 1, rel)
        for key in keys:
            assert hive.read_key(before, key) == hive.read_key(after, key), key


def test_iso_keeps_its_boot_records_and_says_what_it_dropped(serviced: Path, media_iso: Path) -> None:
    before, after = read_report(media_iso), read_report(out(serviced) / "win7-aero.iso")
    assert [e.platform for e in before.boot_entries] == [e.platform for e in after.boot_entries]
    assert all(a.same_boot(b) for a, b in zip(before.boot_entries, after.boot_entries, strict=True))
    rec = record(serviced)
    assert "ISO 9660" in rec["file_systems"]["output"] and rec["file_systems"]["dropped"] == []
    assert rec["source"]["sha256"] == hashlib.sha256(media_iso.read_bytes()).hexdigest()
    assert any(f["path"].startswith("$WinPEDriver$/amd64/viostor/") for f in rec["winpe_drivers"])
    assert any(b["hive"] == "boot/BCD" and b["changed"] for b in rec["media_bcd"])


def test_the_users_iso_is_never_modified(serviced: Path, media_iso: Path) -> None:
    assert record(serviced)["source"]["sha256"] == hashlib.sha256(media_iso.read_bytes()).hexdigest()


def test_second_servicing_changes_nothing(serviced: Path, tmp_path: Path) -> None:
    """Servicing the serviced ISO again: every edit finds its value already there."""
    project = make_project(tmp_path / "again")
    serviced_iso = tmp_path / "serviced.iso"
    shutil.copyfile(out(serviced) / "win7-aero.iso", serviced_iso)
    spec_for(project, serviced_iso)
    assert run_doit(project, f"service:{SPEC}") == 0
    rec = record(project)
    assert [c for i in rec["images"] for c in i["registry"] if c["changed"]] == []
    assert [c for c in rec["media_bcd"] if c["changed"]] == []


def test_doit_again_runs_nothing(serviced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run_doit(serviced, f"service:{SPEC}") == 0
    assert ".  service:" not in capsys.readouterr().err


def test_a_published_file_that_was_changed_or_deleted_is_rebuilt(serviced: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing reads the published WIMs back, so the task checks them against servicing.json."""
    (out(serviced) / "boot.wim").unlink()
    (out(serviced) / "install.wim").write_bytes(b"x\n")
    capsys.readouterr()
    assert run_doit(serviced, f"service:{SPEC}") == 0
    assert ".  service:" in capsys.readouterr().err
    listed = {o["path"]: o["sha256"] for o in record(serviced)["outputs"]}
    assert set(listed) == {"boot.wim", "install.wim", "servicing.json", "win7-aero.iso"} - {"servicing.json"}
    for name, digest in listed.items():
        assert hashlib.sha256((out(serviced) / name).read_bytes()).hexdigest() == digest, name
    assert run_doit(serviced, f"service:{SPEC}") == 0
    assert ".  service:" not in capsys.readouterr().err


def test_the_output_is_never_an_input(tmp_path: Path, media_iso: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aero_media.cli import main

    iso = tmp_path / "mine.iso"
    shutil.copyfile(media_iso, iso)
    before = hashlib.sha256(iso.read_bytes()).hexdigest()
    pack = tmp_path / "pack"
    pack.mkdir()
    for target in (iso, pack / "out.iso"):
        assert main(["service-iso", "--windows-iso", str(iso), "--drivers-root", str(pack), "--output", str(target),
                     "--allow-placeholder-catalogs"]) == 2
        assert "--output" in capsys.readouterr().err
    assert hashlib.sha256(iso.read_bytes()).hexdigest() == before
    assert main(["service-iso", "--windows-iso", str(iso), "--drivers-root", str(pack), "--output",
                 str(tmp_path / "o" / "servicing.json"), "--allow-placeholder-catalogs"]) == 2
    assert "is already used by the servicing record" in capsys.readouterr().err


def test_only_what_the_stage_made_is_ever_removed(tmp_path: Path, media_iso: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The work folder is emptied and install-media/ replaced whole: a file of the user's in either stops the stage."""
    need_tool("wimlib-imagex")
    project = make_project(tmp_path / "proj")
    spec_for(project, media_iso)
    strays = [project / "build" / SPEC / "service" / "win7.iso", project / "dist" / SPEC / "install-media" / "notes"]
    for stray, why in zip(strays, ("not made by this tool", "not published by this tool"), strict=True):
        stray.parent.mkdir(parents=True)
        stray.write_bytes(b"the user's only copy")
        assert run_doit(project, f"service:{SPEC}") != 0
        text = "".join(capsys.readouterr())
        assert why in text and "Traceback" not in text, text
        assert stray.read_bytes() == b"the user's only copy"
        shutil.rmtree(stray.parent)


def test_a_wrong_pin_and_a_non_windows7_image_are_refused(tmp_path: Path, media_iso: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    need_tool("wimlib-imagex")
    project = make_project(tmp_path / "proj")
    spec_for(project, media_iso)
    data = yaml.safe_load((project / "specs" / f"{SPEC}.yaml").read_text())
    data["install_media"]["sha256"] = "0" * 64
    (project / "specs" / f"{SPEC}.yaml").write_text(yaml.safe_dump(data))
    assert run_doit(project, f"service:{SPEC}") != 0
    text = "".join(capsys.readouterr())
    assert "install_media.sha256 pins " + "0" * 64 in text
    # A Windows 8 install.wim beside a Windows 7 boot.wim.
    eight = win7image.make_wim(tmp_path / "install.wim", [win7image.ImageSpec(
        win7image.windows_tree(tmp_path / "w8"), "Windows 8", win7image.win7_properties("amd64", build=9200) | {
            "WINDOWS/VERSION/MINOR": "2"})])
    boot = tmp_path / "boot.wim"
    shutil.copyfile(win7image.make_media(tmp_path / "dvd", "amd64").boot_wim, boot)
    data["install_media"] = {"boot_wim": str(boot), "install_wim": str(eight)}
    (project / "specs" / f"{SPEC}.yaml").write_text(yaml.safe_dump(data))
    assert run_doit(project, f"service:{SPEC}") != 0
    text = "".join(capsys.readouterr())
    assert "6.2" in text and "Windows 7" in text and "Traceback" not in text


def test_the_serviced_iso_boots(serviced: Path, tmp_path: Path) -> None:
    from tests.servicing.test_isorepack import _boot_marker

    serial = _boot_marker(out(serviced) / "win7-aero.iso", tmp_path / "serial.log", 20)
    assert win7image.BOOT_MARKER + b"\r\n" in serial


def test_service_iso_command(tmp_path: Path, media_iso: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same without a spec: aero-media service-iso (a test-signed pack: the sample, re-signed)."""
    need_tool("wimlib-imagex")
    need_tool("hivexregedit")
    from aero_media.cli import main
    from tests.lib.project import expanded_sample

    pack = expanded_sample(tmp_path / "pack")
    out_iso = tmp_path / "out" / "win7-aero.iso"
    assert main(["service-iso", "--windows-iso", str(media_iso), "--drivers-root", str(pack), "--output",
                 str(out_iso), "--allow-placeholder-catalogs"]) == 0
    rec = json.loads((out_iso.parent / "win7-aero.iso.servicing.json").read_text())
    assert rec["images"] and all(i["kind"] != "install" or i["files"] for i in rec["images"])
    assert [o["path"] for o in rec["outputs"]] == ["win7-aero.iso"]  # what it delivers, nothing else
    assert rec["outputs"][0]["sha256"] == hashlib.sha256(out_iso.read_bytes()).hexdigest()
    assert sorted(p.name for p in out_iso.parent.iterdir()) == ["win7-aero.iso", "win7-aero.iso.servicing.json"]
    # No answer file unless asked for: Setup stops on one it cannot parse.
    assert rec["answer_file"] is None
    from aero_media.sources.isoread import IsoTree

    with IsoTree.open_path(out_iso) as tree:
        assert "autounattend.xml" not in {e.path.lower() for e in tree.entries()}
    # Flags, not spec fields, in its errors.
    assert main(["service-iso", "--windows-iso", str(media_iso), "--drivers-root", str(pack), "--output",
                 str(tmp_path / "x.iso"), "--testsigning"]) == 2
    assert "--testsigning needs the test certificate" in capsys.readouterr().err
    assert main(["service-iso", "--windows-iso", str(media_iso), "--drivers-root", str(pack), "--output",
                 str(tmp_path / "x.iso"), "--arch", "x86", "--allow-placeholder-catalogs"]) != 0
    err = capsys.readouterr().err
    assert "x86" in err and "amd64" in err and "Traceback" not in err
    assert "--arch" in err and "target.arches" not in err, err
    (tmp_path / "empty.cer").write_bytes(b"")
    assert main(["service-iso", "--windows-iso", str(media_iso), "--drivers-root", str(pack), "--output",
                 str(tmp_path / "x.iso"), "--testsigning", "--cert", str(tmp_path / "empty.cer"),
                 "--allow-placeholder-catalogs"]) != 0
    err = capsys.readouterr().err
    assert "--cert" in err and "signing.certs" not in err, err


def test_service_iso_names_no_temp_folder_and_calls_a_folder_or_device_that(
        tmp_path: Path, media_iso: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Its work folder is deleted before the user reads the error: a full disk is named by --output's folder."""
    need_tool("wimlib-imagex")
    from collections import namedtuple

    from aero_media.cli import main
    from tests.lib.project import expanded_sample

    pack = expanded_sample(tmp_path / "pack")
    out_dir = tmp_path / "out"
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(wim.shutil, "disk_usage", lambda _p: usage(2**30, 2**30 - 2**20, 2**20))
    assert main(["service-iso", "--windows-iso", str(media_iso), "--drivers-root", str(pack), "--output",
                 str(out_dir / "o.iso"), "--allow-placeholder-catalogs"]) != 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "MiB free" in lines[0], err
    assert ".aero-service-" not in err and str(out_dir) in lines[0], err
    assert [p.name for p in out_dir.iterdir()] == []
    monkeypatch.undo()
    # A folder or a device where a file belongs is called that, never "no such file".
    for flag, bad in (("--windows-iso", pack), ("--windows-iso", Path("/dev/null")), ("--cert", pack)):
        argv = ["service-iso", "--windows-iso", str(media_iso), "--drivers-root", str(pack), "--output",
                str(out_dir / "o.iso"), "--testsigning", "--cert", str(tmp_path / "a.cer")]
        argv[argv.index(flag) + 1] = str(bad)
        (tmp_path / "a.cer").write_bytes(b"")
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{flag} {bad}: is a " in err and "no such file" not in err, err


def test_an_install_wim_too_big_for_the_rebuilt_iso_is_refused_before_copying(
        tmp_path: Path, media_iso: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4 GiB install.wim is read (several extents), but no rebuilt ISO could carry it: said before any copy.

    The limit is lowered to the synthetic DVD's install.wim size, as writing 4 GiB is no test.
    """
    need_tool("wimlib-imagex")
    from aero_media.cli import main
    from aero_media.servicing import isorepack
    from aero_media.sources.isoread import IsoTree
    from tests.lib.project import expanded_sample

    with IsoTree.open_path(media_iso) as tree:
        size = next(e.size for e in tree.entries() if e.path.lower() == "sources/install.wim")
    monkeypatch.setattr(isorepack, "MAX_FILE", size)
    copied: list[Path] = []
    monkeypatch.setattr(wim, "images", lambda p: copied.append(p) or [])
    pack = expanded_sample(tmp_path / "pack")
    assert main(["service-iso", "--windows-iso", str(media_iso), "--drivers-root", str(pack), "--output",
                 str(tmp_path / "out" / "o.iso"), "--allow-placeholder-catalogs"]) == 2
    err = capsys.readouterr().err
    assert "sources/install.wim" in err and "several extents" in err and "wimlib-imagex export" in err, err
    assert copied == [] and "appears twice" not in err


def test_missing_wimlib_is_one_line(tmp_path: Path, media_iso: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from aero_media.cli import main
    from tests.lib.project import expanded_sample

    pack = expanded_sample(tmp_path / "pack")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    rc = main(["service-iso", "--windows-iso", str(media_iso), "--drivers-root", str(pack), "--output",
               str(tmp_path / "o.iso"), "--allow-placeholder-catalogs"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc != 0 and len(lines) == 1 and "wimtools" in lines[0], err
    assert not (tmp_path / "o.iso").exists()


def test_a_udf_only_dvd_is_serviced_end_to_end(serviced: Path, media_tree: win7image.Media,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    """Microsoft's shape: every file in UDF only, the ISO 9660 side a README.TXT stub (made by pycdlib)."""
    pytest.importorskip("pycdlib")
    need_tool("mkfs.fat", "to make the EFI boot floppy image")
    folder = tmp_path_factory.mktemp("stub")
    stub = win7image.make_udf_stub_iso(media_tree.root, folder / "stub.iso", win7image.efi_floppy(folder / "e.bin"))
    project = make_project(folder / "proj")
    spec_for(project, stub)
    assert run_doit(project, f"service:{SPEC}") == 0
    iso = out(project) / "win7-aero.iso"
    rec = record(project)
    assert rec["file_systems"]["dropped"] == [] and "UDF" in rec["file_systems"]["output"]
    listed = {o["path"]: o["sha256"] for o in rec["outputs"]}
    assert listed["win7-aero.iso"] == hashlib.sha256(iso.read_bytes()).hexdigest()  # hashed as it was written
    from aero_media.sources.isoread import IsoTree

    with IsoTree.open_path(iso) as tree:
        assert tree.reader == "udf"
        entries = {e.path: e for e in tree.entries()}
        with tree.open(entries["sources/install.wim"]) as fp:
            assert hashlib.sha256(fp.read()).hexdigest() == listed["install.wim"]
        assert "setup.exe" in entries and any(p.startswith("$WinPEDriver$/amd64/viostor/") for p in entries)
    assert len(read_report(iso).boot_entries) == 2


def test_the_published_wims_are_whole_and_the_isos_own(serviced: Path) -> None:
    """The working copies are sparse: before they are published their holes are filled from the input ISO,
    so each published WIM is the bytes the rebuilt ISO carries, and wimlib finds every blob intact."""
    from aero_media.sources.isoread import IsoTree

    listed = {o["path"]: o["sha256"] for o in record(serviced)["outputs"]}
    with IsoTree.open_path(out(serviced) / "win7-aero.iso") as tree:
        entries = {e.path: e for e in tree.entries()}
        for name in ("boot.wim", "install.wim"):
            published = out(serviced) / name
            assert hashlib.sha256(published.read_bytes()).hexdigest() == listed[name]
            with tree.open(entries[f"sources/{name}"]) as fp:
                assert hashlib.sha256(fp.read()).hexdigest() == listed[name]
            subprocess.run(["wimlib-imagex", "verify", str(published)], check=True, capture_output=True)
