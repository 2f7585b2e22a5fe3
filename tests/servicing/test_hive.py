"""Hive reads and edits: every value type read back by three readers, untouched keys unchanged, idempotence.

Oracles: our reader (:mod:`aero_media.servicing.regf`, itself checked against hivex in test_regf.py),
``hivexget`` (hivex's C shell, which prints values in its own way) and regipy
(a separate pure-Python regf parser). The hives are our own
(:mod:`tests.lib.regf`, :mod:`tests.lib.win7image`).
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from aero_media.errors import SourceError, ToolError
from aero_media.servicing import hive
from aero_media.servicing.hive import AppendToList, RegType, RegValue, SetValue
from tests.lib import regf, win7image
from tests.lib.needs import need

pytestmark = pytest.mark.usefixtures("hivex")

KEY = "ControlSet001\\Services\\viostor"
ALL_TYPES = (
    RegValue.sz("Group", "SCSI miniport"),
    RegValue.sz("Unicode", "Gerät für Speicher"),  # not ASCII: written as hex(1), never re-encoded
    RegValue.expand_sz("ImagePath", "system32\\drivers\\viostor.sys"),
    RegValue.dword("Start", 0),
    RegValue.dword("Big", 0xFFFFFFFE),
    RegValue.binary("Blob", bytes(range(256))),
    RegValue.multi_sz("Owners", ["viostor.inf", "oem1.inf"]),
    RegValue.sz("", "default value"),
)


def regipy_value(path: Path, key: str, name: str) -> tuple[str, object] | None:
    """(type label, value) of one value as regipy reads it, or None."""
    regipy = pytest.importorskip("regipy.registry", reason="regipy (PyPI, test-only) is the second reader")
    try:
        found = regipy.RegistryHive(str(path)).get_key("\\" + key)
    except Exception:  # regipy raises its own RegistryKeyNotFoundException
        return None
    for v in found.get_values():
        if v.name.lower() == (name or "(default)").lower():
            return v.value_type, v.value
    return None


def hivexget_value(path: Path, key: str, value: RegValue) -> object:
    """One value as ``hivexget HIVE KEY NAME`` prints it, turned into Python by its type (hivex's C reader)."""
    proc = subprocess.run(["hivexget", str(path), key, value.name or "@"], capture_output=True, check=True)
    out = proc.stdout
    if value.type is RegType.BINARY:
        return out
    text = out.decode("utf-8")
    if value.type is RegType.DWORD:
        return int(text) & 0xFFFFFFFF  # hivexget prints a DWORD as a signed decimal
    if value.type is RegType.MULTI_SZ:
        return tuple(text.rstrip("\n").split("\n"))
    return text.rstrip("\n")


def export(path: Path, key: str) -> str:
    """The whole subtree under ``key`` as hivexregedit prints it (sorted, lossless)."""
    return subprocess.run(["hivexregedit", "--export", str(path), "\\" + key], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def system(tmp_path: Path) -> Path:
    return win7image.system_hive(tmp_path / "SYSTEM")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_our_empty_hive_has_a_valid_base_block_and_opens_in_hivex_and_regipy(tmp_path: Path) -> None:
    path = regf.write_empty_hive(tmp_path / "EMPTY")
    data = path.read_bytes()
    assert len(data) == 8192 and data[:4] == b"regf" and data[4096:4100] == b"hbin"
    assert struct.unpack_from("<I", data, 0x1FC)[0] == regf.checksum(data[:4096])
    assert export(path, "").strip().splitlines() == ["Windows Registry Editor Version 5.00", "", "[\\]"]
    regipy = pytest.importorskip("regipy.registry")
    root = regipy.RegistryHive(str(path)).root
    assert root.header.subkey_count == 0 and root.header.values_count == 0
    assert regf.empty_hive() == regf.empty_hive()  # repeatable


def test_every_value_type_reads_back_the_same_in_three_readers(system: Path) -> None:
    changes = hive.apply(system, [SetValue(KEY, v) for v in ALL_TYPES])
    assert all(c.changed and c.old is None for c in changes)
    for value in ALL_TYPES:
        assert value.same_as(hive.read_value(system, KEY, value.name)), value.name
        assert hivexget_value(system, KEY, value) == value.data, value.name
        got = regipy_value(system, KEY, value.name)
        assert got is not None, value.name
        expected = list(value.data) if isinstance(value.data, tuple) else value.data
        assert got == (value.type.label, expected), value.name


def test_expand_sz_is_utf16le_with_its_nul_under_type_2(system: Path) -> None:
    hive.apply(system, [SetValue(KEY, RegValue.expand_sz("ImagePath", "system32\\drivers\\viostor.sys"))])
    line = next(x for x in export(system, KEY).splitlines() if x.startswith('"ImagePath"'))
    assert line == '"ImagePath"=hex(2):' + ",".join(f"{b:02x}" for b in "system32\\drivers\\viostor.sys\0".encode(
        "utf-16-le"))


def test_missing_parents_are_created_and_existing_keys_keep_their_case(system: Path) -> None:
    changes = hive.apply(system, [
        SetValue("controlset001\\SERVICES\\Intelide", RegValue.dword("Start", 3)),
        SetValue("Brand\\New\\Deep\\Key", RegValue.sz("X", "y")),
    ])
    assert [c.key for c in changes] == ["ControlSet001\\Services\\intelide", "Brand\\New\\Deep\\Key"]
    assert changes[0].old == RegValue.dword("Start", 0)
    services = hive.read_key(system, "ControlSet001\\Services")
    assert services is not None and services.subkeys == ("intelide",)  # no second, differently cased key
    assert hive.read_value(system, "BRAND\\new\\deep\\KEY", "x") == RegValue.sz("X", "y")


def test_untouched_keys_and_values_are_unchanged(system: Path) -> None:
    before = {k: export(system, k) for k in win7image.UNTOUCHED_KEYS["SYSTEM"]}
    raw_before = {k: regipy_value(system, k, "Service") for k in win7image.UNTOUCHED_KEYS["SYSTEM"]}
    select_before = hive.read_key(system, "Select")
    hive.apply(system, [SetValue(KEY, v) for v in ALL_TYPES] +
               [SetValue("Select", RegValue.dword("Extra", 7))])
    assert {k: export(system, k) for k in before} == before
    assert {k: regipy_value(system, k, "Service") for k in before} == raw_before
    after = hive.read_key(system, "Select")
    assert select_before is not None and after is not None
    assert [v for v in after.values if v.name != "Extra"] == list(select_before.values)


def test_applying_the_same_edits_twice_changes_nothing_the_second_time(system: Path) -> None:
    edits = [SetValue(KEY, v) for v in ALL_TYPES] + [
        SetValue("", RegValue.dword("AtTheRoot", 1)),
        AppendToList("Path\\Key", RegValue.expand_sz("DevicePath", "%SystemRoot%\\Drivers\\Aero"),
                     default="%SystemRoot%\\inf")]
    first = hive.apply(system, edits)
    digest = sha(system)
    second = hive.apply(system, edits)
    assert all(c.changed for c in first)
    assert not any(c.changed for c in second)
    assert [c.old for c in second] == [c.new for c in first]
    assert sha(system) == digest  # not even rewritten


def test_a_string_stored_without_its_nul_counts_as_the_same(system: Path) -> None:
    raw = "SCSI miniport".encode("utf-16-le")  # no terminator, as some tools write
    text = f'Windows Registry Editor Version 5.00\n\n[\\{KEY.rsplit(chr(92), 1)[0]}]\n\n[\\{KEY}]\n"Group"=hex(1):' \
           + ",".join(f"{b:02x}" for b in raw) + "\n"
    (system.parent / "x.reg").write_text(text)
    subprocess.run(["hivexregedit", "--merge", str(system), str(system.parent / "x.reg")], check=True)
    digest = sha(system)
    (change,) = hive.apply(system, [SetValue(KEY, RegValue.sz("Group", "SCSI miniport"))])
    assert not change.changed and sha(system) == digest


@pytest.mark.parametrize(("existing", "expected"), [
    ("%SystemRoot%\\inf", "%SystemRoot%\\inf;%SystemRoot%\\Drivers\\Aero"),
    ("%SystemRoot%\\inf;", "%SystemRoot%\\inf;%SystemRoot%\\Drivers\\Aero"),
    ("%SystemRoot%\\inf;%SYSTEMROOT%\\drivers\\aero", "%SystemRoot%\\inf;%SYSTEMROOT%\\drivers\\aero"),
    (None, "%SystemRoot%\\inf;%SystemRoot%\\Drivers\\Aero"),
])
def test_device_path_gains_our_folder_once(tmp_path: Path, existing: str | None, expected: str) -> None:
    software = win7image.software_hive(tmp_path / "SOFTWARE", device_path=existing)
    edit = AppendToList("Microsoft\\Windows\\CurrentVersion",
                        RegValue.expand_sz("DevicePath", "%SystemRoot%\\Drivers\\Aero"), default="%SystemRoot%\\inf")
    (change,) = hive.apply(software, [edit])
    assert change.new.data == expected and change.new.type is RegType.EXPAND_SZ
    assert change.changed == (existing != expected)
    assert hivexget_value(software, change.key, change.new) == expected
    (again,) = hive.apply(software, [edit])
    assert not again.changed


def test_current_control_set_comes_from_select_current(tmp_path: Path) -> None:
    assert hive.current_control_set(win7image.system_hive(tmp_path / "A", current=1)) == "ControlSet001"
    assert hive.current_control_set(win7image.system_hive(tmp_path / "B", current=2)) == "ControlSet002"
    with pytest.raises(SourceError, match="ControlSet003, which does not exist"):
        hive.current_control_set(win7image.system_hive(tmp_path / "C", current=3))
    with pytest.raises(SourceError, match="no usable Select"):
        hive.current_control_set(regf.write_empty_hive(tmp_path / "D"))


def test_a_failed_merge_leaves_the_hive_untouched(tmp_path: Path) -> None:
    broken = tmp_path / "BROKEN"
    broken.write_bytes(b"regf" + b"\0" * 8188)  # header checksum wrong: refused before hivex opens it
    before = broken.read_bytes()
    with pytest.raises(SourceError) as info:
        hive.apply(broken, [SetValue("A", RegValue.dword("B", 1))])
    assert "\n" not in info.value.render()
    assert broken.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["BROKEN"]  # no temp file left


def test_reg_lines_use_hivexregedit_syntax() -> None:
    assert hive.reg_line(RegValue.dword("Start", 0x1F)) == '"Start"=dword:0000001f'
    assert hive.reg_line(RegValue.binary("Element", b"\x01")) == '"Element"=hex:01'
    assert hive.reg_line(RegValue.expand_sz("P", "a")) == '"P"=hex(2):61,00,00,00'
    assert hive.reg_line(RegValue.multi_sz("M", ["a", "b"])) == '"M"=hex(7):61,00,00,00,62,00,00,00,00,00'
    assert hive.reg_line(RegValue.sz('q"uo\\te', "")) == '"q\\"uo\\\\te"=hex(1):00,00'
    assert hive.reg_line(RegValue.sz("", "x")) == '@=hex(1):78,00,00,00'


def test_values_round_trip_through_their_stored_bytes() -> None:
    for value in ALL_TYPES:
        assert RegValue.decode(value.name, value.type, value.raw()) == value
    odd = RegValue.decode("x", RegType.SZ, b"abc")
    assert odd.data == b"abc"  # undecodable bytes are kept, not guessed at
    assert RegValue.decode("q", RegType.QWORD, (5).to_bytes(8, "little")).data == 5


def test_a_missing_hive_tool_is_one_line_naming_the_package(monkeypatch: pytest.MonkeyPatch, system: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolError) as info:  # reads need no tool (test_regf.py); a merge does
        hive.apply(system, [SetValue("Select", RegValue.dword("Current", 2))])
    assert "apt-get install libwin-hivex-perl" in info.value.render() and "\n" not in info.value.render()


def test_regipy_is_there_when_ci_requires_it() -> None:
    try:
        import regipy  # noqa: F401
    except ImportError:
        need("regipy", "regipy is not installed (pip install regipy: the test-only second hive reader)")
