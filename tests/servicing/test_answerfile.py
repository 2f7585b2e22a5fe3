"""autounattend.xml: both variants validate against our schema, which refuses what Setup would not parse.

In process, no tools: the writer, the schema (``aero_media/answer/unattend.xsd``, checked with
xmlschema), the secrets' sources and the spec settings.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from aero_media.answer import answerfile as af
from aero_media.errors import SpecError
from aero_media.spec.load import project_contract, spec_from_mapping
from aero_media.spec.model import Context, SecretSource, Unattended
from aero_media.spec.types import SPEC_FIELDS, AnswerFile, Arch, Partitioning, Stage

REPO = Path(__file__).resolve().parents[2]
DRIVERS = ["netkvm", "viostor", "vioinput"]
KEY = "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"
PASSWORD = "s3cret pass<&>"
UNATTENDED = Unattended("en-US", "W. Europe Standard Time", "aero", SecretSource(env="AERO_TEST_PW"),
                        SecretSource(env="AERO_TEST_KEY"), Partitioning.WIPE_DISK_0)


def drivers_only(arch: Arch = Arch.AMD64) -> bytes:
    return af.render(AnswerFile.DRIVERS_ONLY, {arch: DRIVERS})


def full(unattended: Unattended = UNATTENDED, key: str | None = KEY) -> bytes:
    return af.render(AnswerFile.FULL, {Arch.AMD64: DRIVERS}, unattended, af.Secrets(PASSWORD, key))


def components(xml: bytes) -> list[tuple[str, str, str]]:
    """(pass, component, arch) in document order."""
    from xml.etree import ElementTree

    ns = {"u": af.UNATTEND_NS}
    root = ElementTree.fromstring(xml)
    return [(s.get("pass", ""), c.get("name", ""), c.get("processorArchitecture", ""))
            for s in root.findall("u:settings", ns) for c in s.findall("u:component", ns)]


@pytest.mark.parametrize("arch", [Arch.X86, Arch.AMD64])
def test_drivers_only_validates_and_stages_every_package_in_both_passes(arch: Arch) -> None:
    xml = drivers_only(arch)
    assert af.problems(xml) == []
    want = "x86" if arch is Arch.X86 else "amd64"
    assert components(xml) == [("windowsPE", "Microsoft-Windows-PnpCustomizationsWinPE", want),
                               ("offlineServicing", "Microsoft-Windows-PnpCustomizationsNonWinPE", want)]
    text = xml.decode()
    for letter in "CDEFGHIJKLMNOPQRSTUVWYZ":  # every letter the DVD may get, in both components
        for d in DRIVERS:
            assert text.count(f"<Path>{letter}:\\win7\\{arch.value}\\{d}</Path>") == 2
    assert "X:\\" not in text and "\\\\" not in text
    assert 'xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State"' in text


def test_an_answer_file_for_both_arches_has_a_component_of_each() -> None:
    xml = af.render(AnswerFile.DRIVERS_ONLY, {Arch.X86: DRIVERS, Arch.AMD64: DRIVERS})
    assert af.problems(xml) == []
    assert {a for _, _, a in components(xml)} == {"x86", "amd64"}


@pytest.mark.parametrize("partitioning", list(Partitioning))
@pytest.mark.parametrize("key", [KEY, None])
def test_full_validates_with_the_users_settings(partitioning: Partitioning, key: str | None) -> None:
    u = Unattended("de-DE", "UTC", "admin", SecretSource(env="X"), None, partitioning)
    xml = full(u, key)
    assert af.problems(xml) == []
    assert ("oobeSystem", "Microsoft-Windows-Shell-Setup", "amd64") in components(xml)
    text = xml.decode()
    assert "<UILanguage>de-DE</UILanguage>" in text and "<TimeZone>UTC</TimeZone>" in text
    assert ("<WillWipeDisk>true</WillWipeDisk>" in text) is (partitioning is Partitioning.WIPE_DISK_0)
    assert ("<Key>" in text) is (key is not None)
    # The password is stored the way Windows SIM hides it, never as plain text; escaped where it is text.
    assert PASSWORD not in text and af.hidden_password(PASSWORD) in text
    assert "<PlainText>false</PlainText>" in text


def test_the_hidden_password_is_windows_sims_encoding() -> None:
    # base64(UTF-16LE("pw" + "Password")), what Windows SIM writes for "pw" with Hide Sensitive Data.
    assert af.hidden_password("pw") == "cAB3AFAAYQBzAHMAdwBvAHIAZAA="


# One row per rule of the schema: (what, how the valid drivers-only file is broken).
BROKEN: list[tuple[str, Any]] = [
    ("doubled backslash (Aero's generator)", lambda x: x.replace(b"<Path>D:\\win7", b"<Path>D:\\\\win7", 1)),
    ("x64 is not an architecture name (Aero's generator)",
     lambda x: x.replace(b'processorArchitecture="amd64"', b'processorArchitecture="x64"', 1)),
    ("another public key token", lambda x: x.replace(b"31bf3856ad364e35", b"31bf3856ad364e36", 1)),
    ("language not neutral", lambda x: x.replace(b'language="neutral"', b'language="en-US"', 1)),
    ("versionScope not nonSxS", lambda x: x.replace(b'versionScope="nonSxS"', b'versionScope="nonSensitive"', 1)),
    ("an identity attribute missing", lambda x: x.replace(b' publicKeyToken="31bf3856ad364e35"', b"", 1)),
    ("the WinPE component in offlineServicing",
     lambda x: x.replace(b'<settings pass="windowsPE">', b'<settings pass="offlineServicing">', 1)),
    ("the NonWinPE component in windowsPE",
     lambda x: x.replace(b'<settings pass="offlineServicing">', b'<settings pass="windowsPE">', 1)),
    ("a pass that does not exist", lambda x: x.replace(b'pass="offlineServicing"', b'pass="offline"', 1)),
    ("a list item without wcm:action", lambda x: x.replace(b' wcm:action="add"', b"", 1)),
    ("a list item without wcm:keyValue", lambda x: x.replace(b' wcm:keyValue="1"', b"", 1)),
    ("two list items with one key", lambda x: x.replace(b'wcm:keyValue="2"', b'wcm:keyValue="1"', 1)),
    ("a wcm:action Setup does not know", lambda x: x.replace(b'wcm:action="add"', b'wcm:action="append"', 1)),
    ("a path of 260 characters",
     lambda x: x.replace(b"<Path>D:\\win7\\amd64\\viostor", b"<Path>D:\\" + b"a" * 251 + b"\\viostor", 1)),
    ("a relative path", lambda x: x.replace(b"<Path>D:\\win7", b"<Path>win7", 1)),
    ("the wrong namespace", lambda x: x.replace(b"urn:schemas-microsoft-com:unattend", b"urn:unattend", 1)),
    ("wcm in the wrong namespace", lambda x: x.replace(b"WMIConfig/2002/State", b"WMIConfig/2002/Stat", 1)),
    ("not well-formed", lambda x: x.replace(b"</unattend>", b"", 1)),
]


@pytest.mark.parametrize(("what", "breaks"), BROKEN, ids=[w for w, _ in BROKEN])
def test_the_schema_refuses(what: str, breaks: Any) -> None:
    good = drivers_only()
    bad = breaks(good)
    assert bad != good, what
    assert af.problems(bad), what
    with pytest.raises(af.InternalError):
        af.check(bad)


def test_the_faults_of_aeros_generator_are_refused_where_they_are() -> None:
    """A doubled backslash is refused at the Path, x64 at the architecture attribute (not somewhere else)."""
    doubled = af.problems(BROKEN[0][1](drivers_only()))
    assert len(doubled) == 1 and doubled[0].split(":")[0].endswith("/Path")
    x64 = af.problems(BROKEN[1][1](drivers_only()))
    assert len(x64) == 1 and "processorArchitecture" in x64[0]


def test_a_path_of_259_characters_is_accepted() -> None:
    path = b"D:\\" + b"a" * 248 + b"\\viostor"
    assert len(path) == 259
    assert af.problems(drivers_only().replace(b"D:\\win7\\amd64\\viostor", path, 1)) == []


def test_one_pass_once() -> None:
    xml = drivers_only()
    twice = xml.replace(b"</unattend>", b'<settings pass="offlineServicing">' +
                        re.search(rb'<settings pass="offlineServicing">(.*?)</settings>', xml, re.S)[1]  # type: ignore[index]
                        + b"</settings></unattend>")
    assert af.problems(twice)


# -- secrets ---------------------------------------------------------------------

def test_secrets_come_from_the_environment_or_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_TEST_PW", PASSWORD)
    monkeypatch.setenv("AERO_TEST_KEY", KEY.lower())
    got = af.read_secrets(UNATTENDED, "spec.yaml")
    assert (got.password, got.product_key) == (PASSWORD, KEY)
    assert PASSWORD not in repr(got) and KEY not in repr(got)
    (tmp_path / "pw").write_text(PASSWORD + "\r\nignored\n", encoding="utf-8")
    u = Unattended("en-US", "UTC", "aero", SecretSource(file=tmp_path / "pw", file_raw="pw"))
    assert af.read_secrets(u, "spec.yaml") == af.Secrets(PASSWORD, None)


@pytest.mark.parametrize("case", ["unset", "empty file", "missing file", "bad key", "control character"])
def test_a_bad_secret_is_one_line_that_never_shows_it(case: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_TEST_PW", PASSWORD)
    monkeypatch.setenv("AERO_TEST_KEY", KEY)
    u = UNATTENDED
    if case == "unset":
        monkeypatch.delenv("AERO_TEST_PW")
    elif case in ("empty file", "missing file"):
        if case == "empty file":
            (tmp_path / "pw").write_bytes(b"")
        u = Unattended("en-US", "UTC", "aero", SecretSource(file=tmp_path / "pw", file_raw="pw"))
    elif case == "bad key":
        monkeypatch.setenv("AERO_TEST_KEY", "ABCDE-FGHIJ-s3cret")
    else:
        monkeypatch.setenv("AERO_TEST_PW", "s3cret\x07pass")
    with pytest.raises(SpecError) as err:
        af.read_secrets(u, "spec.yaml")
    text = f"{err.value} {err.value.hint}"
    assert "spec.yaml" in text and "\n" not in str(err.value)
    assert "s3cret" not in text


# -- the spec ------------------------------------------------------------------------

def load(extra: dict[str, Any], tmp_path: Path) -> Any:
    data = yaml.safe_load((REPO / "specs" / "sample.yaml").read_text())
    data["install_media"] = {"path": str(tmp_path / "win7.iso"), **extra}
    ctx = Context(root=REPO)
    return spec_from_mapping(data, ctx, SPEC_FIELDS, project_contract(ctx))


UNATTENDED_SPEC = {"locale": "en-US", "time_zone": "UTC", "account": "aero", "password_env": "AERO_TEST_PW"}


def test_no_answer_file_unless_asked(tmp_path: Path) -> None:
    assert load({}, tmp_path).install_media.answer_file is None
    assert load({"answer_file": "drivers-only"}, tmp_path).install_media.answer_file is AnswerFile.DRIVERS_ONLY
    spec = load({"answer_file": "full", "unattended": UNATTENDED_SPEC}, tmp_path)
    assert spec.install_media.unattended.password == SecretSource(env="AERO_TEST_PW")


@pytest.mark.parametrize(("extra", "names"), [
    ({"answer_file": "full"}, "unattended"),
    ({"unattended": UNATTENDED_SPEC}, "answer_file"),
    ({"answer_file": "drivers-only", "unattended": UNATTENDED_SPEC}, "answer_file"),
    ({"answer_file": "full", "unattended": {**UNATTENDED_SPEC, "password_file": "pw"}}, "password_env"),
    ({"answer_file": "full", "unattended": {**UNATTENDED_SPEC, "partitioning": "wipe"}}, "partitioning"),
    ({"answer_file": "sometimes"}, "answer_file"),
    *[({"answer_file": "full", "unattended": {**UNATTENDED_SPEC, "account": bad}}, "account")
      for bad in ("a\x01b", "a\tb", "...", "  ", " . ", "Administrator\x7f", "x" * 21)],
])
def test_answer_file_settings_are_checked(extra: dict[str, Any], names: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load(extra, tmp_path)
    assert names in str(err.value)


@pytest.mark.parametrize("account", ["a\tb", "...", "  ", "Administrator\x7f", "a\x85b"])
def test_the_schema_refuses_control_characters_and_dot_or_space_only_account_names(account: str) -> None:
    xml = full(dataclasses.replace(UNATTENDED, account=account))
    assert af.problems(xml)


def test_a_password_in_the_spec_is_refused_without_repeating_it(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load({"answer_file": "full", "unattended": {**UNATTENDED_SPEC, "password": "hunter2-s3cret"}}, tmp_path)
    assert "password" in str(err.value) and "hunter2" not in f"{err.value} {err.value.hint}"


def test_an_answer_file_needs_an_iso(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "specs" / "sample.yaml").read_text())
    data["install_media"] = {"boot_wim": "/x/boot.wim", "install_wim": "/x/install.wim", "answer_file": "drivers-only"}
    ctx = Context(root=REPO)
    with pytest.raises(SpecError) as err:
        spec_from_mapping(data, ctx, SPEC_FIELDS, project_contract(ctx))
    assert "path" in str(err.value)


def test_the_service_fingerprint_names_where_secrets_are_never_what(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_TEST_PW", PASSWORD)
    spec = load({"answer_file": "full", "unattended": UNATTENDED_SPEC}, tmp_path)
    slice_ = repr(spec.fingerprint(Stage.SERVICE))
    assert "$AERO_TEST_PW" in slice_ and PASSWORD not in slice_
    assert load({"answer_file": "drivers-only"}, tmp_path).fingerprint(Stage.SERVICE) != \
        load({}, tmp_path).fingerprint(Stage.SERVICE)


def test_the_drivers_iso_takes_a_drivers_only_answer_file_only(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "specs" / "sample.yaml").read_text())
    ctx = Context(root=REPO)
    assert spec_from_mapping(data, ctx, SPEC_FIELDS, project_contract(ctx)).media.answer_file is None
    data["media"] = {"answer_file": "drivers-only"}
    with_one = spec_from_mapping(data, ctx, SPEC_FIELDS, project_contract(ctx))
    assert with_one.media.answer_file is AnswerFile.DRIVERS_ONLY
    data["media"] = {"answer_file": "full"}  # secrets never go onto the drivers ISO
    with pytest.raises(SpecError) as err:
        spec_from_mapping(data, ctx, SPEC_FIELDS, project_contract(ctx))
    assert "/media/answer_file" in str(err.value)


def test_a_schema_failure_never_quotes_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # A validator message may quote the value it refused: here one that quotes every secret.
    quoted = f"/unattend/settings[1]/component[3]/UserData/ProductKey/Key: {KEY!r}, {af.hidden_password(PASSWORD)}"
    monkeypatch.setattr(af, "problems", lambda xml: [quoted])
    with pytest.raises(af.InternalError) as err:
        af.check(full(), af.Secrets(PASSWORD, KEY))
    said = str(err.value)
    assert "ProductKey/Key" in said and KEY not in said and af.hidden_password(PASSWORD) not in said
