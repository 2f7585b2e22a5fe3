"""The frozen spec model: what one build is made of, after loading and validation."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from .contract import Contract, Device
from .types import (
    SPEC_FIELDS,
    AeroInput,
    AnswerFile,
    Arch,
    OptionalPolicy,
    Partitioning,
    PlaceholderPolicy,
    SigningPolicy,
    SourceKind,
    Stage,
    Vocabulary,
    WarningPolicy,
    WinPEDrivers,
)
from .yamldoc import MEMO_NAME


@dataclass(frozen=True)
class Context:
    """Where a project keeps its specs, builds, outputs and download cache."""

    root: Path
    cache_override: Path | None = None
    remember_valid_specs: bool = False
    """Keep a memo of valid specs in the tool's cache (the task graph's runs, which load every spec)."""
    scratch: bool = False
    """A throwaway project a command builds in and publishes one file from: stages do not announce
    what they write there (the command names the file where it lands)."""

    @property
    def specs_dir(self) -> Path:
        return self.root / "specs"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def dist_dir(self) -> Path:
        return self.root / "dist"

    @property
    def validation_memo(self) -> Path | None:
        # Keyed by content, so one memo serves every checkout and survives a clean build/.
        return self.cache_dir() / MEMO_NAME if self.remember_valid_specs else None

    def cache_dir(self, spec: Spec | None = None) -> Path:
        """Download cache: CLI option, then AERO_MEDIA_CACHE, then the spec, then ~/.cache."""
        if self.cache_override is not None:
            return self.cache_override
        env = os.environ.get("AERO_MEDIA_CACHE")
        if env:
            return Path(env).expanduser()
        if spec is not None and spec.cache_dir is not None:
            return spec.cache_dir
        base = os.environ.get("XDG_CACHE_HOME")
        return (Path(base) if base else Path.home() / ".cache") / "aero-virtio-media"

    def resolve(self, raw: str) -> Path:
        """Resolve a spec path: ``~`` expanded, relative to the project root."""
        p = Path(raw).expanduser()
        return p if p.is_absolute() else self.root / p


@dataclass(frozen=True)
class DriverReq:
    """One driver the media should carry."""

    name: str
    device: Device
    required: bool


@dataclass(frozen=True)
class Source:
    """Where the drivers come from."""

    kind: SourceKind
    path: Path | None = None
    path_raw: str | None = None
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    os_dirs: dict[Arch, tuple[str, ...]] = field(default_factory=dict)
    expect: dict[str, str] = field(default_factory=dict)
    license_file: Path | None = None
    license_file_raw: str | None = None
    exclude: tuple[str, ...] = ()
    stand_ins: bool = False
    """The pack holds stand-in recipes (the repo's sample pack), expanded into build/ before staging."""
    aero_input: AeroInput = AeroInput.BUILD_OUTPUT
    """Which outputs of an Aero checkout are read (``source.input``; only an ``aero-checkout`` source reads it)."""
    path_unset_env: str | None = None
    """The environment variable ``source.path`` names (``${AERO_ROOT}``) that was not set: ``path`` is None and
    reading the source says how to set it. Checked when the source is read, not when the spec loads, so a
    shipped spec that needs the variable never breaks a run that builds other specs."""

    def excludes(self, staged_path: str) -> bool:
        """Whether ``staged_path`` (``win7/<arch>/<driver>/<file>``) is left out by ``exclude``."""
        low = staged_path.lower()
        return any(fnmatch.fnmatchcase(low, pat.lower()) for pat in self.exclude)

    @property
    def is_iso(self) -> bool:
        return self.kind.is_iso

    @property
    def pinned_iso(self) -> bool:
        """An ISO source with a whole-ISO pin: its media record the pin and are made while the ISO is hashed."""
        return self.is_iso and self.sha256 is not None


@dataclass(frozen=True)
class DriversIsoOut:
    filename: str = "aero-virtio-win7-drivers.iso"
    volume_label: str = "AERO_VIRTIO"

    def arch_filename(self, arch: Arch) -> str:
        """The one-arch drivers ISO's file name (``media.winpe_drivers: per-arch``): ``<stem>-<arch><suffix>``."""
        stem, dot, suffix = self.filename.rpartition(".")
        return f"{stem}-{arch.value}.{suffix}" if dot else f"{self.filename}-{arch.value}"

    def arch_label(self, arch: Arch) -> str:
        """The one-arch drivers ISO's volume label: the label, cut to leave room, and ``_X86`` or ``_X64``
        (still at most 32 d-characters, and ``AERO_VIRTIO_X64`` fits the 16 Windows shows)."""
        tail = f"_{arch.x64_name.upper()}"
        return self.volume_label[:32 - len(tail)] + tail


@dataclass(frozen=True)
class FatDiskOut:
    enabled: bool = True
    filename: str = "aero-virtio-win7-drivers-fat.vhd"
    volume_label: str = "AERO"
    size_mib: int | None = None
    """None: "auto", at least 64 MiB and 1.2 x the payload + 8 MiB."""


@dataclass(frozen=True)
class GuestToolsOut:
    iso_filename: str = "aero-guest-tools.iso"
    zip_filename: str = "aero-guest-tools.zip"
    volume_label: str = "AERO_GUEST_TOOLS"
    version: str = "0.0.0"
    build_id: str = "local"


@dataclass(frozen=True)
class Media:
    """Settings every medium follows (``media:`` in the spec)."""

    winpe_drivers: WinPEDrivers = WinPEDrivers.EVERY
    """Which media carry ``$WinPEDriver$/<arch>/<driver>/`` (Windows 7 Setup searches every drive for it by
    itself): every medium, none, or those holding one arch (:class:`WinPEDrivers`)."""
    answer_file: AnswerFile | None = None
    """A drivers-only ``autounattend.xml`` on the drivers ISO too (None: none; a full one only ever goes on the
    serviced ISO, ``install_media.answer_file``)."""


@dataclass(frozen=True)
class SecretSource:
    """Where a secret is read at build time: a file or an environment variable (never the spec itself)."""

    file: Path | None = None
    file_raw: str | None = None
    env: str | None = None

    def describe(self) -> str:
        """Where the secret comes from, for messages and records (never the secret)."""
        return f"${self.env}" if self.env is not None else str(self.file_raw)


@dataclass(frozen=True)
class Unattended:
    """What a full answer file answers (``install_media.unattended``)."""

    locale: str
    time_zone: str
    account: str
    password: SecretSource
    product_key: SecretSource | None = None
    """None: Setup asks for the key (and the edition)."""
    partitioning: Partitioning = Partitioning.ASK


@dataclass(frozen=True)
class InstallMedia:
    """A Windows 7 install ISO (or its two WIMs) to service (``install_media:`` in the spec)."""

    iso: Path | None
    iso_raw: str | None
    sha256: str | None
    boot_wim: Path | None = None
    boot_wim_raw: str | None = None
    install_wim: Path | None = None
    install_wim_raw: str | None = None
    filename: str = "win7-aero.iso"
    boot_images: tuple[int, ...] | None = None
    """None: every image of boot.wim."""
    install_images: tuple[int, ...] | None = None
    """None: every image of install.wim."""
    publish_wims: bool = True
    """Publish the patched WIMs beside the ISO (``aero-media service-iso`` delivers the ISO alone)."""
    winre: bool = True
    r"""Service ``Windows\System32\Recovery\winre.wim`` inside each install image too."""
    nointegritychecks: bool = False
    """Set ``nointegritychecks`` in the BCD stores test mode goes into (opt-in, never the default)."""
    answer_file: AnswerFile | None = None
    """None: no ``autounattend.xml`` (an answer file Setup cannot parse stops Setup, so it is opt-in)."""
    unattended: Unattended | None = None
    """Set exactly when ``answer_file`` is full."""


class SignMode(StrEnum):
    """``signing.mode``: what the build does with the packages' signatures."""

    TEST = "test"
    """Write each package's catalog and test-sign it (and every ``.sys``) with the spec's key."""
    KEEP = "keep"
    """The packages come signed: keep every signature byte for byte and verify each against ``cert``."""


@dataclass(frozen=True)
class Signer:
    """The one certificate the packages are signed with (``signing: {mode: test|keep, ...}``), and by whom."""

    cert: Path | None
    cert_raw: str | None
    key: Path | None
    key_env: str | None
    generate: bool = False
    """A throwaway certificate and key made into build/<spec>/signing/ (the sample's; never for real media)."""
    mode: SignMode = SignMode.TEST
    dual_sign: bool = False
    """Nest a SHA-256 signature after the SHA-1 one (Aero's ``ci/sign-drivers.ps1 -DualSign``)."""
    pfx: Path | None = None
    """A PFX holding the certificate and key (``signing.pfx``)."""
    pfx_env: str | None = None
    """A variable holding a PFX's path or base64 text; with ``generate``, the throwaway pair is made only when unset."""
    pfx_password_env: str | None = None

    @property
    def from_pfx(self) -> bool:
        """The key may come from a PFX (then its certificate is taken into build/<spec>/signing/)."""
        return self.pfx is not None or self.pfx_env is not None

    @property
    def signs(self) -> bool:
        """The build signs the packages itself (else it only verifies the signatures they carry)."""
        return self.mode is SignMode.TEST


@dataclass(frozen=True)
class Signing:
    """How the drivers are signed and what setup trusts (``signing:`` in the spec), for every stage and medium."""

    policy: SigningPolicy = SigningPolicy.NONE
    trust_publisher: bool = True
    """Under ``none``: put the staged catalogs' signers into TrustedPublisher."""
    certs: tuple[Path, ...] = ()
    """Test certificates the media ship for Root and TrustedPublisher."""
    certs_raw: tuple[str, ...] = ()
    signer: Signer | None = None
    """The packages' one signer: the build test-signs with it (``mode: test``) or verifies it (``mode: keep``)."""


@dataclass(frozen=True)
class Checks:
    warnings: WarningPolicy = WarningPolicy.WARN
    allow_sha256_only: bool = False
    placeholder_catalogs: PlaceholderPolicy = PlaceholderPolicy.ERROR


@dataclass(frozen=True)
class Spec:
    """A loaded, validated build spec."""

    name: str
    file: Path
    display: str
    description: str
    default: bool
    source: Source
    arches: tuple[Arch, ...]
    drivers: tuple[DriverReq, ...]
    optional_policy: OptionalPolicy
    checks: Checks
    drivers_iso: DriversIsoOut
    fat_disk: FatDiskOut
    guest_tools: GuestToolsOut
    signing: Signing
    media: Media
    install_media: InstallMedia | None
    cache_dir: Path | None
    contract: Contract
    vocabulary: Vocabulary = SPEC_FIELDS
    """How messages name its settings: spec fields, or the flags of the command that made it."""

    def driver(self, name: str) -> DriverReq:
        for d in self.drivers:
            if d.name == name:
                return d
        raise KeyError(name)

    @property
    def signing_generated(self) -> bool:
        """The build writes the signing certificate into build/<spec>/signing/: a throwaway pair it makes
        (sample media), or the certificate of a PFX the user gives."""
        s = self.signing.signer
        return s is not None and (s.generate or s.from_pfx)

    @property
    def signing_policy(self) -> SigningPolicy:
        return self.signing.policy

    def fingerprint(self, stage: Stage) -> dict[str, Any]:
        """Return the JSON-safe slice of the spec that ``stage`` reads.

        doit's ``config_changed`` compares it, so a task reruns exactly when its
        slice changes: a new volume label reruns only the ISO and its verify. Each
        slice names its fields one by one, as the spec spells them (never a
        dataclass's ``repr``, which would carry resolved, absolute paths into
        doit's state and every field a stage does not read).
        """
        return _SLICES[Stage(stage)](self)


# --- the slices: what each stage reads, field by field --------------------------------------------


def _source(spec: Spec) -> dict[str, Any]:
    src = spec.source
    return {"kind": src.kind.value, "path": src.path_raw, "url": src.url, "sha256": src.sha256,
            "size": src.size, "stand_ins": src.stand_ins,
            # Only an Aero checkout reads it: other specs' slices (and so their doit state) stay as they were.
            **({"input": src.aero_input.value} if src.kind is SourceKind.AERO_CHECKOUT else {})}


def _selection(spec: Spec) -> dict[str, Any]:
    src = spec.source
    return {
        "source": _source(spec),
        "os_dirs": {a.value: list(v) for a, v in sorted(src.os_dirs.items())},
        "arches": [a.value for a in spec.arches],
        "drivers": [[d.name, d.device.name, d.required] for d in spec.drivers],
        "optional": spec.optional_policy.value,
        "exclude": list(src.exclude),
    }


def _device(d: Device) -> list[Any]:
    return [d.virtio_type, d.vendor_id, d.device_id, d.transitional_device_id, d.subsystem_vendor_id,
            [[s.name, s.id] for s in d.subsystems], d.revision, d.class_code, d.service, list(d.service_aliases),
            d.inf, d.setup_class, d.class_guid, d.boot_critical, d.sys,
            # Only when spelled out, so a contract without them keeps its task state.
            *([list(d.hardware_ids)] if d.hardware_ids else [])]


def _contract(spec: Spec) -> dict[str, Any]:
    c = spec.contract
    return {"name": c.name, "version": c.version, "devices": {k: _device(v) for k, v in sorted(c.devices.items())}}


def _contract_name(spec: Spec) -> list[str]:
    return [spec.contract.name, spec.contract.version]


def _signer(spec: Spec) -> list[Any] | None:
    # The key is left out on purpose: only where it is read from, never its bytes, reaches state.
    s = spec.signing.signer
    if s is None:
        return None
    # Defaults add nothing, so specs that predate mode: keep and dual_sign keep their task state.
    return [s.cert_raw, s.generate, *([s.mode.value] if s.mode is not SignMode.TEST else []),
            *(["dual_sign"] if s.dual_sign else []),
            *([{"pfx": s.pfx is not None, "pfx_env": s.pfx_env}] if s.from_pfx else [])]


def _trust(spec: Spec) -> dict[str, Any]:
    """What decides the certificates a medium ships (:mod:`aero_media.media.certs`)."""
    sig = spec.signing
    return {"policy": sig.policy.value, "certs": list(sig.certs_raw), "trust_publisher": sig.trust_publisher,
            "signer": _signer(spec)}


def _drivers_iso_out(spec: Spec) -> dict[str, Any]:
    out = spec.drivers_iso
    return {"filename": out.filename, "volume_label": out.volume_label}


def _fat_disk_out(spec: Spec) -> dict[str, Any]:
    out = spec.fat_disk
    return {"enabled": out.enabled, "filename": out.filename, "volume_label": out.volume_label,
            "size_mib": out.size_mib}


def _guest_tools_out(spec: Spec) -> dict[str, Any]:
    out = spec.guest_tools
    return {"iso_filename": out.iso_filename, "zip_filename": out.zip_filename, "volume_label": out.volume_label,
            "version": out.version, "build_id": out.build_id}


def _install_media(spec: Spec) -> dict[str, Any] | None:
    m = spec.install_media
    if m is None:
        return None
    return {"path": m.iso_raw, "sha256": m.sha256, "boot_wim": m.boot_wim_raw, "install_wim": m.install_wim_raw,
            "filename": m.filename, "publish_wims": m.publish_wims,
            "boot_images": None if m.boot_images is None else list(m.boot_images),
            "install_images": None if m.install_images is None else list(m.install_images),
            "winre": m.winre, "nointegritychecks": m.nointegritychecks,
            # Only when set: a spec without an answer file keeps the slice (and so its serviced media) it had.
            **({"answer_file": m.answer_file.value, "unattended": _unattended(m.unattended)}
               if m.answer_file is not None else {})}


def _unattended(u: Unattended | None) -> dict[str, Any] | None:
    # Where the secrets come from, never their values (this slice is stored in doit's dep file).
    if u is None:
        return None
    return {"locale": u.locale, "time_zone": u.time_zone, "account": u.account, "partitioning": u.partitioning.value,
            "password": u.password.describe(),
            "product_key": None if u.product_key is None else u.product_key.describe()}


def _media_answer_file(spec: Spec) -> dict[str, Any]:
    # Only when set: the drivers ISO of a spec without one is not rebuilt for a key it does not use.
    return {"answer_file": spec.media.answer_file.value} if spec.media.answer_file is not None else {}


def _fetch_slice(spec: Spec) -> dict[str, Any]:
    return {"source": _source(spec)}


def _guest_tools_slice(spec: Spec) -> dict[str, Any]:
    return {"name": spec.name, "out": _guest_tools_out(spec), "signing": _trust(spec),
            "arches": [a.value for a in spec.arches],
            "drivers": [[d.name, d.device.name, d.required] for d in spec.drivers], "contract": _contract(spec)}


def _fat_disk_slice(spec: Spec) -> dict[str, Any]:
    return {"name": spec.name, "description": spec.description, "out": _fat_disk_out(spec),
            "winpe": spec.media.winpe_drivers.recorded, "signing": _trust(spec), "contract": _contract_name(spec)}


def _drivers_iso_slice(spec: Spec) -> dict[str, Any]:
    return {"name": spec.name, "description": spec.description, "out": _drivers_iso_out(spec),
            "winpe": spec.media.winpe_drivers.recorded, "arches": [a.value for a in spec.arches],
            "contract": _contract_name(spec), **_media_answer_file(spec),
            # Only under policy test, where the ISO ships the certificate and says how to
            # trust it: other specs' ISOs are not rebuilt for a setting they do not use.
            **({"signing": _trust(spec)} if spec.signing.policy.certs_required else {})}


def _verify_slice(spec: Spec) -> dict[str, Any]:
    return {"out": _drivers_iso_out(spec), "winpe": spec.media.winpe_drivers.recorded,
            "arches": [a.value for a in spec.arches],
            "required": [d.name for d in spec.drivers if d.required], **_media_answer_file(spec)}


_SLICES: dict[Stage, Callable[[Spec], dict[str, Any]]] = {
    Stage.FETCH: _fetch_slice,
    # Proving reads what fetching does: the source and its pin.
    Stage.PROVE: _fetch_slice,
    Stage.EXTRACT: lambda s: {**_selection(s), "license_file": s.source.license_file_raw},
    Stage.EXPAND: lambda s: {"source": _source(s)},
    Stage.STAGE: lambda s: {
        **_selection(s),
        "expect": dict(sorted(s.source.expect.items())),
        "checks": [s.checks.warnings.value, s.checks.allow_sha256_only, s.checks.placeholder_catalogs.value],
        "signing_policy": s.signing.policy.value,
        "contract": _contract(s),
        "signing": _signer(s),
    },
    Stage.SIGNING_CERT: lambda s: {"name": s.name, "signing": _signer(s)},
    Stage.NOTICES: lambda s: {"source": _source(s), "license_file": s.source.license_file_raw, "name": s.name},
    Stage.DRIVERS_ISO: _drivers_iso_slice,
    Stage.VERIFY: _verify_slice,
    # The one-arch ISOs are drivers ISOs: the same settings (each task reads its arch alone).
    Stage.ARCH_DRIVERS_ISO: _drivers_iso_slice,
    Stage.VERIFY_ARCH_DRIVERS_ISO: _verify_slice,
    Stage.FAT_DISK: _fat_disk_slice,
    # The verifiers read what their writer wrote, so they read the writer's slice.
    Stage.VERIFY_FAT_DISK: _fat_disk_slice,
    Stage.GUEST_TOOLS: _guest_tools_slice,
    Stage.VERIFY_GUEST_TOOLS: _guest_tools_slice,
    # Which media there are and their names: the files themselves are the task's file_dep.
    Stage.PUBLISH: lambda s: {"name": s.name, "drivers_iso": s.drivers_iso.filename,
                              "arch_media": s.media.winpe_drivers.arch_media, "fat_disk": _fat_disk_out(s),
                              "guest_tools": [s.guest_tools.iso_filename, s.guest_tools.zip_filename]},
    Stage.SERVICE: lambda s: {"name": s.name, "media": _install_media(s), "winpe": s.media.winpe_drivers.recorded,
                              "signing": _trust(s), "arches": [a.value for a in s.arches], "contract": _contract(s)},
}
