"""The device contract's types: PCI identity, service and setup class per device.

Plain data, with no loader attached (that is :func:`aero_media.spec.load.load_contract`),
so the stand-alone Windows 7 checks can use it. The hardware IDs Windows derives
from this identity are :mod:`aero_media.win7.pnp`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SpecError


@dataclass(frozen=True)
class Subsystem:
    """One PCI function variant of a device (virtio-input has keyboard, mouse and tablet)."""

    name: str
    id: str


@dataclass(frozen=True)
class Device:
    """A contract device; IDs are upper-case hex strings as Windows writes them."""

    name: str
    virtio_type: int | None
    """The virtio device type; None for a device that is not virtio (AeroGPU) or whose contract omits it."""
    vendor_id: str
    device_id: str
    transitional_device_id: str | None
    subsystem_vendor_id: str
    subsystems: tuple[Subsystem, ...]
    revision: str
    class_code: str
    service: str
    service_aliases: tuple[str, ...]
    inf: str
    setup_class: str
    class_guid: str
    boot_critical: bool
    sys: str = ""
    """The driver binary, ``<service>.sys`` unless the contract names another."""
    hardware_ids: tuple[str, ...] = ()
    """The contract's own hardware-ID list, in its order, when it spells one out (Aero's JSON contracts do);
    empty when the IDs follow from the identity above (:func:`aero_media.win7.pnp.contract_ids`)."""

    def __post_init__(self) -> None:
        if not self.sys:
            object.__setattr__(self, "sys", f"{self.service}.sys")

    def names_service(self, name: str) -> bool:
        """Whether ``name`` is this device's service (or an accepted alias); Windows ignores case."""
        return name.lower() in {s.lower() for s in (self.service, *self.service_aliases)}


@dataclass(frozen=True)
class ContractRef:
    """A contract by name and version (as Aero's tools name theirs)."""

    name: str
    version: str
    schema_version: int


@dataclass(frozen=True)
class Contract:
    """The whole device contract, and the file it was read from."""

    name: str
    version: str
    devices: dict[str, Device]
    schema_version: int = 1
    file: str = "specs/devices.yaml"
    """Where it came from, relative to the project (never a host path: it goes into manifests)."""
    sha256: str = ""
    aero: ContractRef | None = None
    """The contract of Aero's tools this one matches, if it says."""
    source: Path | None = field(default=None, compare=False)
    """The file on this host it was read from (a build depends on it; never written into media)."""

    @property
    def header(self) -> ContractRef:
        """What ``config/devices.cmd`` names as the contract in force: Aero's equivalent, else this one."""
        return self.aero or ContractRef(self.name, self.version, self.schema_version)

    def device(self, name: str) -> Device:
        """Return a device by name or raise :class:`SpecError`."""
        try:
            return self.devices[name]
        except KeyError:
            raise SpecError(f"unknown device {name!r}", f"use one of: {', '.join(sorted(self.devices))}") from None

    @property
    def boot_critical(self) -> Device | None:
        """The device Windows boots from (virtio-blk), if the contract has one."""
        critical = [d for d in self.devices.values() if d.boot_critical]
        if len(critical) > 1:
            raise SpecError(f"the contract marks {len(critical)} devices boot-critical "
                            f"({', '.join(d.name for d in critical)}); the storage pre-seed supports one",
                            "set boot_critical: true on the storage device only")
        return critical[0] if critical else None
