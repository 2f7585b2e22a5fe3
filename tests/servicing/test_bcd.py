"""BCD test mode: which objects get element 16000049, and that it is stored as Windows stores a boolean.

Oracles: the stores are built by :mod:`tests.lib.win7image` (as ``BCD-Template``
and the DVD's ``boot\\BCD`` are shaped); the result is read back by
``hivexregedit --export`` text, ``hivexget`` and regipy.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aero_media.errors import SourceError
from aero_media.servicing import bcd, hive
from aero_media.servicing.bcd import Role, Target
from aero_media.servicing.edits import HiveFile, ImageKind, Options, registry_edits
from aero_media.servicing.hive import Edit, RegType, RegValue, SetValue
from aero_media.spec.contract import Contract
from tests.lib import win7image

pytestmark = pytest.mark.usefixtures("hivex")


def test_the_dvd_store_sets_globalsettings_bootloadersettings_and_the_default_loader(tmp_path: Path) -> None:
    store = win7image.bcd_hive(tmp_path / "BCD", default=True)
    assert bcd.targets(store) == (Target(bcd.GLOBAL_SETTINGS, Role.GLOBAL_SETTINGS),
                                  Target(bcd.BOOTLOADER_SETTINGS, Role.BOOTLOADER_SETTINGS),
                                  Target(win7image.DEFAULT_LOADER, Role.DEFAULT))


def test_the_template_has_no_loader_of_its_own(tmp_path: Path) -> None:
    store = win7image.bcd_hive(tmp_path / "BCD-Template", default=False)
    assert [t.role for t in bcd.targets(store)] == [Role.GLOBAL_SETTINGS, Role.BOOTLOADER_SETTINGS]


def _testsigning(store: Path, contract: Contract) -> tuple[Edit, ...]:
    """The edits the servicing table gives the DVD's ``boot\\BCD`` for test mode, on the objects found in it."""
    return registry_edits(ImageKind.MEDIA, HiveFile.MEDIA_BCD_BIOS, contract, Options(testsigning=True),
                          bcd_objects=[t.guid for t in bcd.targets(store)])


def test_testsigning_is_a_one_byte_reg_binary_as_windows_writes_it(tmp_path: Path, contract: Contract) -> None:
    store = win7image.bcd_hive(tmp_path / "BCD", default=True)
    found = bcd.targets(store)
    changes = hive.apply(store, _testsigning(store, contract))
    assert [c.key for c in changes] == [f"Objects\\{t.guid}\\Elements\\16000049" for t in found]
    for t in found:
        key = f"Objects\\{t.guid}\\Elements\\16000049"
        text = subprocess.run(["hivexregedit", "--export", str(store), "\\" + key], capture_output=True, text=True,
                              check=True).stdout
        assert '"Element"=hex(3):01' in text.splitlines()
        raw = subprocess.run(["hivexget", str(store), key, "Element"], capture_output=True, check=True).stdout
        assert raw == b"\x01"
    regipy = pytest.importorskip("regipy.registry")
    values = regipy.RegistryHive(str(store)).get_key(
        f"\\Objects\\{win7image.DEFAULT_LOADER}\\Elements\\16000049").get_values()
    assert [(v.name, v.value_type, v.value) for v in values] == [("Element", "REG_BINARY", b"\x01")]
    assert not any(c.changed for c in hive.apply(store, _testsigning(store, contract)))


def test_the_boolean_is_not_aeros_12_byte_form() -> None:
    value = bcd.boolean(True)
    assert (value.name, value.type, value.raw()) == ("Element", RegType.BINARY, b"\x01")
    assert bcd.boolean(False).raw() == b"\x00"
    assert hive.reg_line(value) == '"Element"=hex:01'  # the same bytes and type as hex(3):01


def test_a_default_that_names_no_object_is_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = win7image.bcd_hive(tmp_path / "BCD", default=True)
    hive.apply(store, [SetValue(f"Objects\\{bcd.BOOTMGR}\\Elements\\23000003",
                                RegValue.sz("Element", "{00000000-0000-0000-0000-00000000dead}"))])
    assert [t.role for t in bcd.targets(store)] == [Role.GLOBAL_SETTINGS, Role.BOOTLOADER_SETTINGS]
    assert "does not exist; not changing it" in capsys.readouterr().err


def test_a_hive_that_is_no_bcd_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is not a BCD store"):
        bcd.targets(win7image.system_hive(tmp_path / "SYSTEM"))
