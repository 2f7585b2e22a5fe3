r"""Is each input what its role says? The WIMs, their hives and the DVD, checked against each other.

The WIM XML is written by whoever made the WIM, and ``wimlib-imagex info`` sets
any of it; so servicing checks what the images themselves hold
(docs/windows7.md#registry-hives, #install-images):

* the two WIMs are two files, and each plays its own role: boot.wim's images
  are Windows PE (``EDITIONID`` ``WindowsPE``, its boot image, index 2, is
  Setup), install.wim's are installed editions (never ``WindowsPE``);
* each hive is the hive its path names: SYSTEM has ``Select`` and a
  ``ControlSet00N``, SOFTWARE has ``Microsoft`` (and no ``Select``), a BCD store
  has ``Objects``; the name a hive records for itself in its header, or its
  root key's name, must not be another hive's;
* SOFTWARE's ``Microsoft\Windows NT\CurrentVersion`` says ``CurrentVersion``
  6.1 and ``CurrentBuild`` 7600 or 7601, the build the XML says;
* a DVD that cannot boot (no El Torito record), or whose boot store is absent
  so test mode cannot be set there, is named before the work starts.

Every check is a table lookup and a one-line :class:`SourceError` (or warning).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import SourceError, UsageError
from . import hive, wim
from .edits import HiveFile

WINPE_EDITION = "WindowsPE"
"""``WINDOWS/EDITIONID`` of every image of a Windows 7 boot.wim (WinPE 3.x); installed editions say their own."""
WINDOWS7_VERSION = "6.1"
WINDOWS7_BUILDS = ("7600", "7601")
"""RTM and SP1: the only Windows 7 builds (``CurrentBuild`` is REG_SZ)."""
CURRENT_VERSION = "Microsoft\\Windows NT\\CurrentVersion"

ROOT_NAMES = {
    "cmi-createhive{2a7fb991-7bbe-4f9d-b91e-7cb51d4737f5}": HiveFile.SYSTEM,
    "cmi-createhive{199dafc2-6f16-4946-bf90-5a3fc3a60902}": HiveFile.SOFTWARE,
}
"""Root key names Windows 7's own SYSTEM and SOFTWARE hives carry (the GUIDs of their template hives)."""

HEADER_NAMES = {"system": "SYSTEM", "software": "SOFTWARE", "sam": "SAM", "security": "SECURITY",
                "default": "DEFAULT", "components": "COMPONENTS", "ntuser.dat": "NTUSER.DAT",
                "bcd": "BCD", "bcd-template": "BCD"}
"""File names a hive records for itself in its header, and the hive each one is (both BCD names are a BCD store)."""

# One row per role: the top-level keys the hive must have, those it must not, and its header name.
HIVE_SHAPES: dict[HiveFile, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    HiveFile.SYSTEM: (("Select",), ("Microsoft", "Objects"), "SYSTEM"),
    HiveFile.SOFTWARE: (("Microsoft",), ("Select", "Objects"), "SOFTWARE"),
    HiveFile.BCD_TEMPLATE: (("Objects",), ("Select", "Microsoft"), "BCD"),
    HiveFile.MEDIA_BCD_BIOS: (("Objects",), ("Select", "Microsoft"), "BCD"),
    HiveFile.MEDIA_BCD_UEFI: (("Objects",), ("Select", "Microsoft"), "BCD"),
}

FIX_HIVE = "use an intact Windows 7 image (its hives are the ones their paths name)"


def store_name(store: HiveFile) -> str:
    r"""A hive as a Windows path (``boot\BCD``, ``efi\microsoft\boot\bcd``): the two DVD stores told apart."""
    return store.value.replace("/", "\\")


def check_two_files(boot_wim: Path, install_wim: Path, boot_flag: str, install_flag: str) -> None:
    """Refuse one file given as both WIMs: the same path, or two names (links) of one file."""
    same = os.path.abspath(boot_wim) == os.path.abspath(install_wim)
    if not same:
        try:
            same = os.path.samefile(boot_wim, install_wim)
        except OSError:
            return  # a missing one is reported where the files are copied
    if same:
        raise UsageError(f"{boot_flag} and {install_flag} are the same file ({install_wim.name})",
                         f"give {boot_flag} the DVD's sources\\boot.wim and {install_flag} its sources\\install.wim")


def check_wim_roles(boot_images: Sequence[wim.WimImage], install_images: Sequence[wim.WimImage]) -> None:
    """Refuse a boot.wim that is not Windows PE or an install.wim that is (the two swapped, or two of one kind)."""
    swapped = "boot.wim and install.wim swapped, or two of the same kind"
    fix = "give the DVD's sources\\boot.wim as the boot WIM and its sources\\install.wim as the install WIM"
    pe_installs = [i for i in install_images if (i.edition_id or "").lower() == WINPE_EDITION.lower()]
    if pe_installs:
        raise SourceError(f"install.wim: {pe_installs[0].describe()} is Windows PE ({swapped}?)", fix)
    editions = [i for i in boot_images if i.edition_id and i.edition_id.lower() != WINPE_EDITION.lower()]
    if editions:
        raise SourceError(f"boot.wim: {editions[0].describe()} is the installed edition {editions[0].edition_id}, "
                          f"not Windows PE ({swapped}?)", fix)
    if boot_images and not any(i.boot for i in boot_images):
        raise SourceError("boot.wim marks no image bootable (a Windows 7 boot.wim boots image 2, Setup); "
                          f"it is not a DVD's boot.wim ({swapped}?)", fix)


def _root_keys(path: Path, label: str) -> set[str]:
    root = hive.read_key(path, "")
    if root is None:
        raise SourceError(f"{label}: the hive has no root key", FIX_HIVE)
    return {k.lower() for k in root.subkeys}


def check_hive(path: Path, role: HiveFile, label: str) -> None:
    """Refuse a hive whose header or top-level keys say it is not the hive ``role`` names.

    ``label`` names it in messages (the image and hive, never a working copy's path).
    """
    head = hive.read_header(path, label)
    need, never, own_name = HIVE_SHAPES[role]
    claimed = HEADER_NAMES.get(head.file_name.lower())
    if claimed is not None and claimed != own_name:
        raise SourceError(f"{label}: the hive's header calls it {head.file_name}, not {own_name}", FIX_HIVE)
    by_root = ROOT_NAMES.get(head.root_name.lower())
    if by_root is not None and by_root is not role:
        raise SourceError(f"{label}: its root key {head.root_name} is that of the "
                          f"{by_root.value.rsplit('/', 1)[-1]} hive", FIX_HIVE)
    keys = _root_keys(path, label)
    missing = [k for k in need if k.lower() not in keys]
    foreign = [k for k in never if k.lower() in keys]
    if missing or foreign:
        said = [*(f"no {k}" for k in missing), *(f"a {k} key" for k in foreign)]
        raise SourceError(f"{label}: the hive has {' and '.join(said)}, so it is not a {own_name} hive", FIX_HIVE)


def check_software_version(path: Path, image: wim.WimImage, label: str) -> None:
    """Refuse a SOFTWARE hive that is not Windows 7's, or not the build the WIM XML says."""
    values = {}
    for name in ("CurrentVersion", "CurrentBuild"):
        value = hive.read_value(path, CURRENT_VERSION, name)
        values[name] = value.data.strip() if value is not None and isinstance(value.data, str) else None
    version, build = values["CurrentVersion"], values["CurrentBuild"]
    if version != WINDOWS7_VERSION or build not in WINDOWS7_BUILDS:
        raise SourceError(f"{label}: {CURRENT_VERSION} says Windows {version or '(no CurrentVersion)'} build "
                          f"{build or '(no CurrentBuild)'}, not Windows 7 (6.1, build 7600 or 7601), although the "
                          f"WIM's XML says {image.version}", "use an intact Windows 7 image")
    if image.build is not None and str(image.build) != build:
        raise SourceError(f"{label}: the hive is build {build}, but the WIM's XML says {image.version}",
                          "use an intact Windows 7 image")


def check_image_hives(found: Mapping[HiveFile, Path | None], image: wim.WimImage, where: str) -> None:
    """:func:`check_hive` each extracted hive and :func:`check_software_version` SOFTWARE (``where``: the image)."""
    for role, path in found.items():
        if path is None or not path.is_file():
            continue  # the caller reports a missing hive it needs
        label = f"{where}, {role.value}"
        check_hive(path, role, label)
        if role is HiveFile.SOFTWARE:
            check_software_version(path, image, label)


def media_warnings(iso_name: str, boot_entries: int, stores: Sequence[HiveFile], present: Sequence[HiveFile],
                   testsigning: bool) -> list[str]:
    """What will not work with a DVD that has no El Torito record, or lacks one of its BCD stores."""
    out = []
    if boot_entries == 0:
        out.append(f"{iso_name} has no El Torito boot record: the rebuilt ISO will not boot either, so Setup can only "
                   "be started from a running Windows (setup.exe)")
    firmware = {HiveFile.MEDIA_BCD_BIOS: "BIOS", HiveFile.MEDIA_BCD_UEFI: "UEFI"}
    for store in stores:
        if store in present:
            continue
        what = f"{iso_name} has no {store_name(store)}: the DVD will not boot on {firmware.get(store, 'its')} firmware"
        if testsigning:
            what += ", and test mode cannot be set there, so Setup booted that way would not load test-signed drivers"
        out.append(what)
    return out
