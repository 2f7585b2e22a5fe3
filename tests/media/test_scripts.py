"""Guest Tools scripts: the renderer (pipeline/scripts.py), the templates, and the
scripts themselves, statically and (when Wine is installed) run under Wine's cmd.exe
with stub system tools that log their exact command lines.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pipeline import scripts as S
from pipeline.devices import Contract, load_contract
from pipeline.scripts import DriverEntry, render_guest_tools_scripts, render_media_hashes
from tests.lib.wine import FakeWindows, WinePrefix, WineResult, wine_unavailable_reason

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("setup.cmd", "uninstall.cmd", "verify.cmd")
CBS = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\Packages"
SERVICES = r"HKLM\SYSTEM\CurrentControlSet\Services"
CDD = r"HKLM\SYSTEM\CurrentControlSet\Control\CriticalDeviceDatabase"
TEST_THUMB = "AB" * 20
TRUST_THUMB = "CD" * 20


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def contract() -> Contract:
    return load_contract(ROOT / "specs" / "devices.yaml")


def make_drivers(arches: Sequence[str] = ("x86", "amd64")) -> list[DriverEntry]:
    """viostor, netkvm and vioinput for each arch, as the pipeline lays them out."""
    out = []
    for arch in arches:
        out += [
            DriverEntry(arch, "viostor", "viostor.inf", "viostor", "virtio-blk", "viostor.sys"),
            DriverEntry(arch, "netkvm", "netkvm.inf", "netkvm", "virtio-net", "netkvm.sys"),
            DriverEntry(arch, "vioinput", "vioinput.inf", "vioinput", "virtio-input", None),
        ]
    return out


def render(contract: Contract, drivers: Sequence[DriverEntry] | None = None, **kw: object) -> dict[str, bytes]:
    args: dict[str, object] = dict(
        signing_policy="testsigning",
        certs=["aero-test.cer"],
        trust_certs=["redhat.cer"],
        sha256_only=False,
        version="1.2.3",
        build_id="b42",
        label="AERO_GUEST_TOOLS",
        cert_thumbprints={"aero-test.cer": TEST_THUMB, "redhat.cer": TRUST_THUMB},
    )
    args.update(kw)
    return render_guest_tools_scripts(contract, make_drivers() if drivers is None else drivers, **args)  # type: ignore[arg-type]


def inf_text(service: str) -> bytes:
    """A small INF shaped like upstream's (AddService line as viostor.inf writes it)."""
    return (
        "[Version]\r\nSignature=\"$WINDOWS NT$\"\r\nProvider=%VENDOR%\r\n\r\n"
        f"[x_inst.Services]\r\nAddService = {service}, 0x00000002 , x_Service_Inst, x_EventLog_Inst\r\n\r\n"
        "[Strings]\r\nVENDOR = \"Red Hat, Inc.\"\r\n"
    ).encode("ascii")


def build_media(root: Path, rendered: dict[str, bytes], drivers: Sequence[DriverEntry]) -> Path:
    """Write a Guest Tools media tree (scripts, config, fake drivers, certs, files.sha256)."""
    for rel, data in rendered.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for d in drivers:
        folder = root / "drivers" / d.arch / d.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / d.inf).write_bytes(inf_text(d.service))
        (folder / f"{d.name}.cat").write_bytes(b"0\x82 fake catalog " + d.arch.encode())
        if d.sys_file:
            (folder / d.sys_file).write_bytes(b"MZ fake " + d.name.encode() + b" " + d.arch.encode())
    (root / "certs").mkdir(exist_ok=True)
    (root / "certs" / "aero-test.cer").write_bytes(b"0\x82 test cert")
    (root / "certs" / "redhat.cer").write_bytes(b"0\x82 publisher cert")
    (root / "README.txt").exists() or (root / "README.txt").write_bytes(b"readme\r\n")
    write_hashes(root)
    return root


def media_files(root: Path) -> list[str]:
    """Media-relative paths (backslashes) of every file except files.sha256."""
    return sorted(
        str(p.relative_to(root)).replace("/", "\\")
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).as_posix() != S.MEDIA_HASHES_PATH
    )


def write_hashes(root: Path) -> None:
    files = [(rel, hashlib.sha256((root / rel.replace("\\", "/")).read_bytes()).hexdigest(),
              (root / rel.replace("\\", "/")).stat().st_size) for rel in media_files(root)]
    (root / S.MEDIA_HASHES_PATH).write_bytes(render_media_hashes(files))


SET_QUOTED = re.compile(r'^set "([A-Za-z0-9_.+-]+)=(.*)"$')
SET_PLAIN = re.compile(r"^set ([A-Za-z0-9_.+-]+)=(.*)$")


def parse_sets(text: str) -> dict[str, str]:
    """The variables a generated config .cmd sets."""
    out = {}
    for line in text.splitlines():
        m = SET_QUOTED.match(line) or SET_PLAIN.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def quoted_items(value: str) -> list[str]:
    """Items of a `"a" "b"` list value."""
    items = re.findall(r'"([^"]*)"', value)
    assert value == " ".join(f'"{i}"' for i in items), f"not a clean quoted list: {value!r}"
    return items


def script_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").split("\n")


def code_lines(text: str) -> list[str]:
    """Lines that are code (no rem/@rem comments, no blank lines)."""
    return [l for l in script_lines(text) if l.strip() and not re.match(r"\s*@?rem(\s|$)", l, re.I)]


IF_PREFIX = re.compile(
    r"""(?ix)^\s*(?:if\s+(?:/i\s+)?(?:not\s+)?(?:
        defined\s+\S+ | exist\s+"[^"]*" | errorlevel\s+\d+ | "[^"]*"==\s*"[^"]*" | \S+\s+(?:gtr|lss|equ|neq|geq|leq)\s+\S+
    )\s+)*"""
)


def command_of(line: str) -> str:
    """The command a line runs: without leading if-conditions and quoted text;
    an echo (its text is not a command) becomes empty."""
    s = IF_PREFIX.sub("", line).strip()
    s = re.sub(r'^>>?\s*"[^"]*"\s*', "", s)
    if re.match(r"echo\b|echo\.", s, re.I):
        return ""
    return re.sub(r'"[^"]*"', '""', s)


def label_segments(text: str) -> list[tuple[str, list[str]]]:
    """(label, code lines up to the next label); the first label is '<top>'."""
    segs: list[tuple[str, list[str]]] = [("<top>", [])]
    for line in code_lines(text):
        m = re.match(r"^:([A-Za-z0-9_]+)\s*$", line)
        if m:
            segs.append((m.group(1), []))
        else:
            segs[-1][1].append(line)
    return segs


# ---------------------------------------------------------------------------
# Rendering: encoding, placeholders, loud failures
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["none", "production", "testsigning"])
def test_every_output_is_crlf_ascii_without_placeholders(contract: Contract, policy: str) -> None:
    certs = ["aero-test.cer"] if policy == "testsigning" else []
    out = render(contract, signing_policy=policy, certs=certs,
                 cert_thumbprints={"redhat.cer": TRUST_THUMB, **({"aero-test.cer": TEST_THUMB} if certs else {})})
    assert set(out) == {"setup.cmd", "uninstall.cmd", "verify.cmd", "README.txt", "config/devices.cmd", "config/media.cmd"}
    for path, data in out.items():
        data.decode("ascii")  # raises on non-ASCII
        assert data.endswith(b"\r\n"), path
        assert b"\n" not in data.replace(b"\r\n", b""), f"{path}: a bare LF"
        assert b"\r" not in data.replace(b"\r\n", b""), f"{path}: a bare CR"
        assert not re.search(rb"\$[A-Z_{]", data), f"{path}: unresolved placeholder"
        assert b"\x00" not in data


def test_template_errors_are_loud() -> None:
    with pytest.raises(ValueError, match="no value for placeholder"):
        S._render_text("t", "a $FOO b", {})
    with pytest.raises(ValueError, match="unknown placeholder"):
        S._render_text("t", "a $FOO b", {"FOO": "1", "BAR": "2"})
    with pytest.raises(ValueError, match="stray"):
        S._render_text("t", "costs $5", {})
    with pytest.raises(ValueError, match="stray"):
        S._render_text("t", "a $foo b", {})
    with pytest.raises(ValueError, match="non-ASCII"):
        S._render_text("t", "a $FOO b", {"FOO": "\u00e9"})
    assert S._render_text("t", "a ${FOO}x $$ %PATH% !X!", {"FOO": "1"}) == "a 1x $ %PATH% !X!"


def test_every_package_template_is_used_and_renders(contract: Contract) -> None:
    names = {"setup.cmd", "uninstall.cmd", "verify.cmd", "README.txt", "devices.cmd", "devices.entry.cmd", "media.cmd"}
    for name in names:
        (ROOT / "pipeline" / "templates" / name).read_bytes().decode("ascii")
    render(contract)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "1.2.\u00e9"}, "non-ASCII"),
        ({"version": "1.2%3"}, "safe in cmd.exe"),
        ({"build_id": "a!b"}, "safe in cmd.exe"),
        ({"label": "A&B"}, "safe in cmd.exe"),
        ({"signing_policy": "whql"}, "signing_policy"),
        ({"certs": []}, "at least one certificate"),
        ({"trust_certs": ["red hat.cer"]}, "safe in cmd.exe"),
        ({"cert_thumbprints": {"aero-test.cer": "12"}}, "40 hex"),
        ({"cert_thumbprints": {"other.cer": TEST_THUMB}}, "not on the media"),
    ],
)
def test_render_rejects_bad_values(contract: Contract, change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render(contract, **change)


@pytest.mark.parametrize(
    ("drivers", "message"),
    [
        ([DriverEntry("arm64", "viostor", "viostor.inf", "viostor", "virtio-blk", "viostor.sys")], "arch"),
        ([DriverEntry("x86", "vio&stor", "viostor.inf", "viostor", "virtio-blk", "viostor.sys")], "safe in cmd.exe"),
        ([DriverEntry("x86", "viostor", "viostor.sys", "viostor", "virtio-blk", "viostor.sys")], "does not end in .inf"),
        ([DriverEntry("x86", "viostor", "viost\u00f6r.inf", "viostor", "virtio-blk", "viostor.sys")], "non-ASCII"),
        ([DriverEntry("x86", "viogpu", "viogpu.inf", "viogpu", "aero-gpu", None)], "not in the contract"),
        ([DriverEntry("x86", "viostor", "viostor.inf", "viostor", "virtio-blk", "viostor.sys")] * 2, "twice"),
        ([DriverEntry("x86", "vioscsi", "vioscsi.inf", "vioscsi", "virtio-blk", "vioscsi.sys")], "storage pre-seed would not match"),
        ([DriverEntry("x86", "viostor", "viostor.inf", "viostor", "virtio-blk", None)], "no sys_file"),
    ],
)
def test_render_rejects_bad_drivers(contract: Contract, drivers: list[DriverEntry], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render(contract, drivers)


def test_media_hashes_format() -> None:
    a, b = "a" * 64, "b" * 64
    data = render_media_hashes([("drivers/x86/viostor/viostor.inf", a, 10), ("README.txt", b, 0), ("dir with space/x (1).txt", a, 3)])
    lines = data.decode("ascii").split("\r\n")
    assert lines[0].startswith("#") and lines[1].startswith("#") and lines[-1] == ""
    # Sorted by path, case-insensitively.
    assert lines[2:-1] == [f"{a} 3 dir with space\\x (1).txt", f"{a} 10 drivers\\x86\\viostor\\viostor.inf", f"{b} 0 README.txt"]


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
    with pytest.raises(ValueError, match=message):
        render_media_hashes(files)


# ---------------------------------------------------------------------------
# Generated config: devices.cmd matches the contract, media.cmd matches the media
# ---------------------------------------------------------------------------
def test_devices_cmd_matches_contract(contract: Contract) -> None:
    sets = parse_sets(render(contract)["config/devices.cmd"].decode("ascii"))
    assert sets["AERO_CONTRACT"] == contract.name and sets["AERO_CONTRACT_VERSION"] == contract.version
    prefixes = sets["AERO_DEVICE_PREFIXES"].split()
    assert prefixes == ["AERO_VIRTIO_NET", "AERO_VIRTIO_BLK", "AERO_VIRTIO_INPUT", "AERO_VIRTIO_SND"]
    for prefix, dev in zip(prefixes, contract.devices.values()):
        assert sets[f"{prefix}_NAME"] == dev.name
        assert sets[f"{prefix}_SERVICE"] == dev.service
        assert sets[f"{prefix}_INF"] == dev.inf
        assert sets[f"{prefix}_CLASS"] == dev.setup_class
        assert sets[f"{prefix}_CLASSGUID"] == dev.class_guid
        assert sets[f"{prefix}_VEN_DEV"] == f"VEN_{dev.vendor_id}&DEV_{dev.device_id}"
        assert sets[f"{prefix}_BOOT_CRITICAL"] == ("1" if dev.boot_critical else "0")
        assert quoted_items(sets[f"{prefix}_HWIDS"]) == list(dev.contract_hwids)
        for hwid in dev.contract_hwids:
            assert hwid.endswith("&REV_01") or "&SUBSYS_" in hwid or hwid == f"PCI\\VEN_1AF4&DEV_{dev.device_id}"
    blk = contract.device("virtio-blk")
    keys = quoted_items(sets["AERO_VIRTIO_BLK_CDD_KEYS"])
    expected = [
        (h + suffix).replace("\\", "#").lower()
        for h in blk.contract_hwids
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
    assert sets["AGT_SIGNING_POLICY"] == "testsigning" and sets["AGT_SHA256_ONLY"] == "1"
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
    [("setup.cmd", S.SETUP_EXIT_CODES), ("uninstall.cmd", S.UNINSTALL_EXIT_CODES), ("verify.cmd", S.VERIFY_EXIT_CODES)],
)
def test_exit_codes_are_documented(texts: dict[str, str], script: str, table: dict[int, str]) -> None:
    used = codes_used(texts[script]) - {1} if script == "setup.cmd" else codes_used(texts[script])
    # setup's "exit /b 1" lines are subroutine results, never the script's exit code.
    documented = readme_codes(texts["README.txt"], script)
    assert documented == set(table)
    assert used <= documented, f"{script} uses undocumented exit codes {sorted(used - documented)}"
    assert {c for c in table if c} <= used | {0}, f"{script}: documented codes never used: {sorted(set(table) - used - {0})}"
    # Aero's codes keep their meaning.
    if script == "setup.cmd":
        assert {10, 11, 12, 13, 14} <= used
        for code, word in ((10, "Administrator"), (11, "driver"), (12, "certificate"), (13, "storage"), (14, "integrity")):
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
    dupes = [l for l in labels if len(re.findall(rf"^:{l}\s*$", text, re.M | re.I)) > 1]
    assert not dupes


@pytest.mark.parametrize("script", SCRIPTS)
def test_batch_hygiene(texts: dict[str, str], script: str) -> None:
    text = texts[script]
    code = code_lines(text)
    assert "setlocal EnableExtensions DisableDelayedExpansion" in text
    assert "EnableDelayedExpansion" not in text.replace("DisableDelayedExpansion", "")
    assert not [l for l in code if re.search(r"![A-Za-z_][A-Za-z0-9_]*!", l)], "!VAR! used without delayed expansion"
    assert not [l for l in code if re.search(r"powershell", l, re.I)]
    # External tools are started with "call", inside for /f, so that batch stubs
    # (and the real programs alike) return to the script.
    bare = [l for l in code if re.match(r"(pnputil|certutil|bcdedit|reg|fsutil|wmic|sc|shutdown)\s", command_of(l), re.I)]
    assert not bare, bare
    # No findstr or pipes: Wine's cannot be trusted and cmd's FOR handles it.
    assert not [l for l in code if "findstr" in l.lower() or "^|" in l]
    # The errorlevel trap: after "if errorlevel N call :x", errorlevel is x's.
    for a, b in zip(code, code[1:]):
        assert not (re.match(r"\s*if (not )?errorlevel \d+ call ", a, re.I) and re.match(r"\s*if (not )?errorlevel", b, re.I)), (a, b)
    # Every message line stays short: readable on an 80-column console, and
    # short enough for "call" everywhere.
    for line in code:
        m = re.search(r'call :(?:log|warn|step_failed|preflight_error|out|pass|fail|info|ask) (?:\d+ )?"([^"]*)"', line)
        if m:
            assert len(m.group(1)) <= 100, line
        assert len(line) < 400, line


def test_comments_hold_no_special_characters(texts: dict[str, str]) -> None:
    """cmd.exe still scans rem lines; keep & | < > ^ out of them."""
    for path, text in texts.items():
        if path.endswith(".cmd"):
            bad = [l for l in script_lines(text) if re.match(r"\s*@?rem\b", l, re.I) and re.search(r"[&|<>^]", l)]
            assert not bad, (path, bad)


MUTATING = re.compile(
    r"""(?ix)(?:^|\s|\()(?:
        reg\s+(?:add|delete)\b | pnputil\s+-(?:a|i|d|f)\b | certutil\s+-(?:addstore|delstore)\b |
        bcdedit\s+/(?:set|deletevalue)\b | shutdown\b | copy\b | del\b | move\b | mkdir\b | md\b | rmdir\b | rd\b
    )"""
)
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
                assert t in {"nul", '"%AGT_REPORT%"'}, s


def test_static_check_catches_an_unguarded_write() -> None:
    text = ":x\r\nreg add HKLM\\X /f\r\n:y\r\nif \"%AGT_CHECK%\"==\"1\" exit /b 0\r\nreg add HKLM\\Y /f\r\n:z\r\n>\"%AGT_STATE%\\a.txt\" echo 1\r\n"
    assert unguarded_writes(text) == [":x: reg add HKLM\\X /f", ':z: >"%AGT_STATE%\\a.txt" echo 1']


# ---------------------------------------------------------------------------
# Wine: run the scripts for real, with stub tools
# ---------------------------------------------------------------------------
wine_reason = wine_unavailable_reason()
needs_wine = pytest.mark.skipif(wine_reason is not None, reason=f"Wine tests skipped: {wine_reason}")


@pytest.fixture(scope="session")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WinePrefix]:
    """One booted Wine prefix for the whole session (booting takes ~10 s)."""
    if wine_reason:
        pytest.skip(f"Wine tests skipped: {wine_reason}")
    prefix = WinePrefix(tmp_path_factory.mktemp("wine") / "prefix")
    prefix.boot()
    yield prefix
    prefix.shutdown()
    shutil.rmtree(prefix.prefix, ignore_errors=True)


class Scenario:
    """A media tree, the fake Windows it runs on, and the Wine prefix."""

    def __init__(self, wine: WinePrefix, root: Path, contract: Contract, *, arches: Sequence[str] = ("x86", "amd64"),
                 media_name: str = "Guest Tools (1) new!", **render_kw: object) -> None:
        wine.reset()
        self.wine = wine
        self.drivers = make_drivers(arches)
        self.media = build_media(root / media_name, render(contract, self.drivers, **render_kw), self.drivers)
        self.fake = FakeWindows(root / "fake")
        self.fake.set_certificates({"aero-test.cer": TEST_THUMB, "redhat.cer": TRUST_THUMB})
        self.fake.set_testsigning(False)
        self.rehash()

    def rehash(self) -> None:
        """Let the certutil stub hash the media files as they are now."""
        self.fake.hash_media(self.media, media_files(self.media))

    def add_kb3033929(self) -> None:
        self.fake.add_reg_key(CBS + r"\Package_for_KB3033929~31bf3856ad364e35~amd64~~6.1.1.2")

    def run(self, script: str, *args: str, arch: str | None = None) -> WineResult:
        return self.wine.run_script(self.media / script, args, fake=self.fake, processor_architecture=arch)

    @property
    def state(self) -> Path:
        return self.wine.drive_c / "AeroGuestTools"

    def record(self, name: str) -> list[str]:
        p = self.state / name
        return p.read_text(encoding="ascii").splitlines() if p.exists() else []


def mutating(calls: Sequence[str]) -> list[str]:
    return [c for c in calls if MUTATING.search(" " + c)]


READ_ONLY = re.compile(
    r"^(fsutil dirty query C:|bcdedit /enum \{current\}|reg query .*|wmic qfe get HotFixID|"
    r"certutil -(store|dump|hashfile) .*|pnputil -e|sc query \S+)$"
)


def expected_storage_calls(contract: Contract, arch: str) -> list[str]:
    """The reg add lines of the storage pre-seed, built from the contract."""
    blk = contract.device("virtio-blk")
    svc = f"{SERVICES}\\viostor"
    calls = [
        f'reg add "{svc}" /v Type /t REG_DWORD /d "1" /f',
        f'reg add "{svc}" /v Start /t REG_DWORD /d "0" /f',
        f'reg add "{svc}" /v ErrorControl /t REG_DWORD /d "1" /f',
        f'reg add "{svc}" /v Group /t REG_SZ /d "SCSI miniport" /f',
        f'reg add "{svc}" /v ImagePath /t REG_EXPAND_SZ /d "system32\\drivers\\viostor.sys" /f',
        f'reg add "{svc}\\Parameters" /v BusType /t REG_DWORD /d "1" /f',
        f'reg add "{svc}\\Parameters\\PnpInterface" /v 5 /t REG_DWORD /d "1" /f',
    ]
    for hwid in blk.contract_hwids:
        for suffix in ("", "&CC_010000", "&CC_0100"):
            key = f"{CDD}\\" + (hwid + suffix).replace("\\", "#").lower()
            calls += [
                f'reg add "{key}" /v Service /t REG_SZ /d "viostor" /f',
                f'reg add "{key}" /v ClassGUID /t REG_SZ /d "{blk.class_guid}" /f',
                f'reg add "{key}" /v Class /t REG_SZ /d "SCSIAdapter" /f',
            ]
    return calls


def expected_install_calls(contract: Contract, arch: str, *, testsigning: bool = True, storage: bool = True) -> list[str]:
    """Every command a full /force setup runs on a clean system, in order."""
    calls = ['certutil -addstore -f TrustedPublisher "certs\\redhat.cer"']
    if testsigning:
        calls += ['certutil -addstore -f Root "certs\\aero-test.cer"',
                  'certutil -addstore -f TrustedPublisher "certs\\aero-test.cer"']
        if arch == "amd64":
            calls.append("bcdedit /set testsigning on")
    for name in ("viostor", "netkvm", "vioinput"):
        inf = f"drivers\\{arch}\\{name}\\{name}.inf"
        calls += [f'pnputil -a "{inf}"', f'pnputil -i -a "{inf}"']
    if storage:
        calls += expected_storage_calls(contract, arch)
    return calls


@needs_wine
def test_wine_check_reports_and_changes_nothing(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract, sha256_only=True)
    sc.add_kb3033929()
    r = sc.run("setup.cmd", "/check", "/verify-media")
    assert r.returncode == 0, r.stdout
    assert [c for c in r.calls if not READ_ONLY.match(c)] == []
    assert not sc.state.exists(), "/check created the state folder"
    assert not (wine.drive_c / "windows" / "system32" / "drivers" / "viostor.sys").exists()
    assert sc.fake.cert_store() == set() and sc.fake.driver_store() == {} and sc.fake.testsigning() == "No"
    # The plan lists exactly what a real run would do.
    would = [l.split("would run: ", 1)[1] for l in r.stdout.splitlines() if "would run: " in l]
    copy = 'copy /y "drivers\\amd64\\viostor\\viostor.sys" "C:\\windows\\System32\\drivers\\viostor.sys"'
    expected = expected_install_calls(contract, "amd64")
    expected.insert(expected.index(expected_storage_calls(contract, "amd64")[0]), copy)
    assert would == expected
    assert "KB3033929:            installed" in r.stdout
    assert f"{len(media_files(sc.media))} file(s) checked, 0 problem(s)" in r.stdout
    assert "would ask:" in r.stdout and "Check finished" in r.stdout


@needs_wine
def test_wine_check_as_non_admin_reports_exit_10(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract)
    sc.fake.set_admin(False)
    r = sc.run("setup.cmd", "/check")
    assert r.returncode == 10, r.stdout
    assert "not running as Administrator" in r.stdout and "Test mode:            unknown" in r.stdout
    assert [c for c in r.calls if not READ_ONLY.match(c)] == []
    assert not sc.state.exists()


@needs_wine
def test_wine_full_install_lifecycle_amd64(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    """setup /force, setup again, verify, uninstall /cleanupstorage: exact commands and state."""
    sc = Scenario(wine, tmp_path, contract, sha256_only=True)
    sc.add_kb3033929()
    r = sc.run("setup.cmd", "/force", "/verify-media")
    assert r.returncode == 0, r.stdout
    assert mutating(r.calls) == expected_install_calls(contract, "amd64")
    assert [c for c in r.calls if c not in mutating(r.calls) and not READ_ONLY.match(c)] == []
    assert sc.record("installed-driver-packages.txt") == [
        "oem10.inf drivers\\amd64\\viostor\\viostor.inf",
        "oem11.inf drivers\\amd64\\netkvm\\netkvm.inf",
        "oem12.inf drivers\\amd64\\vioinput\\vioinput.inf",
    ]
    assert sc.record("installed-certs.txt") == [
        f"TrustedPublisher {TRUST_THUMB} redhat.cer",
        f"Root {TEST_THUMB} aero-test.cer",
        f"TrustedPublisher {TEST_THUMB} aero-test.cer",
    ]
    assert sc.record("testsigning-enabled-by-setup.txt") == ["testsigning on"]
    assert sc.record("storage-preseed.txt") == ["viostor viostor.sys"]
    assert "arch=amd64" in sc.record("setup-state.txt")
    sys_copy = wine.drive_c / "windows" / "system32" / "drivers" / "viostor.sys"
    assert sys_copy.read_bytes() == (sc.media / "drivers/amd64/viostor/viostor.sys").read_bytes()
    assert sc.fake.reg_values(f"{SERVICES}\\viostor") == {
        "ErrorControl": ("REG_DWORD", "1"), "Group": ("REG_SZ", "SCSI miniport"),
        "ImagePath": ("REG_EXPAND_SZ", "system32\\drivers\\viostor.sys"), "Start": ("REG_DWORD", "0"),
        "Type": ("REG_DWORD", "1"),
    }
    assert sc.fake.testsigning() == "Yes"
    log = (sc.state / "install.log").read_text(encoding="ascii")
    assert log.count("running: ") == len(mutating(r.calls)) + 1  # + the copy
    assert "Published name :            oem10.inf" in log

    # Again: nothing is added twice, records do not grow.
    records = {n: sc.record(n) for n in ("installed-driver-packages.txt", "installed-certs.txt", "storage-preseed.txt")}
    r2 = sc.run("setup.cmd", "/force")
    assert r2.returncode == 0, r2.stdout
    assert not [c for c in r2.calls if c.startswith(("certutil -addstore", "bcdedit /set"))]
    assert "already in TrustedPublisher (added by an earlier run)" in r2.stdout
    assert "test mode is already on" in r2.stdout
    assert {n: sc.record(n) for n in records} == records
    assert sorted(sc.fake.driver_store()) == ["oem10.inf", "oem11.inf", "oem12.inf"]

    # verify.cmd: writes its report and passes.
    sc.fake.set_reg_value(f"{SERVICES}\\viostor\\Enum", "Count", "REG_DWORD", "1")
    r3 = sc.run("verify.cmd")
    report = (sc.state / "report.txt").read_text(encoding="ascii")
    assert "RESULT: PASS" in report, report
    assert r3.returncode == 0, r3.stdout
    assert "all 12 CriticalDeviceDatabase entries map virtio-blk to viostor" in report
    assert "oem10.inf is in the driver store" in report and "test mode is on" in report
    assert "virtio-blk: service viostor (start type 0) drives 1 device(s)" in report
    assert mutating(r3.calls) == []

    # uninstall /check lists what it would remove, and removes nothing.
    before = (sc.fake.driver_store(), sc.fake.cert_store(), sorted(p.name for p in sc.state.iterdir()))
    rc = sc.run("uninstall.cmd", "/check", "/cleanupstorage", "/cleanupstorageforce")
    assert rc.returncode == 0, rc.stdout
    assert [c for c in rc.calls if not READ_ONLY.match(c)] == []
    assert (sc.fake.driver_store(), sc.fake.cert_store(), sorted(p.name for p in sc.state.iterdir())) == before
    assert "would run: pnputil -d oem10.inf" in rc.stdout and "would run: bcdedit /set testsigning off" in rc.stdout
    assert f"would run: certutil -delstore Root {TEST_THUMB}" in rc.stdout
    assert 'would run: reg delete "' + CDD + '\\pci#ven_1af4&dev_1042" /f' in rc.stdout

    # uninstall /cleanupstorage refuses while viostor drives a device ...
    r4 = sc.run("uninstall.cmd", "/force", "/cleanupstorage")
    assert r4.returncode == 13, r4.stdout
    assert "REFUSED" in r4.stdout
    assert not [c for c in mutating(r4.calls) if c.startswith("reg ")]
    # ... and undoes everything once it does not.
    sc.fake.set_reg_value(f"{SERVICES}\\viostor\\Enum", "Count", "REG_DWORD", "0")
    r5 = sc.run("uninstall.cmd", "/force", "/cleanupstorage")
    assert r5.returncode == 0, r5.stdout
    blk = contract.device("virtio-blk")
    keys = [f"{CDD}\\" + (h + s).replace("\\", "#").lower() for h in blk.contract_hwids for s in ("", "&CC_010000", "&CC_0100")]
    # The packages were removed by r4 already (it only refused the storage part).
    assert mutating(r5.calls) == [
        f'reg add "{SERVICES}\\viostor" /v Start /t REG_DWORD /d "3" /f',
        *[f'reg delete "{k}" /f' for k in keys],
    ]
    assert mutating(r4.calls) == [
        "pnputil -d oem10.inf", "pnputil -d oem11.inf", "pnputil -d oem12.inf",
        f"certutil -delstore TrustedPublisher {TRUST_THUMB}",
        f"certutil -delstore Root {TEST_THUMB}",
        f"certutil -delstore TrustedPublisher {TEST_THUMB}",
        "bcdedit /set testsigning off",
    ]
    assert sc.fake.driver_store() == {} and sc.fake.cert_store() == set() and sc.fake.testsigning() == "No"
    assert sc.fake.reg_values(f"{SERVICES}\\viostor")["Start"] == ("REG_DWORD", "3")
    assert all(sc.fake.reg_values(k) is None for k in keys)
    assert sorted(p.name for p in sc.state.iterdir()) == ["install.log", "report.txt", "uninstall.log"]


@needs_wine
def test_wine_x86_install_without_test_mode(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract, arches=["x86"], sha256_only=True)
    r = sc.run("setup.cmd", "/force", arch="x86")
    assert r.returncode == 0, r.stdout
    # SHA-256-only without KB3033929 on x86: a warning, but the pre-seed still
    # runs (32-bit Windows does not enforce signatures of boot drivers).
    assert "KB3033929 is not installed" in r.stdout
    assert mutating(r.calls) == expected_install_calls(contract, "x86")
    assert "32-bit Windows 7 does not enforce kernel-mode driver signatures" in r.stdout
    assert (wine.drive_c / "windows/system32/drivers/viostor.sys").read_bytes() == (
        sc.media / "drivers/x86/viostor/viostor.sys").read_bytes()


@needs_wine
def test_wine_sha256_only_without_kb_skips_storage_on_amd64(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    # No thumbprints in config\media.cmd: setup reads them from certutil -dump.
    sc = Scenario(wine, tmp_path, contract, sha256_only=True, signing_policy="none", certs=[], cert_thumbprints=None)
    r = sc.run("setup.cmd", "/quiet", "/stageonly")
    assert r.returncode == 0, r.stdout
    assert r.calls_to("certutil")[:2] == ['certutil -dump "certs\\redhat.cer"',
                                          f"certutil -store TrustedPublisher {TRUST_THUMB.lower()}"]
    assert sc.record("installed-certs.txt") == [f"TrustedPublisher {TRUST_THUMB.lower()} redhat.cer"]
    assert mutating(r.calls) == [
        'certutil -addstore -f TrustedPublisher "certs\\redhat.cer"',
        'pnputil -a "drivers\\amd64\\viostor\\viostor.inf"',
        'pnputil -a "drivers\\amd64\\netkvm\\netkvm.inf"',
        'pnputil -a "drivers\\amd64\\vioinput\\vioinput.inf"',
    ]
    assert "storage pre-seed skipped: without KB3033929" in r.stdout
    assert "wmic qfe get HotFixID" in r.calls  # the second opinion was asked
    assert sc.record("storage-preseed.txt") == []


@needs_wine
def test_wine_certificate_trusted_before_setup_is_left_alone(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract, signing_policy="production", certs=[],
                  cert_thumbprints={"redhat.cer": TRUST_THUMB})
    sc.fake.add_to_cert_store("TrustedPublisher", TRUST_THUMB, "redhat.cer")
    r = sc.run("setup.cmd", "/force", "/skipstorage")
    assert r.returncode == 0, r.stdout
    assert "was in TrustedPublisher before setup" in r.stdout
    assert not [c for c in r.calls if "-addstore" in c] and sc.record("installed-certs.txt") == []
    assert not [c for c in r.calls if c.startswith(("reg add", "bcdedit /set"))]
    r2 = sc.run("uninstall.cmd", "/force")
    assert r2.returncode == 0, r2.stdout
    assert not [c for c in r2.calls if "-delstore" in c or c.startswith("bcdedit /set")]
    assert sc.fake.cert_store() == {("TrustedPublisher", TRUST_THUMB.lower())}


@needs_wine
def test_wine_uninstall_keeps_what_it_cannot_remove(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract)
    assert sc.run("setup.cmd", "/force", "/skipstorage").returncode == 0
    sc.fake.mark_in_use("oem10.inf")
    r = sc.run("uninstall.cmd", "/force")
    assert r.returncode == 1, r.stdout
    assert sc.record("installed-driver-packages.txt") == ["oem10.inf drivers\\amd64\\viostor\\viostor.inf"]
    assert sc.record("installed-certs.txt") == [] and sc.record("testsigning-enabled-by-setup.txt") == []
    assert "setup-state.txt" in {p.name for p in sc.state.iterdir()}


@needs_wine
@pytest.mark.parametrize(
    ("damage", "code", "message"),
    [
        ("tamper", 14, "CHANGED  drivers\\amd64\\netkvm\\netkvm.sys"),
        ("truncate", 14, "SIZE     drivers\\amd64\\netkvm\\netkvm.sys"),
        ("delete", 14, "MISSING  drivers\\amd64\\netkvm\\netkvm.sys"),
    ],
)
def test_wine_verify_media_detects_damage(wine: WinePrefix, tmp_path: Path, contract: Contract,
                                          damage: str, code: int, message: str) -> None:
    sc = Scenario(wine, tmp_path, contract, arches=["amd64"])
    target = sc.media / "drivers/amd64/netkvm/netkvm.sys"
    data = target.read_bytes()
    if damage == "tamper":
        target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "truncate":
        target.write_bytes(data[:-1])
    else:
        target.unlink()
    sc.rehash() if damage != "delete" else sc.fake.hash_media(sc.media, [p for p in media_files(sc.media)])
    r = sc.run("setup.cmd", "/force", "/verify-media")
    assert r.returncode == code, r.stdout
    assert message in r.stdout
    assert mutating(r.calls) == [], "setup changed the system after finding damaged media"


@needs_wine
@pytest.mark.parametrize(
    ("breakage", "code", "message"),
    [
        ("missing_inf", 11, "driver package drivers\\amd64\\netkvm\\netkvm.inf is missing"),
        ("missing_driver_dir", 11, "the driver folder drivers\\amd64 is missing"),
        ("missing_cert", 12, "certificate certs\\aero-test.cer is missing"),
        ("wrong_service", 13, "does not install service viostor"),
        ("missing_sys", 13, "driver file drivers\\amd64\\viostor\\viostor.sys is missing"),
    ],
)
def test_wine_preflight_failures_change_nothing(wine: WinePrefix, tmp_path: Path, contract: Contract,
                                                breakage: str, code: int, message: str) -> None:
    sc = Scenario(wine, tmp_path, contract)
    amd64 = sc.media / "drivers" / "amd64"
    if breakage == "missing_inf":
        (amd64 / "netkvm" / "netkvm.inf").unlink()
    elif breakage == "missing_driver_dir":
        shutil.rmtree(amd64)
    elif breakage == "missing_cert":
        (sc.media / "certs" / "aero-test.cer").unlink()
    elif breakage == "wrong_service":
        (amd64 / "viostor" / "viostor.inf").write_bytes(inf_text("vioscsi"))
    else:
        (amd64 / "viostor" / "viostor.sys").unlink()
    r = sc.run("setup.cmd", "/force")
    assert r.returncode == code, r.stdout
    assert message in r.stdout
    assert mutating(r.calls) == []
    assert "Setup stopped before changing anything" in r.stdout


@needs_wine
def test_wine_not_admin_exits_10_and_writes_nothing(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract)
    sc.fake.set_admin(False)
    for script in ("setup.cmd", "uninstall.cmd"):
        r = sc.run(script, "/force")
        assert r.returncode == 10, r.stdout
        assert "must run as Administrator" in r.stdout
        assert r.calls == ("fsutil dirty query C:",)
    assert not sc.state.exists()


@needs_wine
def test_wine_bad_option_and_help(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract)
    r = sc.run("setup.cmd", "/bogus")
    assert r.returncode == 2 and 'unknown option "/bogus"' in r.stdout and r.calls == ()
    r = sc.run("setup.cmd", "/?")
    assert r.returncode == 0 and "/verify-media" in r.stdout and r.calls == ()
    assert sc.run("uninstall.cmd", "-bogus").returncode == 2
    assert sc.run("verify.cmd", "/bogus").returncode == 3
