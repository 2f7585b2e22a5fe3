"""Guest Tools scripts, statically: the renderer, the templates, exit codes, option docs and batch hygiene.

The scripts themselves run under Wine's cmd.exe in tests/integration/test_wine_scripts.py.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from aero_media.media import scripts
from aero_media.media.scripts import DriverEntry, render_media_hashes
from aero_media.media.templates import TemplateError, render_text
from aero_media.spec.contract import Contract
from aero_media.win7.pnp import contract_ids
from tests.lib.gtscripts import (
    MUTATING,
    ROOT,
    SCRIPTS,
    TEST_THUMB,
    TRUST_THUMB,
    build_media,
    code_lines,
    command_of,
    label_segments,
    load_repo_contract,
    make_drivers,
    parse_sets,
    quoted_items,
    render,
    script_lines,
)


@pytest.fixture(scope="module")
def contract() -> Contract:
    return load_repo_contract()


# ---------------------------------------------------------------------------
# Rendering: encoding, placeholders, loud failures
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["none", "production", "test"])
def test_every_output_is_crlf_ascii_without_placeholders(contract: Contract, policy: str) -> None:
    certs = ["aero-test.cer"] if policy == "test" else []
    out = render(contract, signing_policy=policy, certs=certs,
                 cert_thumbprints={"redhat.cer": TRUST_THUMB, **({"aero-test.cer": TEST_THUMB} if certs else {})})
    assert set(out) == {"setup.cmd", "uninstall.cmd", "verify.cmd", "README.txt", "config/devices.cmd",
                        "config/media.cmd", "config/checks.cmd"}
    for path, data in out.items():
        data.decode("ascii")  # raises on non-ASCII
        assert data.endswith(b"\r\n"), path
        assert b"\n" not in data.replace(b"\r\n", b""), f"{path}: a bare LF"
        assert b"\r" not in data.replace(b"\r\n", b""), f"{path}: a bare CR"
        assert not re.search(rb"\$[A-Z_{]", data), f"{path}: unresolved placeholder"
        assert b"\x00" not in data


def test_template_errors_are_loud() -> None:
    with pytest.raises(TemplateError, match="no value for placeholder"):
        render_text("t", "a $FOO b", {})
    with pytest.raises(TemplateError, match="unknown placeholder"):
        render_text("t", "a $FOO b", {"FOO": "1", "BAR": "2"})
    with pytest.raises(TemplateError, match="stray"):
        render_text("t", "costs $5", {})
    with pytest.raises(TemplateError, match="stray"):
        render_text("t", "a $foo b", {})
    with pytest.raises(TemplateError, match="non-ASCII"):
        render_text("t", "a $FOO b", {"FOO": "\u00e9"})
    assert render_text("t", "a ${FOO}x $$ %PATH% !X!", {"FOO": "1"}) == "a 1x $ %PATH% !X!"


def test_every_package_template_is_used_and_renders(contract: Contract) -> None:
    names = {"setup.cmd", "uninstall.cmd", "verify.cmd", "README.txt", "devices.cmd", "devices.entry.cmd", "media.cmd",
             "checks.cmd"}
    for name in names:
        (ROOT / "aero_media" / "media" / "templates" / name).read_bytes().decode("ascii")
    render(contract)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "1.2.\u00e9"}, "non-ASCII"),
        ({"version": "1.2%3"}, "safe in cmd.exe"),
        ({"build_id": "a!b"}, "safe in cmd.exe"),
        ({"label": "A&B"}, "safe in cmd.exe"),
        ({"certs": []}, "at least one certificate"),
        ({"trust_certs": ["red hat.cer"]}, "safe in cmd.exe"),
        ({"cert_thumbprints": {"aero-test.cer": "12"}}, "40 hex"),
        ({"cert_thumbprints": {"aero-test.cer": TEST_THUMB.lower()}}, "upper case"),
        ({"cert_thumbprints": {"other.cer": TEST_THUMB}}, "not on the media"),
    ],
)
def test_render_rejects_bad_values(contract: Contract, change: dict[str, object], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(contract, **change)


@pytest.mark.parametrize(
    ("drivers", "message"),
    [
        ([DriverEntry("arm64", "viostor", "viostor.inf", "viostor", "virtio-blk", "viostor.sys")], "arch"),
        ([DriverEntry("x86", "vio&stor", "viostor.inf", "viostor", "virtio-blk", "viostor.sys")], "safe in cmd.exe"),
        ([DriverEntry("x86", "viostor", "viostor.sys", "viostor", "virtio-blk", "viostor.sys")],
         "does not end in .inf"),
        ([DriverEntry("x86", "viostor", "viost\u00f6r.inf", "viostor", "virtio-blk", "viostor.sys")], "non-ASCII"),
        ([DriverEntry("x86", "viogpu", "viogpu.inf", "viogpu", "aero-gpu", None)], "not in the contract"),
        ([DriverEntry("x86", "viostor", "viostor.inf", "viostor", "virtio-blk", "viostor.sys")] * 2, "twice"),
        ([DriverEntry("x86", "vioscsi", "vioscsi.inf", "vioscsi", "virtio-blk", "vioscsi.sys")],
         "storage pre-seed would not match"),
        ([DriverEntry("x86", "viostor", "viostor.inf", "viostor", "virtio-blk", None)], "no sys_file"),
    ],
)
def test_render_rejects_bad_drivers(contract: Contract, drivers: list[DriverEntry], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(contract, drivers)


def test_media_hashes_format() -> None:
    a, b = "a" * 64, "b" * 64
    data = render_media_hashes([("drivers/x86/viostor/viostor.inf", a, 10), ("README.txt", b, 0),
                                ("dir with space/x (1).txt", a, 3)])
    lines = data.decode("ascii").split("\r\n")
    assert lines[0].startswith("#") and lines[1].startswith("#") and lines[-1] == ""
    # Sorted by path, case-insensitively.
    assert lines[2:-1] == [f"{a} 3 dir with space\\x (1).txt", f"{a} 10 drivers\\x86\\viostor\\viostor.inf",
                           f"{b} 0 README.txt"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([("config/files.sha256", "a" * 64, 1)], "cannot list itself"),
        ([("x", "A" * 64, 1)], "64 lower-case hex"),
        ([("x", "a" * 63, 1)], "64 lower-case hex"),
        ([("x", "a" * 64, -1)], "non-negative"),
        ([("x", "a" * 64, 1), ("X", "a" * 64, 1)], "twice"),
        ([("../x", "a" * 64, 1)], "relative"),
        ([("/x", "a" * 64, 1)], "relative"),
        ([("C:/x", "a" * 64, 1)], "relative"),
        ([("a%b", "a" * 64, 1)], "specially"),
        ([("a!b", "a" * 64, 1)], "specially"),
        ([("a&b", "a" * 64, 1)], "specially"),
        ([("caf\u00e9", "a" * 64, 1)], "non-ASCII"),
    ],
)
def test_media_hashes_reject_bad_entries(files: list[tuple[str, str, int]], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render_media_hashes(files)


# ---------------------------------------------------------------------------
# Generated config: devices.cmd matches the contract, media.cmd matches the media
# ---------------------------------------------------------------------------
def test_devices_cmd_matches_contract(contract: Contract) -> None:
    sets = parse_sets(render(contract)["config/devices.cmd"].decode("ascii"))
    assert sets["AERO_CONTRACT"] == contract.name and sets["AERO_CONTRACT_VERSION"] == contract.version
    prefixes = sets["AERO_DEVICE_PREFIXES"].split()
    assert prefixes == ["AERO_VIRTIO_NET", "AERO_VIRTIO_BLK", "AERO_VIRTIO_INPUT", "AERO_VIRTIO_SND"]
    for prefix, dev in zip(prefixes, contract.devices.values(), strict=True):
        assert sets[f"{prefix}_NAME"] == dev.name
        assert sets[f"{prefix}_SERVICE"] == dev.service
        assert sets[f"{prefix}_INF"] == dev.inf
        assert sets[f"{prefix}_CLASS"] == dev.setup_class
        assert sets[f"{prefix}_CLASSGUID"] == dev.class_guid
        assert sets[f"{prefix}_VEN_DEV"] == f"VEN_{dev.vendor_id}&DEV_{dev.device_id}"
        assert sets[f"{prefix}_BOOT_CRITICAL"] == ("1" if dev.boot_critical else "0")
        assert quoted_items(sets[f"{prefix}_HWIDS"]) == list(contract_ids(dev))
        for hwid in contract_ids(dev):
            assert hwid.endswith("&REV_01") or "&SUBSYS_" in hwid or hwid == f"PCI\\VEN_1AF4&DEV_{dev.device_id}"
    blk = contract.device("virtio-blk")
    keys = quoted_items(sets["AERO_VIRTIO_BLK_CDD_KEYS"])
    expected = [
        (h + suffix).replace("\\", "#").lower()
        for h in contract_ids(blk)
        for suffix in ("", "&CC_010000", "&CC_0100")
    ]
    assert keys == expected and len(keys) == 12
    assert "pci#ven_1af4&dev_1042&subsys_00021af4&rev_01" in keys and "pci#ven_1af4&dev_1042&cc_0100" in keys
    assert sets.get("AERO_VIRTIO_NET_CDD_KEYS", "") == ""  # only boot-critical devices get CDD entries


def test_media_cmd_infs_exist_for_their_arch(contract: Contract, tmp_path: Path) -> None:
    drivers = make_drivers()
    rendered = render(contract, drivers, sha256_only=True)
    media = build_media(tmp_path / "media", rendered, drivers)
    sets = parse_sets(rendered["config/media.cmd"].decode("ascii"))
    for arch in ("x86", "amd64"):
        infs = quoted_items(sets[f"AGT_INFS_{arch.upper()}"])
        assert infs == [d.inf_path for d in drivers if d.arch == arch]
        for inf in infs:
            assert inf.startswith(f"drivers\\{arch}\\"), inf
            assert (media / inf.replace("\\", "/")).is_file(), inf
        for var in (f"AGT_STORAGE_INF_{arch.upper()}", f"AGT_STORAGE_SYS_{arch.upper()}"):
            assert sets[var].startswith(f"drivers\\{arch}\\viostor\\")
            assert (media / sets[var].replace("\\", "/")).is_file()
        assert sets[f"AGT_STORAGE_SYS_NAME_{arch.upper()}"] == "viostor.sys"
    assert sets["AGT_STORAGE_DEVICE"] == "AERO_VIRTIO_BLK"
    assert sets["AGT_SIGNING_POLICY"] == "test" and sets["AGT_SHA256_ONLY"] == "1"
    assert quoted_items(sets["AGT_TRUST_CERTS"]) == ["redhat.cer"]
    assert quoted_items(sets["AGT_TEST_CERTS"]) == ["aero-test.cer"]
    for cert in ("redhat.cer", "aero-test.cer"):
        assert (media / "certs" / cert).is_file()
    assert sets["AGT_CERT_SHA1_redhat.cer"] == TRUST_THUMB
    assert sets["AGT_CERT_SHA1_aero-test.cer"] == TEST_THUMB
    no_thumbs = parse_sets(render(contract, drivers, cert_thumbprints=None)["config/media.cmd"].decode("ascii"))
    assert not [k for k in no_thumbs if k.startswith("AGT_CERT_SHA1_")]


def test_one_arch_media_has_no_other_arch_packages(contract: Contract) -> None:
    sets = parse_sets(render(contract, make_drivers(["amd64"]))["config/media.cmd"].decode("ascii"))
    assert sets["AGT_INFS_X86"] == ""  # "set X=" with nothing: undefined in cmd
    assert sets["AGT_STORAGE_INF_X86"] == ""
    assert len(quoted_items(sets["AGT_INFS_AMD64"])) == 3


# ---------------------------------------------------------------------------
# Static checks of the scripts
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def texts(contract: Contract) -> dict[str, str]:
    return {k: v.decode("ascii") for k, v in render(contract).items()}


EXIT_CODE_PATTERNS = (
    re.compile(r"exit /b (\d+)\b"),
    re.compile(r'set "AGT_RESULT=(\d+)"'),
    re.compile(r"call :preflight_error (\d+) "),
)


def codes_used(text: str) -> set[int]:
    codes: set[int] = set()
    for line in code_lines(text):
        for pat in EXIT_CODE_PATTERNS:
            codes |= {int(c) for c in pat.findall(line)}
    return codes


def readme_codes(readme: str, script: str) -> set[int]:
    section = readme.split(f"{script} exit codes:", 1)[1].split("\r\n\r\n\r\n", 1)[0]
    return {int(c) for c in re.findall(r"^\s+(\d+)\s\s", section, re.M)}


@pytest.mark.parametrize(
    ("script", "table"),
    [("setup.cmd", scripts.SETUP_EXIT_CODES), ("uninstall.cmd", scripts.UNINSTALL_EXIT_CODES),
     ("verify.cmd", scripts.VERIFY_EXIT_CODES)],
)
def test_exit_codes_are_documented(texts: dict[str, str], script: str, table: dict[int, str]) -> None:
    used = codes_used(texts[script]) - {1} if script == "setup.cmd" else codes_used(texts[script])
    # setup's "exit /b 1" lines are subroutine results, never the script's exit code.
    documented = readme_codes(texts["README.txt"], script)
    assert documented == set(table)
    assert used <= documented, f"{script} uses undocumented exit codes {sorted(used - documented)}"
    unused = sorted(set(table) - used - {0})
    assert {c for c in table if c} <= used | {0}, f"{script}: documented codes never used: {unused}"
    # Aero's codes keep their meaning.
    if script == "setup.cmd":
        assert {10, 11, 12, 13, 14} <= used
        for code, word in ((10, "Administrator"), (11, "driver"), (12, "certificate"), (13, "storage"),
                           (14, "integrity")):
            assert word in table[code]


def test_setup_options_are_documented(texts: dict[str, str]) -> None:
    setup, readme = texts["setup.cmd"], texts["README.txt"]
    flags = set(re.findall(r'if /i "%AGT_ARG%"=="(/[a-z-]+)"', setup))
    assert flags >= {"/force", "/quiet", "/check", "/stageonly", "/testsigning", "/notestsigning", "/installcerts",
                     "/verify-media", "/noreboot", "/skipstorage"}
    usage = setup.split("\r\n:usage\r\n", 1)[1].split("goto :finish", 1)[0]
    for flag in flags - {"/h", "/help"}:
        if flag != "/?":
            assert flag in readme and flag in usage, flag
    uflags = set(re.findall(r'if /i "%AGT_ARG%"=="(/[a-z-]+)"', texts["uninstall.cmd"]))
    assert {"/cleanupstorage", "/cleanupstorageforce", "/force", "/check"} <= uflags
    for flag in uflags - {"/h", "/help"}:
        assert flag in readme, flag


@pytest.mark.parametrize("script", SCRIPTS)
def test_labels_and_jumps_resolve(texts: dict[str, str], script: str) -> None:
    text = texts[script]
    labels = {m.lower() for m in re.findall(r"^:([A-Za-z0-9_]+)\s*$", text, re.M)}
    targets = {t.lower() for t in re.findall(r"(?:call|goto) :([A-Za-z0-9_]+)", text)} - {"eof"}
    assert targets <= labels, f"{script}: missing labels {sorted(targets - labels)}"
    dupes = [ln for ln in labels if len(re.findall(rf"^:{ln}\s*$", text, re.M | re.I)) > 1]
    assert not dupes


@pytest.mark.parametrize("script", SCRIPTS)
def test_batch_hygiene(texts: dict[str, str], script: str) -> None:
    text = texts[script]
    code = code_lines(text)
    assert "setlocal EnableExtensions DisableDelayedExpansion" in text
    assert "EnableDelayedExpansion" not in text.replace("DisableDelayedExpansion", "")
    assert not [ln for ln in code if re.search(r"![A-Za-z_][A-Za-z0-9_]*!", ln)], "!VAR! used without delayed expansion"
    assert not [ln for ln in code if re.search(r"powershell", ln, re.I)]
    # External tools are started with "call", inside for /f, so that batch stubs
    # (and the real programs alike) return to the script.
    tools = re.compile(r"(pnputil|certutil|bcdedit|reg|fsutil|wmic|sc|shutdown)\s", re.I)
    bare = [ln for ln in code if tools.match(command_of(ln))]
    assert not bare, bare
    # No findstr or pipes: Wine's cannot be trusted and cmd's FOR handles it.
    assert not [ln for ln in code if "findstr" in ln.lower() or "^|" in ln]
    # The errorlevel trap: after "if errorlevel N call :x", errorlevel is x's.
    for a, b in itertools.pairwise(code):
        trap = re.match(r"\s*if (not )?errorlevel \d+ call ", a, re.I) and re.match(r"\s*if (not )?errorlevel", b, re.I)
        assert not trap, (a, b)
    # Every message line stays short: readable on an 80-column console, and
    # short enough for "call" everywhere.
    for line in code:
        m = re.search(r'call :(?:log|warn|step_failed|preflight_error|out|pass|fail|info|more|ask) '
                      r'(?:[^\s"]+ )?"([^"]*)"', line)
        if m:
            assert len(m.group(1)) <= 100, line
        assert len(line) < 400, line


def test_comments_hold_no_special_characters(texts: dict[str, str]) -> None:
    """cmd.exe still scans rem lines; keep & | < > ^ out of them."""
    for path, text in texts.items():
        if path.endswith(".cmd"):
            bad = [ln for ln in script_lines(text) if re.match(r"\s*@?rem\b", ln, re.I) and re.search(r"[&|<>^]", ln)]
            assert not bad, (path, bad)


CHECK_GUARD = re.compile(r'^if "%AGT_CHECK%"=="1" (?:exit /b 0|goto :[a-z_]+)$', re.I)
CHECK_PREFIX = re.compile(r'^if not "%AGT_CHECK%"=="1" ', re.I)
SAFE_TARGETS = {"nul", '"%AGT_LOG%"', '"%AGT_RUN_OUT%"'}


def unguarded_writes(text: str) -> list[str]:
    """Code lines that could change the system in /check mode.

    A line is safe when it goes through :run (which only prints in /check mode),
    starts with an `if not "%AGT_CHECK%"=="1"` prefix, or follows a /check
    guard (`if "%AGT_CHECK%"=="1" exit /b 0` or `goto`) in the same label.
    Writes to the log are safe: /check sets AGT_LOG to nul.
    """
    bad = []
    for label, lines in label_segments(text):
        guarded = False
        for line in lines:
            s = line.strip()
            if CHECK_GUARD.match(s):
                guarded = True
                continue
            if guarded or CHECK_PREFIX.match(s) or command_of(s).startswith("call :run ") or label == "relaunch_64":
                continue
            targets = re.findall(r'(?<![0-9^])>>?\s*("[^"]+"|[^\s&|)]+)', s)
            writes = [t for t in targets if t not in SAFE_TARGETS and not t.startswith("&")]
            if MUTATING.search(command_of(s)) or writes:
                bad.append(f":{label}: {s}")
    return bad


@pytest.mark.parametrize("script", ["setup.cmd", "uninstall.cmd"])
def test_check_mode_reaches_no_mutation(texts: dict[str, str], script: str) -> None:
    assert unguarded_writes(texts[script]) == []
    # ... and :run itself only prints in /check mode.
    run = dict(label_segments(texts[script]))["run"]
    assert CHECK_GUARD.match(run[0].strip()), run[0]
    assert dict(label_segments(texts[script]))["run_check"][0].strip() == "echo     would run: %*"


def test_verify_changes_nothing_but_its_report(texts: dict[str, str]) -> None:
    for label, lines in label_segments(texts["verify.cmd"]):
        for line in lines:
            s = line.strip()
            if label == "relaunch_64":
                continue
            assert not MUTATING.search(command_of(s)) or s.startswith('if not exist "%AGT_STATE%\\" mkdir'), s
            for t in re.findall(r'(?<![0-9^])>>?\s*("[^"]+"|[^\s&|)]+)', s):
                assert t in {"nul", '"%AGT_REPORT%"', '"%AGT_JSON%"'}, s


def test_checks_cmd_changes_nothing_and_writes_nothing(texts: dict[str, str]) -> None:
    """setup.cmd /check and verify.cmd run it: it must only read."""
    for _label, lines in label_segments(texts["config/checks.cmd"]):
        for line in lines:
            s = line.strip()
            assert not MUTATING.search(command_of(s)), s
            assert set(re.findall(r'(?<![0-9^])>>?\s*("[^"]+"|[^\s&|)]+)', s)) <= {"nul"}, s


def test_checks_cmd_carries_hotfixes_and_clock_years(texts: dict[str, str]) -> None:
    sets = parse_sets(texts["config/checks.cmd"])
    assert sets["AGT_HOTFIXES"].split() == [kb for kb, _ in scripts.HOTFIXES] == ["KB3033929", "KB4474419", "KB4490628"]
    for kb, what in scripts.HOTFIXES:
        assert sets[f"AGT_HOTFIX_{kb}"] == what
        assert f"{kb}  {what}" in texts["README.txt"]
    assert (int(sets["AGT_CLOCK_MIN"]), int(sets["AGT_CLOCK_MAX"])) == scripts.CLOCK_YEARS == (2010, 2050)
    assert "before\r\n    2010 or after 2050" in texts["README.txt"]
    # Both callers ask it, and know every keyword it answers with.
    for caller in ("setup.cmd", "verify.cmd"):
        assert 'call "config\\checks.cmd" ' in texts[caller]
    keywords = set(re.findall(r"^echo ([A-Z]+) ", texts["config/checks.cmd"], re.M))
    assert keywords == {"PROBLEM", "RESULT", "MANIFEST", "HOTFIX", "CLOCK", "ERROR"}
    for kw in keywords - {"ERROR"}:
        assert f'"%~1"=="{kw}"' in texts["verify.cmd"], kw


@pytest.mark.parametrize(
    ("hotfixes", "years", "message"),
    [((("KB1", "a & b"),), (2010, 2050), "treats specially"), ((("Q1", "x"),), (2010, 2050), "KB and digits"),
     ((("KB1", "x"),), (2050, 2010), "increasing")],
)
def test_checks_cmd_values_are_checked(contract: Contract, monkeypatch: pytest.MonkeyPatch,
                                       hotfixes: tuple[tuple[str, str], ...], years: tuple[int, int],
                                       message: str) -> None:
    monkeypatch.setattr(scripts, "HOTFIXES", hotfixes)
    monkeypatch.setattr(scripts, "CLOCK_YEARS", years)
    with pytest.raises(TemplateError, match=message):
        render(contract)


def test_every_verify_finding_has_an_id(texts: dict[str, str]) -> None:
    """:pass/:warn/:fail take ID then "TEXT"; a forgotten ID would make the text the ID."""
    calls = [ln for ln in code_lines(texts["verify.cmd"]) if re.search(r"call :(?:pass|warn|fail|finding) ", ln)
             and not re.fullmatch(r"call :finding (PASS|WARN|FAIL) %1", ln)]  # the wrappers themselves
    assert len(calls) > 30
    for line in calls:
        m = re.search(r'call :(pass|warn|fail) ([^\s"]+) "[^"]*"$', line) or \
            re.search(r"call :finding (PASS|WARN|FAIL) ([^\s\"]+)$", line)
        assert m and re.fullmatch(r"[a-z][a-z0-9:.%~_-]*", m.group(2), re.I), line


def test_uninstall_knows_every_record_setup_writes(texts: dict[str, str]) -> None:
    """What setup records, uninstall undoes (or keeps as "left"), and removes the records when done."""
    setup, uninstall, readme = texts["setup.cmd"], texts["uninstall.cmd"], texts["README.txt"]
    records = set(re.findall(r"call :record ([\w.-]+\.txt) ", setup))
    assert records == {"installed-certs.txt", "testsigning-enabled-by-setup.txt", "installed-driver-packages.txt",
                       "nointegritychecks-enabled-by-setup.txt", "storage-preseed.txt"}
    left = re.search(r"for %%F in \(([^)]*)\) do if exist .* set \"AGT_LEFT=1\"", uninstall)
    assert left and set(left.group(1).split()) == records
    removed = re.search(r"for %%F in \(([^)]*)\) do if exist .* del /q", uninstall)
    assert removed and {"setup-state.txt", "installed-media.txt"} <= set(removed.group(1).split())
    for name in [*records, "setup-state.txt", "installed-media.txt", "report.json"]:
        assert name in readme, name
    for flag in ("testsigning", "nointegritychecks"):
        assert f'if exist "%AGT_STATE%\\{flag}-enabled-by-setup.txt" goto :{flag}_off_run' in uninstall
        assert f"call :run bcdedit /set {flag} off" in uninstall and f"call :run bcdedit /set {flag} on" in setup


def test_static_check_catches_an_unguarded_write() -> None:
    text = (":x\r\nreg add HKLM\\X /f\r\n:y\r\nif \"%AGT_CHECK%\"==\"1\" exit /b 0\r\nreg add HKLM\\Y /f\r\n"
            ":z\r\n>\"%AGT_STATE%\\a.txt\" echo 1\r\n")
    assert unguarded_writes(text) == [":x: reg add HKLM\\X /f", ':z: >"%AGT_STATE%\\a.txt" echo 1']



def test_option_table_is_the_parser(texts: dict[str, str]) -> None:
    """Every spelling of the option tables, and nothing else, is parsed; aliases are listed in /? and README."""
    for script, options in (("setup.cmd", scripts.SETUP_OPTIONS), ("uninstall.cmd", scripts.UNINSTALL_OPTIONS)):
        parsed = re.findall(r'if /i "%AGT_ARG%"=="([^"]+)" set "AGT_OPT_([A-Z]+)=([a-z0-9]+)"', texts[script])
        assert parsed == [(s, o.variable, o.value) for o in options for s in (o.flag, *o.aliases)]
        usage = texts[script].split("\r\n:usage\r\n", 1)[1].split("goto :finish", 1)[0]
        for o in options:
            if o.variable != "HELP":
                assert all(a in usage and a in texts["README.txt"] for a in o.aliases), o.flag
    setup_flags = {s for o in scripts.SETUP_OPTIONS for s in (o.flag, *o.aliases)}
    # The spellings Aero's docs/windows7-guest-tools.md tells users to run.
    assert {"/forcetestsigning", "/forcenointegritychecks", "/skip-storage", "/forcesigningpolicy:test",
            "/forcesigningpolicy:none", "/forcesigningpolicy:production"} <= setup_flags


@pytest.mark.parametrize("bad", [
    (scripts.ScriptOption("/check", "CHECK"), scripts.ScriptOption("/check", "FORCE")),
    (scripts.ScriptOption("/a", "A", aliases=("/x=y",)),),
    (scripts.ScriptOption("/a", "A", value="x&y"),),
])
def test_option_table_refuses_clashes_and_unsafe_spellings(bad: tuple[scripts.ScriptOption, ...]) -> None:
    with pytest.raises(TemplateError):
        scripts._option_values("setup.cmd", bad)
