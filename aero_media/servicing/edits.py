r"""THE table of what servicing writes into each Windows 7 image, and its expansion into concrete edits.

Like the selection rules, this is data: each :class:`RegistryRule` says which
images, which hive, which key and which values, and each :class:`FileRule`
which file lands where. :func:`registry_edits` and :func:`file_additions` expand
them for one contract, arch, certificate set and options; nothing else in the
pipeline decides what goes into an image.

Where the rules come from (docs/windows7.md, sections CriticalDeviceDatabase to BCD test mode):

* boot-critical storage, after virt-v2v's ``add_guestor_to_registry`` on real
  Windows 7 guests: the service key (Type 1 kernel driver, Start 0 boot,
  ErrorControl 1 normal, Group ``SCSI miniport``, ImagePath REG_EXPAND_SZ) and a
  ``CriticalDeviceDatabase`` key for every ID form :func:`aero_media.win7.pnp.cdd_keys`
  gives (the one owner of those names), in every image that must see the disk:
  boot.wim's WinPE and Setup, each install.wim edition and the recovery image
  (``Windows\System32\Recovery\winre.wim``) inside it. The keys cover the contract's
  IDs and its transitional device's (virt-v2v's ``add_guestor_to_registry``, in
  libguestfs-common ``mlcustomize/inject_virtio_win.ml`` and formerly virt-v2v's
  ``v2v/windows_virtio.ml``, writes one for legacy ``DEV_1001&REV_00`` beside modern
  ``DEV_1042&REV_01``);
* ``DevicePath`` gains our driver folder once, and ``SetupComplete.cmd`` runs
  ``pnputil -i -a`` on each INF, because the Windows 7 driver store cannot be
  staged from Linux and DevicePath alone "isn't 100% reliable" (virt-v2v);
* certificates go to the machine ``ROOT`` and ``TrustedPublisher`` stores of
  every Windows the drivers load in (:mod:`.certblob`): boot.wim's Windows PE and
  Setup, which load the storage driver before anything is installed (Aero's
  ``tools/win7-slipstream/src/verify.rs`` requires the certificate in boot.wim
  index 2, and ``tools/windows/patch-win7-media.ps1`` services boot.wim too), the
  installed system, and its recovery image, as ``patch-win7-media.ps1
  -PatchNestedWinRE`` trusts them in each ``winre.wim`` index;
* test mode: element ``16000049`` on the BCD objects :mod:`.bcd` finds, in the
  installed system's ``BCD-Template`` and the DVD's own stores; opt-in
  ``nointegritychecks`` (element ``16000048``) on the same objects, as Aero's script
  does with ``-EnableNoIntegrityChecks`` (never in the recovery image: Aero passes
  it only for the DVD's stores and ``BCD-Template``).

Keys are templates (``str.format``) over: ``ccs`` (the current control set,
read from the hive), ``service``, ``sys``, ``class_guid``, ``cdd_key``,
``store``, ``thumbprint``, ``bcd_object``, ``driver_folder``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import InternalError, SourceError, SpecError
from ..spec.contract import Contract, Device
from ..spec.types import Arch
from ..win7 import pnp
from ..win7.certs import Cert
from . import bcd, certblob
from .certblob import Store
from .hive import AppendToList, Edit, RegType, RegValue, SetValue


class ImageKind(StrEnum):
    """Which Windows a set of edits goes into."""

    WINPE = "winpe"
    """boot.wim index 1: Windows PE (recovery)."""
    SETUP = "setup"
    """boot.wim's boot image (index 2): the Windows PE that runs Setup."""
    INSTALL = "install"
    """Each install.wim image: the system Setup installs."""
    RECOVERY = "recovery"
    r"""Each image of ``Windows\System32\Recovery\winre.wim`` inside an install image: the Windows PE that
    boots from the installed disk (Windows Recovery Environment)."""
    MEDIA = "media"
    """The ISO itself (its BCD stores), not an image."""


class HiveFile(StrEnum):
    """A hive, by its path inside the image (or, for MEDIA, on the ISO)."""

    SYSTEM = "Windows/System32/config/SYSTEM"
    SOFTWARE = "Windows/System32/config/SOFTWARE"
    BCD_TEMPLATE = "Windows/System32/config/BCD-Template"
    MEDIA_BCD_BIOS = "boot/BCD"
    MEDIA_BCD_UEFI = "efi/microsoft/boot/bcd"

    @property
    def is_bcd(self) -> bool:
        """A BCD store (its edits need :func:`aero_media.servicing.bcd.targets`)."""
        return self in (HiveFile.BCD_TEMPLATE, HiveFile.MEDIA_BCD_BIOS, HiveFile.MEDIA_BCD_UEFI)


class Per(StrEnum):
    """What a rule is repeated for."""

    ONCE = "once"
    CDD_KEY = "cdd-key"
    """Each ``pnp.cdd_keys`` name of the boot-critical device."""
    CERTIFICATE = "certificate"
    """Each certificate in each store of the options."""
    BCD_OBJECT = "bcd-object"
    """Each object :func:`aero_media.servicing.bcd.targets` finds."""


class When(StrEnum):
    """When a rule applies."""

    BOOT_CRITICAL = "boot-critical"
    """The contract has a boot-critical (storage) device."""
    ALWAYS = "always"
    TESTSIGNING = "testsigning"
    """The options ask for test mode."""
    NOINTEGRITYCHECKS = "nointegritychecks"
    """The options ask for code-integrity checks off (opt-in, never the default)."""
    CERTIFICATES = "certificates"
    """The options carry certificates to trust (else an image's SOFTWARE hive need not be opened for them)."""


class Computed(StrEnum):
    """Value data that is computed, not templated."""

    CERT_BLOB = "the serialized certificate (certblob.serialized_cert)"
    BCD_TRUE = "a one-byte boolean 01 (bcd.boolean)"


@dataclass(frozen=True)
class ValueRule:
    """One value of a rule: a templated string, a number, or computed data."""

    name: str
    type: RegType
    data: str | int | Computed
    append_default: str | None = None
    """Append ``data`` as one ``;`` item (kept once) to what is there; this is the base when absent."""


@dataclass(frozen=True)
class RegistryRule:
    """A key to write, in some images' copy of one hive."""

    name: str
    images: frozenset[ImageKind]
    hive: HiveFile
    key: str
    values: tuple[ValueRule, ...]
    per: Per = Per.ONCE
    when: When = When.ALWAYS


_ALL_WINDOWS = frozenset({ImageKind.WINPE, ImageKind.SETUP, ImageKind.INSTALL, ImageKind.RECOVERY})
_INSTALL = frozenset({ImageKind.INSTALL})
# Every Windows that loads the drivers trusts their signer: Setup's Windows PE loads the storage driver first.
_TRUSTING = _ALL_WINDOWS
# BCD stores: the installed system's template and the DVD's two.
_BCD_STORES = ((HiveFile.BCD_TEMPLATE, _INSTALL),
               (HiveFile.MEDIA_BCD_BIOS, frozenset({ImageKind.MEDIA})),
               (HiveFile.MEDIA_BCD_UEFI, frozenset({ImageKind.MEDIA})))

REGISTRY_RULES: tuple[RegistryRule, ...] = (
    RegistryRule("storage-service", _ALL_WINDOWS, HiveFile.SYSTEM, "{ccs}\\Services\\{service}", (
        ValueRule("Type", RegType.DWORD, 1),  # SERVICE_KERNEL_DRIVER
        ValueRule("Start", RegType.DWORD, 0),  # SERVICE_BOOT_START: loaded by the boot loader
        ValueRule("ErrorControl", RegType.DWORD, 1),  # SERVICE_ERROR_NORMAL
        ValueRule("Group", RegType.SZ, "SCSI miniport"),  # loads in the storage group's order
        ValueRule("ImagePath", RegType.EXPAND_SZ, "system32\\drivers\\{sys}"),
    ), when=When.BOOT_CRITICAL),
    RegistryRule("storage-critical-device", _ALL_WINDOWS, HiveFile.SYSTEM,
                 "{ccs}\\Control\\CriticalDeviceDatabase\\{cdd_key}", (
                     ValueRule("Service", RegType.SZ, "{service}"),
                     ValueRule("ClassGUID", RegType.SZ, "{class_guid}"),
                 ), per=Per.CDD_KEY, when=When.BOOT_CRITICAL),
    RegistryRule("device-path", _INSTALL, HiveFile.SOFTWARE, "Microsoft\\Windows\\CurrentVersion", (
        ValueRule("DevicePath", RegType.EXPAND_SZ, "%SystemRoot%\\Drivers\\{driver_folder}",
                  append_default="%SystemRoot%\\inf"),
    )),
    RegistryRule("certificates", _TRUSTING, HiveFile.SOFTWARE,
                 certblob.STORES_KEY + "\\{store}\\Certificates\\{thumbprint}", (
                     ValueRule(certblob.BLOB_VALUE, RegType.BINARY, Computed.CERT_BLOB),
                 ), per=Per.CERTIFICATE, when=When.CERTIFICATES),
    *(RegistryRule(f"{option}-{hive.name.lower().replace('_', '-')}", images, hive,
                   bcd.ELEMENT_KEY.format(bcd_object="{bcd_object}", element=element), (
                       ValueRule(bcd.ELEMENT_VALUE, RegType.BINARY, Computed.BCD_TRUE),
                   ), per=Per.BCD_OBJECT, when=when)
      for option, element, when in (("testsigning", bcd.TESTSIGNING, When.TESTSIGNING),
                                    ("nointegritychecks", bcd.NOINTEGRITYCHECKS, When.NOINTEGRITYCHECKS))
      for hive, images in _BCD_STORES),
)


class FileSource(StrEnum):
    """Where an added file's bytes come from."""

    BOOT_SYS = "the boot-critical driver's .sys from its staged package"
    PACKAGE = "a whole staged driver package folder"
    SETUP_COMPLETE = "SetupComplete.cmd rendered by setup_complete_cmd (merged with the image's own)"


@dataclass(frozen=True)
class FileRule:
    """A file or folder to add to some images."""

    name: str
    images: frozenset[ImageKind]
    dest: str
    source: FileSource
    when: When = When.ALWAYS


FILE_RULES: tuple[FileRule, ...] = (
    FileRule("storage-driver", _ALL_WINDOWS, "Windows/System32/drivers/{sys}", FileSource.BOOT_SYS,
             When.BOOT_CRITICAL),
    FileRule("driver-packages", _INSTALL, "Windows/Drivers/{driver_folder}/{package}", FileSource.PACKAGE),
    FileRule("setup-complete", _INSTALL, "Windows/Setup/Scripts/SetupComplete.cmd", FileSource.SETUP_COMPLETE),
)


# -- expansion -------------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    """What the user chose for the images."""

    certificates: tuple[Cert, ...] = ()
    stores: tuple[Store, ...] = (Store.ROOT, Store.TRUSTED_PUBLISHER)
    publishers: tuple[Cert, ...] = ()
    """Trusted as publishers only (TrustedPublisher): upstream's signer, so installs do not prompt."""
    testsigning: bool = False
    nointegritychecks: bool = False
    """Set ``nointegritychecks`` where test mode goes (``install_media.nointegritychecks``; off by default)."""
    driver_folder: str = "Aero"
    r"""The folder under ``%SystemRoot%\Drivers`` that holds the packages (virt-v2v uses ``VirtIO``)."""


@dataclass(frozen=True)
class DriverPackage:
    """A staged driver package for one arch, as the servicing step needs it."""

    name: str
    """Its folder name under ``Windows\\Drivers\\<driver_folder>\\``."""
    arch: Arch
    device: str
    """The contract device it drives."""
    folder: Path
    inf: str
    """The INF's name inside ``folder``."""


def _applies(when: When, contract: Contract, options: Options) -> bool:
    if when is When.BOOT_CRITICAL:
        return contract.boot_critical is not None
    if when is When.TESTSIGNING:
        return options.testsigning
    if when is When.NOINTEGRITYCHECKS:
        return options.nointegritychecks
    if when is When.CERTIFICATES:
        return bool(options.certificates or options.publishers)
    return True


def _data(rule: ValueRule, fields: Mapping[str, Any]) -> str | int | bytes:
    if rule.data is Computed.CERT_BLOB:
        return certblob.serialized_cert(fields["der"])
    if rule.data is Computed.BCD_TRUE:
        return bcd.boolean(True).raw()
    if isinstance(rule.data, str):
        return rule.data.format(**fields)
    return rule.data


def _edit(key: str, rule: ValueRule, fields: Mapping[str, Any]) -> Edit:
    value = RegValue(rule.name, rule.type, _data(rule, fields))
    if rule.append_default is not None:
        return AppendToList(key, value, default=rule.append_default)
    return SetValue(key, value)


def _repeats(per: Per, device: Device | None, options: Options,
             bcd_objects: Sequence[str]) -> list[dict[str, Any]]:
    if per is Per.CDD_KEY:
        # Transitional IDs too: the disk may be a legacy virtio-blk (virt-v2v keys DEV_1001 as well).
        return [{"cdd_key": k} for k in pnp.cdd_keys(device, transitional=True)] if device else []
    if per is Per.CERTIFICATE:
        pairs = [(c, s) for c in options.certificates for s in options.stores]
        pairs += [(c, Store.TRUSTED_PUBLISHER) for c in options.publishers]
        return [{"store": s.value, "thumbprint": c.thumbprint, "der": c.der} for c, s in pairs]
    if per is Per.BCD_OBJECT:
        return [{"bcd_object": guid} for guid in bcd_objects]
    return [{}]


def hives_for(image: ImageKind, contract: Contract, options: Options) -> tuple[HiveFile, ...]:
    """The hives that have edits for ``image`` (extract these), in table order."""
    out: list[HiveFile] = []
    for rule in REGISTRY_RULES:
        if image in rule.images and _applies(rule.when, contract, options) and rule.hive not in out:
            out.append(rule.hive)
    return tuple(out)


def registry_edits(image: ImageKind, hive: HiveFile, contract: Contract, options: Options, *,
                   control_set: str | None = None, bcd_objects: Sequence[str] = ()) -> tuple[Edit, ...]:
    """The concrete edits for one hive of one image.

    ``control_set`` (``ControlSet00N``, from :func:`aero_media.servicing.hive.current_control_set`)
    is needed for SYSTEM; ``bcd_objects`` (GUIDs from :func:`aero_media.servicing.bcd.targets`)
    for a BCD store.
    """
    device = contract.boot_critical
    base: dict[str, Any] = {"driver_folder": options.driver_folder}
    if device is not None:
        base |= {"service": device.service, "sys": device.sys, "class_guid": device.class_guid}
    out: list[Edit] = []
    for rule in REGISTRY_RULES:
        if image not in rule.images or rule.hive is not hive or not _applies(rule.when, contract, options):
            continue
        if "{ccs}" in rule.key and not control_set:
            raise InternalError(f"rule {rule.name} needs the current control set of {hive.value}")
        if rule.per is Per.BCD_OBJECT and not bcd_objects:
            raise InternalError(f"rule {rule.name} needs the BCD objects of {hive.value}")
        for extra in _repeats(rule.per, device, options, bcd_objects):
            fields = {**base, "ccs": control_set, **extra}
            key = rule.key.format(**fields)
            out.extend(_edit(key, v, fields) for v in rule.values)
    return tuple(out)


# -- files -------------------------------------------------------------------------

@dataclass(frozen=True)
class FileAdd:
    """Copy a local file or folder to ``dest`` in the image (replacing what is there)."""

    dest: str
    source: Path


@dataclass(frozen=True)
class ScriptAdd:
    """Write ``SetupComplete.cmd`` at ``dest``: the image's own script (if any) with our block merged in."""

    dest: str
    infs: tuple[str, ...]
    """Windows paths of the INFs to install (``%SystemRoot%\\Drivers\\Aero\\viostor\\viostor.inf``)."""

    def render(self, existing: bytes | None) -> bytes:
        """The script to write, given the image's current one (None: it has none)."""
        return setup_complete_cmd(existing, self.infs)


Addition = FileAdd | ScriptAdd


def _safe_component(name: str, what: str) -> str:
    if not name or name in (".", "..") or any(c in name for c in '\\/:*?"<>|') or not name.isprintable():
        raise SpecError(f"{what} {name!r} cannot be a Windows folder name", "use letters, digits, '-' and '_'")
    return name


def file_additions(image: ImageKind, contract: Contract, arch: Arch, options: Options,
                   packages: Sequence[DriverPackage]) -> tuple[Addition, ...]:
    """The files to add to ``image`` (a Windows of ``arch``) from the staged ``packages``, which must be ``arch``'s."""
    wrong = [f"{p.name} ({p.arch.value})" for p in packages if p.arch is not arch]
    if wrong:
        raise InternalError(f"servicing a Windows 7 {arch.value} image with packages of another arch: "
                            f"{', '.join(wrong)}")
    folder = _safe_component(options.driver_folder, "driver folder")
    device = contract.boot_critical
    out: list[Addition] = []
    for rule in FILE_RULES:
        if image not in rule.images or not _applies(rule.when, contract, options):
            continue
        if rule.source is FileSource.BOOT_SYS and device is not None:
            pkg = next((p for p in packages if p.device == device.name), None)
            if pkg is None:
                raise SourceError(f"no staged package drives the boot-critical {device.name}",
                                  f"stage the {device.inf} package for this arch")
            sys_path = _find_file(pkg.folder, device.sys)
            out.append(FileAdd(rule.dest.format(sys=sys_path.name), sys_path))
        elif rule.source is FileSource.PACKAGE:
            for pkg in packages:
                out.append(FileAdd(rule.dest.format(driver_folder=folder,
                                                    package=_safe_component(pkg.name, "package")), pkg.folder))
        elif rule.source is FileSource.SETUP_COMPLETE and packages:
            infs = tuple(f"%SystemRoot%\\Drivers\\{folder}\\{p.name}\\{PurePosixPath(p.inf).name}" for p in packages)
            out.append(ScriptAdd(rule.dest, infs))
    return tuple(out)


def _find_file(folder: Path, name: str) -> Path:
    """``name`` in ``folder``, ignoring case (INFs and packages mix cases freely)."""
    exact = folder / name
    if exact.is_file():
        return exact
    for entry in folder.iterdir() if folder.is_dir() else ():
        if entry.name.lower() == name.lower() and entry.is_file():
            return entry
    raise SourceError(f"{folder.name}: no {name} in the staged package", "re-stage the drivers")


# -- SetupComplete.cmd ---------------------------------------------------------------

BEGIN = "rem >>> aero-media drivers (added by offline servicing; do not edit this block)"
END = "rem <<< aero-media drivers"
LOG = "%SystemRoot%\\Setup\\Scripts\\aero-drivers.log"


def setup_complete_cmd(existing: bytes | None, infs: Sequence[str]) -> bytes:
    r"""``SetupComplete.cmd`` with our block: CRLF, ASCII.

    An image's own script is kept, byte for byte: our block goes **first**, because
    such scripts often end with ``exit`` or a reboot, and lines after that would
    never run. A block from an earlier run (between :data:`BEGIN` and
    :data:`END`) is replaced, so servicing an image twice leaves one block.
    Each line starts with ``@`` so the block does not turn echo on or off for the
    rest of the script.
    """
    for inf in infs:
        if not inf.isascii() or not inf.isprintable() or '"' in inf:
            raise SpecError(f"INF path {inf!r} cannot go into SetupComplete.cmd (plain ASCII only)",
                            "rename the package or the INF")
    lines = [f"@{BEGIN}", *(f'@pnputil -i -a "{inf}" >>"{LOG}" 2>&1' for inf in infs), f"@{END}"]
    block = ("\r\n".join(lines) + "\r\n").encode("ascii")
    if existing is None:
        return block
    if existing.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SourceError("the image's SetupComplete.cmd is UTF-16, which cmd.exe does not run",
                          "fix or remove Windows\\Setup\\Scripts\\SetupComplete.cmd in the image")
    bom = b"\xef\xbb\xbf" if existing.startswith(b"\xef\xbb\xbf") else b""
    return bom + block + _without_block(existing[len(bom):])


def _without_block(script: bytes) -> bytes:
    lines = script.splitlines(keepends=True)
    out, inside = [], False
    for line in lines:
        text = line.strip().lstrip(b"@").strip()
        if text == BEGIN.encode("ascii"):
            inside = True
        elif inside and text == END.encode("ascii"):
            inside = False
        elif not inside:
            out.append(line)
    return b"".join(out)
