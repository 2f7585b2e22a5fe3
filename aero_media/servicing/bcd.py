r"""BCD stores (a registry hive): which objects to change for test mode, and how a boolean element is stored.

A BCD store keeps objects under ``Objects\{GUID}`` and each object's elements
under ``Elements\<element id in hex>``, in a value named ``Element``
(docs/windows7.md#bcd-test-mode). ``bcdedit /set {default} testsigning on``
sets element ``16000049`` (AllowPrereleaseSignatures) on the boot manager's
default loader. Offline we set it on every object a Windows 7 loader takes it
from:

* ``{globalsettings}``, inherited by every application;
* ``{bootloadersettings}``, inherited by every OS loader, including the one
  Setup creates from ``BCD-Template`` (the template has no loader of its own);
* the boot manager's default object, named by its element ``23000003`` (the
  DVD's ``boot\BCD`` points it at the Setup loader), where present.

Encoding: a boolean ``Element`` is REG_BINARY holding **one byte**, ``01`` for
on (``hex(3):01`` in a ``.reg`` file). That is what a store exported from real
Windows holds for every boolean (virt-v2v's ``windows-bcd.reg``). Aero's Linux
patch writes a 12-byte form (``49 00 00 16 04 00 00 00 01 00 00 00``) instead;
we follow what Windows itself writes, because the boot manager reads the store
Windows made, and Windows never made that form.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ..errors import SourceError
from ..log import warn
from . import hive
from .hive import RegValue

BOOTMGR = "{9dea862c-5cdd-4e70-acc1-f32b344d4795}"
GLOBAL_SETTINGS = "{7ea2e1ac-2e61-4728-aaa3-896d9d0a9f0e}"
BOOTLOADER_SETTINGS = "{6efb52bf-1766-41db-a6b3-0ee5eff72bd7}"

DEFAULT_OBJECT = "23000003"
"""Boot manager element: the default object's GUID (REG_SZ)."""
TESTSIGNING = "16000049"
"""Boolean: AllowPrereleaseSignatures (``testsigning``)."""
NOINTEGRITYCHECKS = "16000048"
"""Boolean: DisableIntegrityChecks (``nointegritychecks``), opt-in only: it turns code-integrity checks off."""
ELEMENT_VALUE = "Element"
ELEMENT_KEY = "Objects\\{bcd_object}\\Elements\\{element}"
"""Where an object's element is stored (``str.format`` over ``bcd_object`` and ``element``)."""


class Role(StrEnum):
    """Why an object is changed."""

    GLOBAL_SETTINGS = "globalsettings"
    BOOTLOADER_SETTINGS = "bootloadersettings"
    DEFAULT = "default"


@dataclass(frozen=True)
class Target:
    """An object of the store to set elements on."""

    guid: str
    """As stored (lower case in stores Windows writes)."""
    role: Role


def boolean(on: bool) -> RegValue:
    """A boolean element's value as Windows stores it: REG_BINARY, one byte."""
    return RegValue.binary(ELEMENT_VALUE, b"\x01" if on else b"\x00")


def targets(store: Path, label: str | None = None) -> tuple[Target, ...]:
    """The objects of the BCD hive ``store`` that test mode is set on (those present), in a fixed order.

    ``label`` names the store in messages (default: its file name, which does not tell ``boot\\BCD`` from
    ``efi\\microsoft\\boot\\bcd``).
    """
    name = label or store.name
    objects = hive.read_key(store, "Objects")
    if objects is None:
        raise SourceError(f"{name} is not a BCD store (no Objects key)",
                          "give boot\\BCD, efi\\microsoft\\boot\\bcd or Windows\\System32\\config\\BCD-Template")
    present = {name.lower(): name for name in objects.subkeys}
    found: list[Target] = []
    for guid, role in ((GLOBAL_SETTINGS, Role.GLOBAL_SETTINGS), (BOOTLOADER_SETTINGS, Role.BOOTLOADER_SETTINGS)):
        if guid in present:
            found.append(Target(present[guid], role))
    default_key = ELEMENT_KEY.format(bcd_object=BOOTMGR, element=DEFAULT_OBJECT)
    default = hive.read_value(store, default_key, ELEMENT_VALUE) if BOOTMGR in present else None
    if default is not None and isinstance(default.data, str):
        guid = default.data.strip().lower()
        if guid not in present:
            warn(f"{name}: the boot manager's default object {default.data} does not exist; not changing it")
        elif all(t.guid.lower() != guid for t in found):
            found.append(Target(present[guid], Role.DEFAULT))
    if not found:
        raise SourceError(f"{name} has neither {{globalsettings}}, {{bootloadersettings}} nor a default "
                          "loader", "the store is damaged, or is not a Windows 7 BCD store")
    return tuple(found)
