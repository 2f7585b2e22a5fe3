"""Our in-process hive reader against hivex and regipy, and against hostile hives.

Oracles: ``hivexregedit --export`` (hivex's C library, through Perl; parsed by
:mod:`tests.lib.regexport`) over every key of each hive, and regipy (a separate
pure-Python regf parser) for every key's subkeys and values. The hives are our
own: those :mod:`tests.lib.win7image` builds with hivex, and hand-laid ones
(:class:`tests.lib.regf.HiveBuilder`) with the layouts hivex never writes: ``ri``
indexes, ``li`` and ``lf`` leaves, ``db`` big data, UTF-16 names.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from aero_media.errors import SourceError
from aero_media.servicing import hive
from aero_media.servicing.hive import RegKey, RegType, RegValue, SetValue
from tests.lib import regf, win7image
from tests.lib.regexport import export_tree

pytestmark = pytest.mark.usefixtures("hivex")

BIG = bytes(i % 251 for i in range(40000))  # three db segments
EVERY_TYPE = (
    RegValue.sz("Group", "SCSI miniport"),
    RegValue.sz("Unicode", "Gerät für Speicher"),
    RegValue.expand_sz("ImagePath", "system32\\drivers\\viostor.sys"),
    RegValue.dword("Start", 0),
    RegValue.dword("Big", 0xFFFFFFFE),
    RegValue.binary("Blob", bytes(range(256))),
    RegValue.binary("Large", BIG),  # hivex stores it in one cell
    RegValue.binary("Empty", b""),
    RegValue.multi_sz("Owners", ["viostor.inf", "oem1.inf"]),
    RegValue(name="Q", type=RegType.QWORD, data=2**40 + 5),
    RegValue.sz("", "default value"),
)


def hand_laid(path: Path, big: bytes = BIG) -> Path:
    """A hive of layouts hivex does not write: the root's subkeys behind an ``ri`` of an ``lf`` and an ``li``
    leaf, an ``lh`` leaf below, a UTF-16 key and value name, inline, one-cell and ``db`` values."""
    b = regf.HiveBuilder()
    deep = b.nk("Deep", values=[b.vk("Inline2", RegType.BINARY, b"\x01\x02")])
    alpha = b.nk("Alpha", subkeys=b.leaf(b"lh", [(deep, "Deep")]), subkey_count=1, values=[
        b.vk("Str", RegType.SZ, "hello".encode("utf-16-le") + b"\0\0"),
        b.vk("Num", RegType.DWORD, (7).to_bytes(4, "little")),
        b.vk("Huge", RegType.BINARY, big),
        b.vk("Größe", RegType.SZ, "ü".encode("utf-16-le") + b"\0\0", utf16=True),
    ])
    beta = b.nk("Beta")
    gamma = b.nk("Gämma", utf16=True)
    delta = b.nk("Delta", values=[b.vk("", RegType.SZ, "d".encode("utf-16-le") + b"\0\0")])
    index = b.index([b.leaf(b"lf", [(alpha, "Alpha"), (beta, "Beta")]), b.leaf(b"li", [(delta, "Delta"),
                                                                                       (gamma, "Gämma")])])
    root = b.nk("ROOT", subkeys=index, subkey_count=4, root=True)
    path.write_bytes(b.build(root))
    return path


def every_type(path: Path) -> Path:
    win7image.system_hive(path)
    hive.apply(path, [SetValue("ControlSet001\\Services\\viostor", v) for v in EVERY_TYPE])
    return path


HIVES: dict[str, Callable[[Path], Path]] = {
    "system": win7image.system_hive,
    "software": win7image.software_hive,
    "bcd": lambda p: win7image.bcd_hive(p, default=True),
    "every-type": every_type,
    "hand-laid": hand_laid,
}


def with_subkeys(keys: list[RegKey]) -> dict[str, RegKey]:
    """hivex's export lists keys, each alone: give each the names of the keys exported right below it."""
    out = {}
    for key in keys:
        below = tuple(k.path.rpartition("\\")[2] for k in keys
                      if k.path.rpartition("\\")[0].lower() == key.path.lower() and k.path)
        out[key.path] = RegKey(key.path, key.values, tuple(sorted(below)))
    return out


@pytest.mark.parametrize("make", HIVES.values(), ids=HIVES.keys())
def test_every_key_reads_the_same_as_hivex_exports_it(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    path = make(tmp_path / "HIVE")
    theirs = with_subkeys(export_tree(path))
    assert len(theirs) > 2
    for name, key in theirs.items():
        assert hive.read_key(path, name) == key, name
        assert hive.read_key(path, name.upper()) == key, name  # lookups ignore case, paths keep it


@pytest.mark.parametrize("make", HIVES.values(), ids=HIVES.keys())
def test_every_key_reads_the_same_as_regipy_reads_it(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    registry = pytest.importorskip("regipy.registry", reason="regipy (PyPI, test-only) is the second reader")
    path = make(tmp_path / "HIVE")
    theirs = registry.RegistryHive(str(path))
    checked = 0
    for name in with_subkeys(export_tree(path)):
        ours = hive.read_key(path, name)
        assert ours is not None
        node = theirs.get_key("\\" + name) if name else theirs.root
        assert sorted(s.name for s in node.iter_subkeys()) == list(ours.subkeys), name
        got = {("" if v.name == "(default)" else v.name): v for v in node.iter_values(trim_values=False)}
        assert sorted(got) == sorted(v.name for v in ours.values), name
        for value in ours.values:
            seen = got[value.name]
            assert seen.value_type == value.type.label, (name, value.name)
            if value.type in (RegType.SZ, RegType.EXPAND_SZ, RegType.DWORD, RegType.QWORD):
                assert seen.value == value.data, (name, value.name)
            elif value.type is RegType.MULTI_SZ:
                assert tuple(seen.value) == value.data, (name, value.name)
            elif value.data:  # regipy gives an empty binary as None
                assert seen.value == value.data, (name, value.name)
            checked += 1
    assert checked


def test_big_data_comes_back_whole_from_its_segments(tmp_path: Path) -> None:
    path = hand_laid(tmp_path / "HIVE")
    huge = hive.read_value(path, "alpha", "HUGE")
    assert huge == RegValue.binary("Huge", BIG)
    assert hive.read_value(path, "Alpha\\Deep", "Inline2") == RegValue.binary("Inline2", b"\x01\x02")
    assert hive.read_key(path, "gämma") is not None and hive.read_key(path, "Alpha\\Nope") is None


def test_reads_start_no_hivex_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = win7image.system_hive(tmp_path / "SYSTEM")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert hive.current_control_set(path) == "ControlSet001"
    assert hive.read_value(path, "Select", "Current") == RegValue.dword("Current", 1)


# -- hostile hives ----------------------------------------------------------------------------------------------

def _damaged(damage: Callable[[regf.HiveBuilder], int]) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        b = regf.HiveBuilder()
        path.write_bytes(b.build(damage(b)))
        return path
    return make


def _key(b: regf.HiveBuilder, name: str = "K", **kw: object) -> int:
    """A root with one subkey ``name`` (``kw`` for that subkey's node)."""
    child = b.nk(name, **kw)  # type: ignore[arg-type]
    return b.nk("ROOT", subkeys=b.leaf(b"lh", [(child, name)]), subkey_count=1, root=True)


def _vk_raw(b: regf.HiveBuilder, name: bytes, size: int, at: int, type_code: int = 3, flags: int = 1) -> int:
    return b.cell(b"vk" + struct.pack("<HIIIHH", len(name), size, at, type_code, flags, 0) + name)


HOSTILE: dict[str, Callable[[regf.HiveBuilder], int]] = {
    "subkey list past the bins": lambda b: b.nk("ROOT", subkeys=0x7FFFFFF8, subkey_count=1, root=True),
    "subkey list unaligned": lambda b: b.nk("ROOT", subkeys=0x21, subkey_count=1, root=True),
    "list claims more entries than its cell": lambda b: b.nk(
        "ROOT", subkeys=b.cell(b"lh" + struct.pack("<H", 0xFFFF)), subkey_count=1, root=True),
    "index names a leaf twice": lambda b: b.nk(
        "ROOT", subkeys=b.index([leaf := b.leaf(b"li", [(b.nk("A"), "A")]), leaf]), subkey_count=2, root=True),
    "index names an index": lambda b: b.nk(
        "ROOT", subkeys=b.index([b.index([])]), subkey_count=1, root=True),
    "subkey list of no known kind": lambda b: b.nk("ROOT", subkeys=b.cell(b"zz\0\0"), subkey_count=1, root=True),
    "leaf names a value cell": lambda b: b.nk(
        "ROOT", subkeys=b.leaf(b"li", [(b.vk("x", 4, b"\0\0\0\0"), "x")]), subkey_count=1, root=True),
    "child is a free cell": lambda b: _free_child(b),
    "value count past its list": lambda b: _value_count(b),
    "value claims 2 GB": lambda b: _key(b, values=[_vk_raw(b, b"v", 0x7FFFFFF0, b.cell(b"x" * 8))]),
    "value longer than its cell": lambda b: _key(b, values=[_vk_raw(b, b"v", 64, b.cell(b"x" * 8))]),
    "inline value of 9 bytes": lambda b: _key(b, values=[_vk_raw(b, b"v", 0x80000009, 0)]),
    "big data with too few segments": lambda b: b.cell(b"\0" * 60000) and _key(b, values=[_vk_raw(
        b, b"v", 3 * regf.SEGMENT, b.cell(b"db" + struct.pack("<HI", 1, b.cell(struct.pack("<I", b.cell(b"s"))))))]),
    "value name past its cell": lambda b: _key(b, values=[b.cell(b"vk" + struct.pack("<HIIIHH", 200, 0x80000000,
                                                                                     0, 3, 1, 0))]),
    "value of no registry type": lambda b: _key(b, values=[b.vk("v", 0x1234, b"\0")]),
    "key name not UTF-16": lambda b: b.nk(
        "ROOT", subkeys=b.leaf(b"li", [(b.cell(b"nk" + struct.pack("<HQIIIIIIIIIIIIIIIHH", 0, 0, 0, 0, 0, 0,
                                                                    0xFFFFFFFF, 0xFFFFFFFF, 0, 0xFFFFFFFF, 0x20,
                                                                    0xFFFFFFFF, 0, 0, 0, 0, 0, 3, 0) + b"abc"),
                                        "x")]), subkey_count=1, root=True),
}


def _free_child(b: regf.HiveBuilder) -> int:
    child = b.nk("K")
    root = b.nk("ROOT", subkeys=b.leaf(b"lh", [(child, "K")]), subkey_count=1, root=True)
    b.free(child)
    return root


def _value_count(b: regf.HiveBuilder) -> int:
    child = b.nk("K", values=[b.vk("a", 4, b"\0\0\0\0")])
    root = b.nk("ROOT", subkeys=b.leaf(b"lh", [(child, "K")]), subkey_count=1, root=True)
    b.patch(child, 0x24, struct.pack("<I", 0x40000000))
    return root


@pytest.mark.parametrize("damage", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_hive_is_one_line_naming_it(tmp_path: Path, damage: Callable[[regf.HiveBuilder], int]) -> None:
    path = _damaged(damage)(tmp_path / "HIVE")
    with pytest.raises(SourceError) as info:
        root = hive.read_key(path, "", label="install.wim#1 SYSTEM")
        assert root is not None
        for sub in root.subkeys:
            hive.read_key(path, sub, label="install.wim#1 SYSTEM")
    text = info.value.render()
    assert text.startswith("install.wim#1 SYSTEM") and "\n" not in text


def test_a_key_that_lists_itself_is_followed_only_as_deep_as_asked(tmp_path: Path) -> None:
    b = regf.HiveBuilder()
    key = b.nk("Loop", subkeys=0, subkey_count=1)  # pointed at its own leaf below, once the leaf is laid
    leaf = b.leaf(b"li", [(key, "Loop")])
    b.patch(key, 0x1C, struct.pack("<I", leaf))
    root = b.nk("ROOT", subkeys=b.leaf(b"li", [(key, "Loop")]), subkey_count=1, root=True)
    path = tmp_path / "HIVE"
    path.write_bytes(b.build(root))
    assert hive.read_key(path, "\\".join(["Loop"] * 40)) == RegKey("\\".join(["Loop"] * 40), (), ("Loop",))
    assert hive.read_key(path, "\\".join(["Loop"] * 600)) is None  # deeper than Windows allows: absent


def test_any_one_damaged_byte_gives_a_source_error_or_a_read(tmp_path: Path) -> None:
    """Every byte of the hive bins of a hand-laid hive, set to 0xFF and to 0x00 in turn: reading every key gives
    a result or one SourceError, never another exception."""
    good = hand_laid(tmp_path / "GOOD", big=b"\xAB" * 20).read_bytes()
    keys = ["", "Alpha", "Alpha\\Deep", "Beta", "Delta", "Gämma"]
    path = tmp_path / "HIVE"
    errors = 0
    end = good.rindex(b"nk") + 0x60  # past the root key, the last cell laid
    for at in range(regf.BASE_BLOCK + 0x20, end):
        for byte in (0xFF, 0x00):
            if good[at] == byte:
                continue
            path.write_bytes(good[:at] + bytes([byte]) + good[at + 1:])
            for key in keys:
                try:
                    hive.read_key(path, key)
                except SourceError:
                    errors += 1
    assert errors  # the damage was seen, not skipped over
