"""The answer file on a serviced DVD, end to end: placed at the ISO's root with the drivers it names, valid, recorded.

A full answer file's secrets (from a file and from the environment) reach the medium and nothing
else: no other file under build/ or dist/, no output of the run.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

from aero_media.answer import answerfile as af
from aero_media.servicing import readme
from aero_media.sources.isoread import IsoTree
from aero_media.sources.tree import EntryKind
from tests.lib.needs import need_tool
from tests.lib.project import REPO, expanded_sample, make_project, run_doit, write_spec

pytestmark = pytest.mark.integration

PASSWORD = "Zq8-unguessable-Pw"
KEY = "Q7XKD-M3PRT-VW9HB-2CFYJ-K6GTN"


def iso_files(iso: Path) -> dict[str, bytes]:
    """Every file of the ISO's root and of win7/ (the answer file's drivers), read back."""
    out = {}
    with IsoTree.open_path(iso, iso.name) as tree:
        for e in tree.entries():
            if e.kind is EntryKind.FILE and ("/" not in e.path or e.path.lower().startswith("win7/")):
                with tree.open(e) as fp:
                    out[e.path.lower()] = fp.read()
    return out


def forms(secret: str) -> list[bytes]:
    """Every way a secret could land in a file: as text, UTF-16 (Windows' own), and hidden as Windows SIM does."""
    return [secret.encode(), secret.encode("utf-16-le"), af.hidden_password(secret).encode(),
            secret.lower().encode()]


def leaks(project: Path, skip: Path | None) -> list[str]:
    """Files of the project's build/ and dist/ (but ``skip``) that hold a secret in any form."""
    out = []
    for f in sorted(p for root in (project / "build", project / "dist") for p in root.rglob("*") if p.is_file()):
        if f != skip:
            body = f.read_bytes()
            out += [f"{f.relative_to(project)}: {s!r}" for s in (PASSWORD, KEY) if any(x in body for x in forms(s))]
    return out


def test_a_full_answer_file_puts_its_secrets_on_the_medium_and_nowhere_else(
        tmp_path: Path, media_iso: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    need_tool("wimlib-imagex")
    need_tool("hivexregedit")
    need_tool("xorriso")
    project = make_project(tmp_path / "proj")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "password.txt").write_text(PASSWORD + "\n")
    monkeypatch.setenv("AERO_TEST_PRODUCT_KEY", KEY)
    data = yaml.safe_load((REPO / "specs" / "sample.yaml").read_text())
    data["name"] = "answered"
    data["outputs"]["fat_disk"] = {"enabled": False}
    data["install_media"] = {"path": str(media_iso), "answer_file": "full", "unattended": {
        "locale": "en-US", "time_zone": "UTC", "account": "aero", "partitioning": "wipe-disk-0",
        "password_file": str(secrets / "password.txt"), "product_key_env": "AERO_TEST_PRODUCT_KEY"}}
    write_spec(project, "answered", data)
    from aero_media.servicing import service

    real_repack = service.repack
    during: list[list[str]] = []

    def repack_watched(src: Path, dest: Path, changes: dict[str, Path | bytes], **kw: object) -> object:
        # While the answer file waits for the ISO: it is held in memory only (no file a killed run would leave),
        # and nothing in the project leaks it.
        assert isinstance(changes[af.FILE_NAME], bytes)
        during.append(leaks(project, skip=None))
        return real_repack(src, dest, changes, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "repack", repack_watched)
    assert run_doit(project, "service:answered") == 0
    assert during == [[]]
    out = project / "dist" / "answered" / "install-media"
    iso = out / "win7-aero.iso"
    files = iso_files(iso)
    xml = files[af.FILE_NAME]
    assert af.problems(xml) == []
    assert KEY.encode() in xml and af.hidden_password(PASSWORD).encode() in xml
    record = json.loads((out / "servicing.json").read_text())
    answer = record["answer_file"]
    assert answer["variant"] == "full" and answer["arch"] == "amd64" and answer["partitioning"] == "wipe-disk-0"
    assert answer["secrets_from"] == {"password": str(secrets / "password.txt"),
                                      "product_key": "$AERO_TEST_PRODUCT_KEY"}
    assert "sha256" not in answer and "install_media.answer_file" in answer["turn_off"]
    # One README on the medium: servicing's, which says what the answer file does and how to turn it off.
    notes = files[readme.NAME.lower()]
    assert b"ERASES DISK 0" in notes and b"install_media.answer_file" in notes and b"locale en-US" in notes
    assert not any(n.startswith("aero-answer") for n in files)
    # Every path the answer file names under the DVD's letter holds a driver package on the ISO.
    for path in answer["driver_paths"]:
        folder = path.removeprefix("D:\\").replace("\\", "/").lower()
        assert any(f.startswith(folder + "/") and f.endswith(".inf") for f in files), path
    # The secrets: in the ISO (the medium), and in no other file of build/ or dist/, nor in anything printed.
    captured = capfd.readouterr()
    printed = (captured.out + captured.err).encode()
    assert leaks(project, skip=iso) == []
    assert not any(x in printed for s in (PASSWORD, KEY) for x in forms(s))
    assert not list(Path(__import__("tempfile").gettempdir()).glob("aero-answer-*"))  # no private copy, ever

    # A changed password or product key reruns the task: a keyed digest of them (never a plain hash) is in
    # its up-to-date data, under a random key of this checkout's own.
    key = project / "build" / af.KEY_NAME
    assert key.stat().st_mode & 0o777 == 0o600
    plain = [hashlib.sha256(s.encode()).hexdigest().encode() for s in (PASSWORD, KEY)]
    assert not [f for f in (project / "build").rglob("*") if f.is_file() and any(h in f.read_bytes() for h in plain)]
    assert run_doit(project, "service:answered") == 0
    assert ".  service:answered" not in capfd.readouterr().err
    (secrets / "password.txt").write_text("Another-Pw-42\n")
    assert run_doit(project, "service:answered") == 0
    assert ".  service:answered" in capfd.readouterr().err
    assert af.hidden_password("Another-Pw-42").encode() in iso_files(iso)[af.FILE_NAME]
    monkeypatch.setenv("AERO_TEST_PRODUCT_KEY", KEY.replace("Q7XKD", "Q7XKE"))
    assert run_doit(project, "service:answered") == 0
    assert ".  service:answered" in capfd.readouterr().err
    assert KEY.replace("Q7XKD", "Q7XKE").encode() in iso_files(iso)[af.FILE_NAME]


def test_service_iso_writes_a_drivers_only_answer_file(tmp_path: Path, media_iso: Path) -> None:
    need_tool("wimlib-imagex")
    need_tool("hivexregedit")
    from aero_media.cli import main

    pack = expanded_sample(tmp_path / "pack")
    out_iso = tmp_path / "out" / "win7-aero.iso"
    assert main(["service-iso", "--windows-iso", str(media_iso), "--drivers-root", str(pack), "--output",
                 str(out_iso), "--allow-placeholder-catalogs", "--answer-file", "drivers-only"]) == 0
    files = iso_files(out_iso)
    xml = files[af.FILE_NAME]
    assert af.problems(xml) == []
    assert b"Microsoft-Windows-Setup" not in xml and b"oobeSystem" not in xml
    record = json.loads((out_iso.parent / "win7-aero.iso.servicing.json").read_text())["answer_file"]
    assert record["variant"] == "drivers-only" and record["sha256"] == hashlib.sha256(xml).hexdigest()
    assert record["turn_off"] == "leave out --answer-file"
    assert b"leave out --answer-file" in files[readme.NAME.lower()]
    # The staged packages (the sample has three), each on the ISO where the answer file names it.
    assert {f.split("/")[2] for f in files if f.startswith("win7/amd64/")} == \
        {p.rsplit("\\", 1)[1] for p in record["driver_paths"]} == {"viostor", "netkvm", "vioinput"}


@pytest.mark.parametrize(("flags", "names"), [
    (["--locale", "en-US"], "--locale"),
    (["--answer-file", "full", "--locale", "en-US", "--time-zone", "UTC", "--account", "aero"], "--password"),
    (["--answer-file", "full", "--password-env", "X"], "--locale"),
])
def test_service_iso_answer_file_flags_are_checked(flags: list[str], names: str, tmp_path: Path, media_iso: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from aero_media.cli import main

    pack = tmp_path / "pack"
    pack.mkdir()
    assert main(["service-iso", "--windows-iso", str(media_iso), "--drivers-root", str(pack), "--output",
                 str(tmp_path / "o.iso"), *flags]) == 2
    err = capsys.readouterr().err
    assert names in err and "Traceback" not in err and not (tmp_path / "o.iso").exists()


def test_the_drivers_iso_carries_a_drivers_only_answer_file_for_each_arch_on_request(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    data = yaml.safe_load((REPO / "specs" / "sample.yaml").read_text())
    data["name"] = "withanswer"
    data["outputs"]["fat_disk"] = {"enabled": False}
    data["media"] = {"answer_file": "drivers-only"}
    write_spec(project, "withanswer", data)
    assert run_doit(project, "publish:withanswer") == 0  # the verifier accepts it: the manifest lists it
    iso = project / "dist" / "withanswer" / "aero-virtio-win7-drivers.iso"
    files = iso_files(iso)
    xml = files[af.FILE_NAME]
    assert af.problems(xml) == []
    text = xml.decode()
    for arch in ("x86", "amd64"):
        assert f'processorArchitecture="{arch}"' in text
        named = {m for m in re.findall(rf"<Path>D:\\win7\\{arch}\\([^<]+)</Path>", text)}
        on_iso = {f.split("/")[2] for f in files if f.startswith(f"win7/{arch}/")}
        assert named == on_iso and named
    manifest = json.loads(files["manifest.json"])
    assert af.FILE_NAME in {f["path"] for f in manifest["files"]}
