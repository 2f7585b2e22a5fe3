r"""Everything Windows boots from: the recovery image inside each install image, and opt-in nointegritychecks.

The serviced ``Windows\System32\Recovery\winre.wim`` is taken out of the published
install.wim and every change servicing.json lists for it is read back with hivex
(``hive.read_value``, over ``hivexsh``) and with regipy; the spec's opt-out leaves it
byte for byte as it was; an edition without one is fine; a damaged one is a one-line
error. ``nointegritychecks`` is never set unless asked for.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from aero_media.servicing import bcd, hive, wim
from aero_media.servicing.edits import HiveFile
from aero_media.spec.load import load_contract
from aero_media.win7 import pnp
from tests.lib import win7image
from tests.lib.needs import need_tool
from tests.lib.project import REPO, make_project, run_doit
from tests.servicing.test_service_stage import PAIR, SPEC, extracted_hive, out, record, spec_for
from tests.servicing.test_service_stage import serviced as serviced  # the test-signed sample, serviced by default

pytestmark = pytest.mark.integration

WINRE = "Windows/System32/Recovery/winre.wim"
CCS = "ControlSet001"


def _readme(iso: Path, tmp: Path) -> str:
    """The serviced ISO's README, read with xorriso (a reader we did not write), from its Joliet tree."""
    need_tool("xorriso", "to read the serviced ISO")
    dest = tmp / "readme.txt"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/AERO_README.TXT", str(dest)],
                   check=True, capture_output=True)
    data = dest.read_bytes()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    return data.decode("ascii")


def _winre(install_wim: Path, index: int, tmp: Path) -> Path:
    """The recovery image of ``install_wim`` image ``index``, extracted."""
    return extracted_hive(tmp, install_wim, index, WINRE)


def _read_back(winre: Path, image: dict[str, Any], tmp: Path) -> int:
    """Every change listed for one recovery image is in it, by hivex and by regipy; return how many changed."""
    regipy = pytest.importorskip("regipy")
    changed = 0
    for change in image["registry"]:
        path = extracted_hive(tmp / f"{image['index']}-{change['hive'].replace('/', '_')}", winre, image["index"],
                              change["hive"])
        value = hive.read_value(path, change["key"], change["name"])
        assert value is not None and value.record() == change["new"], change
        key = regipy.registry.RegistryHive(str(path)).get_key("\\" + change["key"])
        by_name = {v.name.lower(): v for v in key.iter_values()}
        assert change["name"].lower() in by_name, change
        changed += change["changed"]
    return changed


def test_each_editions_recovery_image_gets_the_boot_storage_and_certificate_edits(serviced: Path,
                                                                                   tmp_path: Path) -> None:
    rec = record(serviced)
    installs = [i for i in rec["images"] if i["kind"] == "install"]
    assert len(installs) == 2
    contract = load_contract(REPO / "specs" / "devices.yaml")
    blk = contract.device("virtio-blk")
    hashes = set()
    for image in installs:
        recovery = image["recovery"]
        assert recovery["serviced"] is True and recovery["path"] == "Windows\\System32\\Recovery\\winre.wim"
        assert WINRE in {f["path"] for f in image["files"]}
        winre = _winre(out(serviced) / "install.wim", image["index"], tmp_path / f"e{image['index']}")
        assert [i["kind"] for i in recovery["images"]] == ["recovery"]
        assert _read_back(winre, recovery["images"][0], tmp_path / f"r{image['index']}") > 10
        # What the table says, checked against the image itself rather than the record alone.
        hives = tmp_path / f"h{image['index']}"
        system = extracted_hive(hives, winre, 1, HiveFile.SYSTEM.value)
        software = extracted_hive(hives, winre, 1, HiveFile.SOFTWARE.value)
        assert hive.read_value(system, f"{CCS}\\Services\\viostor", "Start") == hive.RegValue.dword("Start", 0)
        for key in pnp.cdd_keys(blk, transitional=True):
            assert hive.read_value(system, f"{CCS}\\Control\\CriticalDeviceDatabase\\{key}", "Service") == \
                hive.RegValue.sz("Service", "viostor"), key
        certs = hive.read_key(software, "Microsoft\\SystemCertificates\\ROOT\\Certificates")
        assert certs is not None and len(certs.subkeys) == 1
        assert hive.read_value(software, "Microsoft\\Windows\\CurrentVersion", "DevicePath") == \
            hive.RegValue.expand_sz("DevicePath", "%SystemRoot%\\inf")  # install-only edits stay out
        assert wim.stored_path(winre, 1, "Windows/System32/drivers/viostor.sys") is not None
        assert wim.images(winre)[0].boot  # still its own boot image
        hashes.add(wim.content_hash(out(serviced) / "install.wim", image["index"], WINRE))
    # The editions shared one recovery image: serviced once, the same bytes in each, stored once.
    assert len(hashes) == 1 and installs[0]["recovery"]["source_sha1"] == installs[1]["recovery"]["source_sha1"]


def test_opt_ins_are_off_by_default(serviced: Path, tmp_path: Path) -> None:
    rec = record(serviced)
    assert rec["options"] == {"winre": True, "testsigning": True, "nointegritychecks": False}
    nested = [c for i in rec["images"] for r in [i.get("recovery", {})] for n in r.get("images", ())
              for c in n["registry"]]
    everything = [*rec["media_bcd"], *(c for i in rec["images"] for c in i["registry"]), *nested]
    assert any(c["key"].endswith(f"\\Elements\\{bcd.TESTSIGNING}") for c in everything)
    assert not any(c["key"].endswith(f"\\Elements\\{bcd.NOINTEGRITYCHECKS}") for c in everything)
    template = extracted_hive(tmp_path, out(serviced) / "install.wim", 1, HiveFile.BCD_TEMPLATE.value)
    for guid in (bcd.GLOBAL_SETTINGS, bcd.BOOTLOADER_SETTINGS):
        assert hive.read_key(template, f"Objects\\{guid}\\Elements\\{bcd.NOINTEGRITYCHECKS}") is None
    text = _readme(out(serviced) / "win7-aero.iso", tmp_path)
    assert "Recovery images: serviced" in text and "set install_media.winre: false" in text
    assert "nointegritychecks: off (the default)" in text and "set install_media.nointegritychecks: true" in text
    assert text.count("winre.wim: serviced") == 2 and "Test mode (testsigning): on" in text
    assert record(serviced)["answer_file"] is None
    assert "Answer file: none (the default)" in text and "set install_media.answer_file: drivers-only" in text
    assert record(serviced)["readme"]["sha256"] == hashlib.sha256(text.encode("ascii")).hexdigest()


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, media_iso: Path) -> Path:
    """A project whose drivers are staged once; each test below re-services it with other install_media settings."""
    need_tool("osslsigncode")
    need_tool("wimlib-imagex")
    need_tool("hivexregedit")
    from aero_media.devtools.testcert import make_test_cert

    if not PAIR:
        made = make_test_cert(tmp_path_factory.mktemp("home") / "aero", not_before=315532800)
        PAIR.update(cert=str(made.cer), key=str(made.key_pem))
    return make_project(tmp_path_factory.mktemp("winre") / "proj")


def _service(project: Path, media: dict[str, Any], iso: Path | None = None) -> int:
    spec_for(project, iso or REPO / "LICENSE")  # any file for the pin: replaced below when WIMs are given
    data = yaml.safe_load((project / "specs" / f"{SPEC}.yaml").read_text())
    if iso is None:
        data["install_media"] = media
    else:
        data["install_media"].update(media)
    (project / "specs" / f"{SPEC}.yaml").write_text(yaml.safe_dump(data))
    return run_doit(project, f"service:{SPEC}")


def test_the_opt_out_leaves_winre_alone_and_nointegritychecks_is_set_when_asked(
        staged: Path, media_iso: Path, media_tree: win7image.Media, tmp_path: Path) -> None:
    regipy = pytest.importorskip("regipy")
    assert _service(staged, {"winre": False, "nointegritychecks": True}, media_iso) == 0
    rec = record(staged)
    assert rec["options"] == {"winre": False, "testsigning": True, "nointegritychecks": True}
    for image in (i for i in rec["images"] if i["kind"] == "install"):
        assert image["recovery"]["serviced"] is False and "install_media.winre" in image["recovery"]["why"]
        assert WINRE not in {f["path"] for f in image["files"]}
        assert wim.content_hash(out(staged) / "install.wim", image["index"], WINRE) == \
            wim.content_hash(media_tree.install_wim, image["index"], WINRE)
        template = extracted_hive(tmp_path / str(image["index"]), out(staged) / "install.wim", image["index"],
                                  HiveFile.BCD_TEMPLATE.value)
        reg = regipy.registry.RegistryHive(str(template))
        for guid in (bcd.GLOBAL_SETTINGS, bcd.BOOTLOADER_SETTINGS):
            key = f"Objects\\{guid}\\Elements\\{bcd.NOINTEGRITYCHECKS}"
            assert hive.read_value(template, key, "Element") == bcd.boolean(True)
            assert [v.value for v in reg.get_key("\\" + key).iter_values()] == ["01"]
    stores = {c["hive"] for c in rec["media_bcd"] if c["key"].endswith(f"\\Elements\\{bcd.NOINTEGRITYCHECKS}")
              and c["changed"]}
    assert stores == {HiveFile.MEDIA_BCD_BIOS.value, HiveFile.MEDIA_BCD_UEFI.value}
    text = _readme(out(staged) / "win7-aero.iso", tmp_path)
    assert "Recovery images: left as they were" in text and "drop install_media.winre: false" in text
    assert "nointegritychecks: ON" in text and "winre.wim: not serviced" in text


def test_an_edition_without_winre_is_fine_and_a_damaged_one_is_one_line(
        staged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dvd = win7image.make_media(tmp_path / "dvd", "amd64", winre=("HomePremium",))
    assert _service(staged, {"boot_wim": str(dvd.boot_wim), "install_wim": str(dvd.install_wim)}) == 0
    by_name = {i["name"]: i["recovery"] for i in record(staged)["images"] if i["kind"] == "install"}
    assert by_name["Windows 7 HomePremium"]["serviced"] is True
    assert by_name["Windows 7 Ultimate"]["serviced"] is False and "has no" in by_name["Windows 7 Ultimate"]["why"]
    assert wim.content_hash(out(staged) / "install.wim", 2, WINRE) is None

    capsys.readouterr()
    bad = win7image.make_media(tmp_path / "bad", "amd64", winre_bytes=b"MSWIM\0\0\0" + b"\xff" * 200)
    assert _service(staged, {"boot_wim": str(bad.boot_wim), "install_wim": str(bad.install_wim)}) != 0
    text = "".join(capsys.readouterr())
    lines = [line for line in text.splitlines() if "winre.wim" in line]
    assert lines and "Traceback" not in text, text
    assert "install.wim image 1" in lines[0] and "install_media.winre" in lines[0], lines
    assert str(tmp_path) not in lines[0] and "build" not in lines[0].split("winre.wim", 1)[1]


def test_service_iso_flags_set_the_two_settings(tmp_path: Path, media_iso: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``--no-winre`` and ``--nointegritychecks`` are the command's names for the two settings (off by default)."""
    from aero_media import cli
    from tests.lib.project import expanded_sample

    pack = expanded_sample(tmp_path / "pack")
    seen = []

    class Stop(Exception):
        pass

    def capture(ctx: object, specs: list[Any], *args: object) -> None:
        seen.append(specs[0].install_media)
        raise Stop

    monkeypatch.setattr(cli, "run_graph", capture)
    base = ["service-iso", "--windows-iso", str(media_iso), "--drivers-root", str(pack),
            "--allow-placeholder-catalogs"]
    for i, extra in enumerate(([], ["--no-winre", "--nointegritychecks"])):
        with pytest.raises(Stop):
            cli.main([*base, "--output", str(tmp_path / f"o{i}" / "x.iso"), *extra])
    assert [(m.winre, m.nointegritychecks) for m in seen] == [(True, False), (False, True)]
    assert cli.SERVICE_ISO_FLAGS.fix("install_media.winre", "false") == "pass --no-winre"


def test_the_record_is_json_with_the_recovery_image_per_edition(serviced: Path) -> None:
    text = (out(serviced) / "servicing.json").read_text()
    rec = json.loads(text)
    assert all("recovery" in i for i in rec["images"] if i["kind"] == "install")
    assert all("recovery" not in i for i in rec["images"] if i["kind"] != "install")
    digest = hashlib.sha256((out(serviced) / "install.wim").read_bytes()).hexdigest()
    assert {o["path"]: o["sha256"] for o in rec["outputs"]}["install.wim"] == digest
