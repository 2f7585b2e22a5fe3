"""The frozen spec model: what one build is made of, after loading and validation."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .contract import Contract, Device
from .types import (
    SPEC_FIELDS,
    Arch,
    OptionalPolicy,
    PlaceholderPolicy,
    SigningPolicy,
    SourceKind,
    Vocabulary,
    WarningPolicy,
)
from .yamldoc import MEMO_NAME


@dataclass(frozen=True)
class Context:
    """Where a project keeps its specs, builds, outputs and download cache."""

    root: Path
    cache_override: Path | None = None
    remember_valid_specs: bool = False
    """Keep a memo of valid specs in the tool's cache (the task graph's runs, which load every spec)."""

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

    def excludes(self, staged_path: str) -> bool:
        """Whether ``staged_path`` (``win7/<arch>/<driver>/<file>``) is left out by ``exclude``."""
        low = staged_path.lower()
        return any(fnmatch.fnmatchcase(low, pat.lower()) for pat in self.exclude)

    @property
    def is_iso(self) -> bool:
        return self.kind.is_iso


@dataclass(frozen=True)
class DriversIsoOut:
    filename: str = "aero-virtio-win7-drivers.iso"
    volume_label: str = "AERO_VIRTIO"
    winpe_drivers: bool = True
    """Also carry ``$WinPEDriver$/<arch>/<driver>/``, which Windows 7 Setup finds by itself."""


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
    signing_policy: SigningPolicy = SigningPolicy.NONE
    trust_publisher: bool = True
    certs: tuple[Path, ...] = ()
    certs_raw: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstallMedia:
    """A Windows 7 install ISO (or its two WIMs) to service (``install_media:`` in the spec)."""

    iso: Path | None
    iso_raw: str | None
    sha256: str | None
    boot_wim: Path | None = None
    install_wim: Path | None = None
    filename: str = "win7-aero.iso"
    boot_images: tuple[int, ...] | None = None
    """None: every image of boot.wim."""
    install_images: tuple[int, ...] | None = None
    """None: every image of install.wim."""
    winpe_drivers: bool = True


@dataclass(frozen=True)
class Signing:
    """How the build signs the packages itself (``signing:`` in the spec): test signing, the only mode."""

    cert: Path | None
    cert_raw: str | None
    key: Path | None
    key_env: str | None
    generate: bool = False
    """A throwaway certificate and key made into build/<spec>/signing/ (the sample's; never for real media)."""


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
    signing: Signing | None
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
        """The spec signs with a throwaway pair the build makes (sample media)."""
        return self.signing is not None and self.signing.generate

    @property
    def signing_policy(self) -> SigningPolicy:
        return self.guest_tools.signing_policy

    def _contract_slice(self) -> dict[str, Any]:
        return {"name": self.contract.name, "version": self.contract.version,
                "devices": {k: repr(v) for k, v in sorted(self.contract.devices.items())}}

    def fingerprint(self, stage: str) -> dict[str, Any]:
        """Return the JSON-safe slice of the spec that ``stage`` reads.

        doit's ``config_changed`` compares it, so a task reruns exactly when its
        slice changes: a new volume label reruns only the ISO and its verify.
        """
        src = self.source
        source = {"kind": src.kind.value, "path": src.path_raw, "url": src.url, "sha256": src.sha256,
                  "size": src.size, "stand_ins": src.stand_ins}
        selection = {
            "source": source,
            "os_dirs": {a.value: list(v) for a, v in sorted(src.os_dirs.items())},
            "arches": [a.value for a in self.arches],
            "drivers": [[d.name, d.device.name, d.required] for d in self.drivers],
            "optional": self.optional_policy.value,
            "exclude": list(src.exclude),
        }
        slices: dict[str, dict[str, Any]] = {
            "fetch": {"source": source},
            "extract": {**selection, "license_file": src.license_file_raw},
            "expand": {"source": source},
            "stage": {
                **selection,
                "expect": src.expect,
                "checks": [self.checks.warnings.value, self.checks.allow_sha256_only,
                           self.checks.placeholder_catalogs.value],
                "signing_policy": self.signing_policy.value,
                "contract": self._contract_slice(),
                # The key is left out on purpose: only where it is read from, never its bytes, reaches state.
                "signing": None if self.signing is None else [self.signing.cert_raw, self.signing.generate],
            },
            "notices": {"source": source, "license_file": src.license_file_raw, "name": self.name},
            "drivers_iso": {"name": self.name, "description": self.description, "out": asdict(self.drivers_iso),
                            "contract": [self.contract.name, self.contract.version]},
            "verify": {"out": asdict(self.drivers_iso),
                       "arches": [a.value for a in self.arches],
                       "required": [d.name for d in self.drivers if d.required]},
            "fat_disk": {"name": self.name, "description": self.description, "out": asdict(self.fat_disk),
                         "winpe": self.drivers_iso.winpe_drivers, "signing": repr(self.guest_tools),
                         "contract": [self.contract.name, self.contract.version]},
            "verify_fat_disk": {"out": asdict(self.fat_disk), "winpe": self.drivers_iso.winpe_drivers},
            "service": {"name": self.name, "media": repr(self.install_media), "signing": repr(self.guest_tools),
                        "winpe": self.drivers_iso.winpe_drivers, "contract": self._contract_slice()},
            "guest_tools": {"name": self.name, "out": repr(self.guest_tools),
                            "contract": self._contract_slice()},
        }
        return slices[stage]
