"""The device contract (``specs/devices.yaml``): PCI identity, service and setup class per device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import SpecError
from .yamldoc import load_doc, raise_problems, schema_problems


@dataclass(frozen=True)
class Subsystem:
    """One PCI function variant of a device (virtio-input has keyboard, mouse and tablet)."""

    name: str
    id: str


@dataclass(frozen=True)
class Device:
    """A contract device; IDs are upper-case hex strings as Windows writes them."""

    name: str
    virtio_type: int
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

    def hardware_ids(self, subsystem: Subsystem) -> tuple[str, ...]:
        """Return the PCI IDs Windows reports for one function, most specific first.

        Order as the PCI bus driver builds them (hardware IDs, then compatible IDs),
        see virtio-win-facts §7.
        """
        v, d, r, cc = self.vendor_id, self.device_id, self.revision, self.class_code
        sub = f"{subsystem.id}{self.subsystem_vendor_id}"
        return (
            f"PCI\\VEN_{v}&DEV_{d}&SUBSYS_{sub}&REV_{r}",
            f"PCI\\VEN_{v}&DEV_{d}&SUBSYS_{sub}",
            f"PCI\\VEN_{v}&DEV_{d}&REV_{r}",
            f"PCI\\VEN_{v}&DEV_{d}",
            f"PCI\\VEN_{v}&DEV_{d}&CC_{cc}",
            f"PCI\\VEN_{v}&DEV_{d}&CC_{cc[:4]}",
            f"PCI\\VEN_{v}&CC_{cc}",
            f"PCI\\VEN_{v}&CC_{cc[:4]}",
            f"PCI\\VEN_{v}",
            f"PCI\\CC_{cc}",
            f"PCI\\CC_{cc[:4]}",
        )

    def names_service(self, name: str) -> bool:
        """Whether ``name`` is this device's service (or an accepted alias); Windows ignores case."""
        return name.lower() in {s.lower() for s in (self.service, *self.service_aliases)}

    @property
    def contract_hwids(self) -> tuple[str, ...]:
        """The four contract forms per subsystem (SUBSYS+REV, SUBSYS, REV, bare VEN&DEV), deduplicated."""
        out: list[str] = []
        for sub in self.subsystems:
            for hwid in self.hardware_ids(sub)[:4]:
                if hwid not in out:
                    out.append(hwid)
        return tuple(out)


@dataclass(frozen=True)
class Contract:
    """The whole device contract."""

    name: str
    version: str
    devices: dict[str, Device]

    def device(self, name: str) -> Device:
        """Return a device by name or raise :class:`SpecError`."""
        try:
            return self.devices[name]
        except KeyError:
            raise SpecError(f"unknown device {name!r}", f"use one of: {', '.join(sorted(self.devices))}") from None


def load_contract(path: Path, display: str | None = None) -> Contract:
    """Load and validate ``specs/devices.yaml``."""
    doc = load_doc(path, display)
    raise_problems(schema_problems(doc, path.with_name("devices.schema.json")))
    devices = {}
    for name, d in doc.data["devices"].items():
        devices[name] = Device(
            name=name,
            virtio_type=d["virtio_type"],
            vendor_id=d["vendor_id"],
            device_id=d["device_id"],
            transitional_device_id=d.get("transitional_device_id"),
            subsystem_vendor_id=d["subsystem_vendor_id"],
            subsystems=tuple(Subsystem(s["name"], s["id"]) for s in d["subsystems"]),
            revision=d["revision"],
            class_code=d["class_code"],
            service=d["service"],
            service_aliases=tuple(d.get("service_aliases", ())),
            inf=d["inf"],
            setup_class=d["setup_class"],
            class_guid=d["class_guid"].upper(),
            boot_critical=d["boot_critical"],
        )
    return Contract(name=doc.data["contract"], version=doc.data["contract_version"], devices=devices)
