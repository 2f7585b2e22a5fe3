"""How Windows 7 names a PCI device for Plug and Play: the hardware-ID forms, in rank order.

The PCI bus driver reports eleven IDs per function, most specific first
(docs/windows7.md#pnp-ranking). An INF line that matches an earlier entry ranks better;
the first four are the forms the device contract names; from rank 7 on an ID
matches every device of the vendor or class ("generic"). Everything that needs
hardware IDs (the binding check, the sample pack, config/devices.cmd, the
CriticalDeviceDatabase keys) takes them from this one table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..spec.contract import Contract, Device, Subsystem


@dataclass(frozen=True)
class IdForm:
    """One entry of Windows' ID list for a PCI function."""

    rank: int
    template: str
    contract: bool
    """One of the four forms the device contract lists for a device."""
    generic: bool
    """Matches any device of the vendor or class, not this device."""


# {v} vendor, {d} device, {sub} subsystem ID + subsystem vendor, {r} revision, {cc} class code (6 hex digits).
ID_FORMS: tuple[IdForm, ...] = (
    IdForm(1, "PCI\\VEN_{v}&DEV_{d}&SUBSYS_{sub}&REV_{r}", True, False),
    IdForm(2, "PCI\\VEN_{v}&DEV_{d}&SUBSYS_{sub}", True, False),
    IdForm(3, "PCI\\VEN_{v}&DEV_{d}&REV_{r}", True, False),
    IdForm(4, "PCI\\VEN_{v}&DEV_{d}", True, False),
    IdForm(5, "PCI\\VEN_{v}&DEV_{d}&CC_{cc}", False, False),
    IdForm(6, "PCI\\VEN_{v}&DEV_{d}&CC_{cc4}", False, False),
    IdForm(7, "PCI\\VEN_{v}&CC_{cc}", False, True),
    IdForm(8, "PCI\\VEN_{v}&CC_{cc4}", False, True),
    IdForm(9, "PCI\\VEN_{v}", False, True),
    IdForm(10, "PCI\\CC_{cc}", False, True),
    IdForm(11, "PCI\\CC_{cc4}", False, True),
)


def _fill(form: IdForm, device: Device, subsystem: Subsystem) -> str:
    template = form.template
    if not device.revision:
        # A contract that gates on no revision (AeroGPU's) names only the forms without REV_.
        template = template.replace("&REV_{r}", "")
    return template.format(v=device.vendor_id, d=device.device_id, r=device.revision,
                                sub=f"{subsystem.id}{device.subsystem_vendor_id}",
                                cc=device.class_code, cc4=device.class_code[:4])


def windows_ids(device: Device, subsystem: Subsystem) -> tuple[str, ...]:
    """The IDs Windows 7 reports for one function of ``device``, most specific (rank 1) first."""
    return tuple(_fill(f, device, subsystem) for f in ID_FORMS)


def is_generic(rank: int) -> bool:
    """Whether an ID of this rank matches devices other than the contract's."""
    return ID_FORMS[rank - 1].generic


def contract_ids(device: Device) -> tuple[str, ...]:
    """The contract's forms of every function (SUBSYS+REV, SUBSYS, REV, bare VEN&DEV), without repeats.

    A contract that lists its IDs itself (Aero's JSON ``hardware_id_patterns``) is taken as written:
    the virtio-input tablet entry names only its ``SUBSYS`` forms, so that the generic forms stay
    the keyboard/mouse INF's.
    """
    if device.hardware_ids:
        return device.hardware_ids
    out: list[str] = []
    for sub in device.subsystems:
        for form in ID_FORMS:
            if form.contract:
                hwid = _fill(form, device, sub)
                if hwid not in out:
                    out.append(hwid)
    return tuple(out)


def transitional_ids(device: Device) -> tuple[str, ...]:
    """The IDs of the device's transitional (legacy) form, if the contract gives one, in the contract's four forms.

    A transitional virtio-pci function has PCI revision 00 and a subsystem device ID equal to
    the virtio device type (Virtio 1.x, section 4.1.2.1, "PCI Device Discovery"); QEMU's
    transitional virtio-blk is ``PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00``.
    """
    if not device.transitional_device_id or device.virtio_type is None:
        return ()
    legacy = replace(device, device_id=device.transitional_device_id, revision="00",
                     subsystems=(Subsystem("transitional", f"{device.virtio_type:04X}"),))
    return tuple(_fill(f, legacy, legacy.subsystems[0]) for f in ID_FORMS if f.contract)


def cdd_keys(device: Device, *, transitional: bool = False) -> tuple[str, ...]:
    """CriticalDeviceDatabase key names for a boot-critical device.

    For each contract ID (and, with ``transitional``, each :func:`transitional_ids` ID):
    the ID itself and its ``&CC_<class>`` and ``&CC_<class[:4]>`` forms (as Aero's tooling
    writes them; for the bare ``VEN&DEV`` ID these are the real class-code IDs Windows
    reports), lower-cased with ``\\`` replaced by ``#``, as Windows writes CDD keys.
    """
    keys: list[str] = []
    ids = (*contract_ids(device), *(transitional_ids(device) if transitional else ()))
    for hwid in ids:
        for form in (hwid, f"{hwid}&CC_{device.class_code}", f"{hwid}&CC_{device.class_code[:4]}"):
            key = form.replace("\\", "#").lower()
            if key not in keys:
                keys.append(key)
    return tuple(keys)


def aero_json(contract: Contract) -> dict[str, Any]:
    """The contract in Aero's schema-1 JSON form (what Aero's tools read), devices in the contract's order."""
    devices = []
    for d in contract.devices.values():
        entry: dict[str, Any] = {"device": d.name, "pci_vendor_id": f"0x{d.vendor_id}",
                                 "pci_device_id": f"0x{d.device_id}"}
        if d.transitional_device_id:
            entry["pci_device_id_transitional"] = f"0x{d.transitional_device_id}"
        entry |= {"hardware_id_patterns": list(contract_ids(d)), "driver_service_name": d.service,
                  "inf_name": d.inf}
        if d.virtio_type is not None:
            entry["virtio_device_type"] = d.virtio_type
        devices.append(entry)
    ref = contract.header
    return {"schema_version": ref.schema_version, "contract_name": ref.name, "contract_version": ref.version,
            "devices": devices}
