"""Closed sets of the spec, each a StrEnum that carries what follows from its value.

These types depend on nothing else in the pipeline, so every stage (and the
stand-alone Windows 7 checks in :mod:`aero_media.win7`) can use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Arch(StrEnum):
    """A Windows 7 architecture, with the knowledge that hangs off it."""

    X86 = "x86"
    AMD64 = "amd64"

    @property
    def folder_aliases(self) -> tuple[str, ...]:
        """Folder names that hold this arch in upstream trees, preferred first."""
        return ("x86", "i386") if self is Arch.X86 else ("amd64", "x64")

    @property
    def os_dirs(self) -> tuple[str, ...]:
        """The virtio-win OS folders that hold Windows 7 drivers for this arch, in the order tried.

        Upstream's ``w7`` first, then the names older and re-mastered trees use. Server
        2008 R2 (``2k8R2``) is the same kernel as Windows 7, and upstream hard-links its
        amd64 build to w7's; it is 64-bit only, so it has no x86 folder. The one list:
        the spec schema's ``os_dir_list`` enum is tested equal to these.
        """
        win7 = ("w7", "win7", "w7.1", "w7_1")
        return win7 if self is Arch.X86 else (*win7, "2k8R2")

    @property
    def x64_name(self) -> str:
        """The name Windows' own media use: x86 and x64."""
        return "x86" if self is Arch.X86 else "x64"

    @property
    def pe_machine(self) -> int:
        """IMAGE_FILE_HEADER.Machine of binaries built for this arch."""
        return 0x14C if self is Arch.X86 else 0x8664

    @property
    def inf_arch(self) -> str:
        """The INF decoration architecture (NTx86 / NTamd64)."""
        return "x86" if self is Arch.X86 else "amd64"

    @property
    def catalog_os(self) -> str:
        """The catalog OS attribute token for Windows 7 on this arch."""
        return "7X86" if self is Arch.X86 else "7X64"

    @property
    def enforces_kernel_signing(self) -> bool:
        """64-bit Windows 7 refuses unsigned kernel drivers; 32-bit does not."""
        return self is Arch.AMD64


ALL_ARCHES = (Arch.X86, Arch.AMD64)


class SourceKind(StrEnum):
    """Where a spec's drivers come from."""

    PACK_DIR = "pack-dir"
    VIRTIO_WIN_DIR = "virtio-win-dir"
    VIRTIO_WIN_ISO = "virtio-win-iso"
    AERO_CHECKOUT = "aero-checkout"
    """An Aero checkout: ``drivers/<driverRel>/ci-package.json`` and its build outputs or signed packages."""

    @property
    def is_iso(self) -> bool:
        """The drivers are extracted from an ISO image before staging."""
        return self is SourceKind.VIRTIO_WIN_ISO

    @property
    def layout(self) -> str:
        """The selection-rules layout its tree follows (see :data:`aero_media.sources.selection.LAYOUTS`).

        An Aero checkout has no folder layout to match: ``ci-package.json`` decides (:mod:`aero_media.sources.aero`).
        """
        return "pack-dir" if self is SourceKind.PACK_DIR else "virtio-win"

    @property
    def is_upstream(self) -> bool:
        """An upstream tree (virtio-win, or an Aero checkout): notices are generated from its licence files."""
        return self is not SourceKind.PACK_DIR


class AeroInput(StrEnum):
    """Which of an Aero checkout's outputs a spec reads (``source.input``)."""

    BUILD_OUTPUT = "build-output"
    """msbuild's ``out/drivers/<driverRel>/{x86,x64}/``, packaged here as Aero's ci/make-catalogs.ps1 does."""
    PACKAGES = "packages"
    """``out/packages/<driverRel>/{x86,x64}/`` after Aero's ci/sign-drivers.ps1, with ``out/certs/aero-test.cer``."""

    @property
    def out_dir(self) -> str:
        """The folder under the checkout that holds one folder per driverRel."""
        return "out/drivers" if self is AeroInput.BUILD_OUTPUT else "out/packages"

    @property
    def signed(self) -> bool:
        """Whether the packages come catalogued and signed (else catalogs and signatures are still to be made)."""
        return self is AeroInput.PACKAGES


DEPRECATED_TEST_NAME = "testsigning"


class SigningPolicy(StrEnum):
    """How the media's drivers are signed, and what setup must do about it.

    The values are the names Aero's manifest type accepts. ``testsigning``, this
    tool's first name for ``test``, is still read (with a deprecation note in specs).
    """

    NONE = "none"
    TEST = "test"
    PRODUCTION = "production"

    @classmethod
    def _missing_(cls, value: object) -> SigningPolicy | None:
        return cls.TEST if value == DEPRECATED_TEST_NAME else None

    @property
    def certs_required(self) -> bool:
        """The media must ship the signing certificate (added to Root and TrustedPublisher)."""
        return self is SigningPolicy.TEST

    @property
    def trusts_publisher(self) -> bool:
        """Setup may pre-trust the catalogs' publisher (production media rely on Windows' own trust)."""
        return self is not SigningPolicy.PRODUCTION

    @property
    def accepts_unsigned(self) -> bool:
        """Unsigned catalogs and boot drivers are expected: they get test-signed before use."""
        return self is SigningPolicy.TEST


class OptionalPolicy(StrEnum):
    """What a missing optional driver means."""

    BEST_EFFORT = "best-effort"
    STRICT = "strict"


class WarningPolicy(StrEnum):
    """Whether validation warnings fail the stage."""

    WARN = "warn"
    ERROR = "error"


class PlaceholderPolicy(StrEnum):
    """Whether the sample pack's placeholder catalogs and stand-in binaries fail the stage."""

    ERROR = "error"
    ALLOW = "allow"


class AnswerFile(StrEnum):
    """Which ``autounattend.xml`` servicing writes (``install_media.answer_file``; none when absent)."""

    DRIVERS_ONLY = "drivers-only"
    """Setup loads the drivers in Windows PE and stages them into the new system's driver store; nothing else."""
    FULL = "full"
    """The drivers, and an unattended install from ``install_media.unattended``."""


class Partitioning(StrEnum):
    """What a full answer file does with disk 0 (``install_media.unattended.partitioning``)."""

    ASK = "ask"
    WIPE_DISK_0 = "wipe-disk-0"


class WinPEDrivers(StrEnum):
    """``media.winpe_drivers``: which media carry ``$WinPEDriver$/<arch>/<driver>/``.

    Windows 7 Setup searches that folder on every drive, recursively (Microsoft KB2686316), so a medium
    holding both arches is safe only when no INF of one arch offers a models section the other arch's
    Setup takes (:mod:`aero_media.win7.setupscan` proves it per medium, or the build refuses it).
    """

    EVERY = "true"
    """Every medium carries it (the drivers ISO, the FAT disk, the serviced install ISO)."""
    NONE = "false"
    """No medium carries it: Setup's "Load Driver" only."""
    PER_ARCH = "per-arch"
    """Only media holding one arch carry it: the serviced install ISO and one drivers ISO per arch
    (``<stem>-<arch>.iso``); the drivers ISO and FAT disk holding both arches carry none."""

    @classmethod
    def of(cls, raw: bool | str) -> WinPEDrivers:
        """The setting as YAML gives it: ``true``, ``false`` or ``per-arch``."""
        return cls(str(raw).lower()) if isinstance(raw, bool) else cls(raw)

    def carried(self, arches: int) -> bool:
        """Whether a medium holding ``arches`` arches carries ``$WinPEDriver$``."""
        return self is WinPEDrivers.EVERY or (self is WinPEDrivers.PER_ARCH and arches == 1)

    @property
    def arch_media(self) -> bool:
        """One drivers ISO per arch is built beside the drivers ISO."""
        return self is WinPEDrivers.PER_ARCH

    @property
    def recorded(self) -> bool | str:
        """The setting as a spec slice records it: a bool for ``true``/``false`` (as before ``per-arch``)."""
        return self.value if self is WinPEDrivers.PER_ARCH else self is WinPEDrivers.EVERY


class Stage(StrEnum):
    """The stages of a build, once: they name the doit task groups, the stage functions and the spec slices."""

    FETCH = "fetch"
    PROVE = "prove"
    EXTRACT = "extract"
    EXPAND = "expand"
    STAGE = "stage"
    SIGNING_CERT = "signing_cert"
    NOTICES = "notices"
    DRIVERS_ISO = "drivers_iso"
    VERIFY = "verify"
    ARCH_DRIVERS_ISO = "arch_drivers_iso"
    """One drivers ISO per arch, with that arch's ``$WinPEDriver$`` (``media.winpe_drivers: per-arch``)."""
    VERIFY_ARCH_DRIVERS_ISO = "verify_arch_drivers_iso"
    FAT_DISK = "fat_disk"
    VERIFY_FAT_DISK = "verify_fat_disk"
    GUEST_TOOLS = "guest_tools"
    SERVICE = "service"
    VERIFY_GUEST_TOOLS = "verify_guest_tools"
    PUBLISH = "publish"
    """The verified media into ``dist/<spec>/``, together, once the source is proven."""


# Settings that messages tell a user to change, by their spec field.
SETTINGS = ("source.path", "source.license_file", "checks.placeholder_catalogs", "checks.allow_sha256_only",
            "signing.policy", "drivers.required", "optional", "target.arches",
            "outputs.drivers_iso.volume_label", "outputs.fat_disk.volume_label", "outputs.fat_disk.size_mib",
            "install_media.path", "install_media.sha256", "install_media.filename", "signing.certs",
            "media.winpe_drivers", "install_media.winre", "install_media.nointegritychecks",
            "install_media.answer_file", "install_media.unattended.password_file",
            "install_media.unattended.password_env", "install_media.unattended.product_key_file",
            "install_media.unattended.product_key_env")


@dataclass(frozen=True)
class Flag:
    """A command-line flag that stands for a spec setting."""

    name: str
    """How a message names the setting, e.g. ``--drivers-root``."""
    fix: str
    """The clause that changes it, e.g. ``pass --allow-placeholder-catalogs``."""


@dataclass(frozen=True)
class Vocabulary:
    """How messages name a setting: as a spec field, or as a flag of the command that made the spec.

    For a spec file ``fix("checks.placeholder_catalogs", "allow")`` is
    ``set checks.placeholder_catalogs: allow``; under ``aero-media build-iso`` it is
    ``pass --allow-placeholder-catalogs``.
    """

    command: str | None = None
    flags: Mapping[str, Flag] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.flags) - set(SETTINGS)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")

    @property
    def from_command_line(self) -> bool:
        """The spec was made from a command's options, not read from a file."""
        return self.command is not None

    def name(self, setting: str) -> str:
        """How a message names ``setting``."""
        flag = self._flag(setting)
        return flag.name if flag else setting

    def term(self, setting: str, value: str) -> str:
        """How a message names ``setting`` set to ``value``: ``optional: strict`` or ``--strict-optional``."""
        flag = self._flag(setting)
        return flag.name if flag else f"{setting}: {value}"

    def fix(self, setting: str, value: str | None = None) -> str:
        """The clause that sets ``setting`` (to ``value``)."""
        flag = self._flag(setting)
        if flag:
            return flag.fix
        return f"set {setting}: {value}" if value is not None else f"set {setting}"

    def pointers(self) -> dict[str, str]:
        """JSON pointer of each setting a flag stands for (``/outputs/fat_disk/size_mib``) -> the flag."""
        return {"/" + setting.replace(".", "/"): flag.name for setting, flag in self.flags.items()}

    def _flag(self, setting: str) -> Flag | None:
        if setting not in SETTINGS:
            raise ValueError(f"unknown setting {setting!r}")
        return self.flags.get(setting)


SPEC_FIELDS = Vocabulary()
