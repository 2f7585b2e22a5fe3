"""Aero's device contract JSON (schema 1, ``docs/windows-device-contract.json`` in Aero), read and written.

Aero's file names each device's PCI IDs, hardware-ID list, service and INF. What it leaves
unsaid (the setup class the INF installs in, the PCI class code, whether Windows boots
from the device) follows from the PCI function and comes from :data:`PCI_FUNCTIONS`.
A malformed file is one positioned line per problem, like a spec.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from .contract import Contract, ContractRef, Device, Subsystem
from .yamldoc import Doc, load_doc, raise_problems, schema_problems

SCHEMA_FILE = "aero-contract.schema.json"


@dataclass(frozen=True)
class PciFunction:
    """What Windows 7 makes of one PCI function: setup class, class GUID, PCI class code, boot-critical."""

    setup_class: str
    class_guid: str
    class_code: str
    boot_critical: bool


# By (vendor, device) ID. Setup classes and GUIDs: Microsoft's "System-Defined Device Setup Classes";
# class codes: what Aero's devices report (Aero: windows7-virtio-driver-contract.md in its docs folder; AeroGPU is a
# VGA-compatible display controller, drivers/aerogpu/protocol/aerogpu_pci.h).
PCI_FUNCTIONS: dict[tuple[str, str], PciFunction] = {
    ("1AF4", "1041"): PciFunction("Net", "{4D36E972-E325-11CE-BFC1-08002BE10318}", "020000", False),
    ("1AF4", "1042"): PciFunction("SCSIAdapter", "{4D36E97B-E325-11CE-BFC1-08002BE10318}", "010000", True),
    ("1AF4", "1052"): PciFunction("HIDClass", "{745A17A0-74D3-11D0-B6FE-00A0C90F57DA}", "098000", False),
    ("1AF4", "1059"): PciFunction("MEDIA", "{4D36E96C-E325-11CE-BFC1-08002BE10318}", "040100", False),
    ("A3A0", "0001"): PciFunction("Display", "{4D36E968-E325-11CE-BFC1-08002BE10318}", "030000", False),
}

# virtio-input's functions, told apart by subsystem ID (Aero: windows-device-contract.md in its docs folder).
SUBSYSTEM_NAMES: dict[tuple[str, str], str] = {
    ("1AF4", "0010"): "keyboard",
    ("1AF4", "0011"): "mouse",
    ("1AF4", "0012"): "tablet",
}

_SUBSYS = re.compile(r"&SUBSYS_([0-9A-F]{4})([0-9A-F]{4})")
_REV = re.compile(r"&REV_([0-9A-F]{2})")
_VEN_DEV = re.compile(r"PCI\\VEN_([0-9A-F]{4})&DEV_([0-9A-F]{4})")


def load_aero_contract(path: Path, display: str, sha256: str, schema: Path) -> Contract:
    """Read an Aero contract JSON file; every problem is ``file:line:col: /pointer: what; fix: how``."""
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{display}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}",
                        "fix the JSON syntax at that position (commas, quotes, brackets)") from None
    doc = load_doc(path, display)
    raise_problems(schema_problems(doc, schema))
    problems: list[str] = []
    devices: dict[str, Device] = {}
    for i, raw in enumerate(doc.data["devices"]):
        device = _device(doc, i, raw, problems)
        if device is None:
            continue
        if device.name in devices:
            problems.append(f"{doc.where(f'/devices/{i}/device')}: device {device.name!r} is listed twice; "
                            "fix: keep one entry")
        devices[device.name] = device
    raise_problems(problems)
    name, version = doc.data["contract_name"], doc.data["contract_version"]
    return Contract(name=name, version=version, devices=devices, schema_version=doc.data["schema_version"],
                    file=display, sha256=sha256, aero=ContractRef(name, version, doc.data["schema_version"]))


def _device(doc: Doc, i: int, raw: dict[str, Any], problems: list[str]) -> Device | None:
    where = doc.where(f"/devices/{i}")
    vendor, dev_id = raw["pci_vendor_id"][2:].upper(), raw["pci_device_id"][2:].upper()
    patterns = tuple(raw["hardware_id_patterns"])
    function = PCI_FUNCTIONS.get((vendor, dev_id))
    if function is None:
        known = ", ".join(f"VEN_{v}&DEV_{d}" for v, d in PCI_FUNCTIONS)
        problems.append(f"{where}: no known setup class for PCI VEN_{vendor}&DEV_{dev_id}; fix: use one of "
                        f"{known}, or write the contract as specs/devices.yaml does (it names setup_class)")
        return None
    subsystems: list[Subsystem] = []
    sub_vendors: set[str] = set()
    revisions: set[str] = set()
    foreign = False
    for j, pattern in enumerate(patterns):
        up = pattern.upper()
        ven_dev = _VEN_DEV.match(up)
        if ven_dev is None or ven_dev.groups() != (vendor, dev_id):
            problems.append(f"{doc.where(f'/devices/{i}/hardware_id_patterns/{j}')}: {pattern} is not a "
                            f"VEN_{vendor}&DEV_{dev_id} ID; fix: list only this device's IDs")
            foreign = True
            continue
        sub = _SUBSYS.search(up)
        if sub:
            sub_vendors.add(sub.group(2))
            name = SUBSYSTEM_NAMES.get((sub.group(2), sub.group(1)), raw["device"].removeprefix("virtio-"))
            if all(s.id != sub.group(1) for s in subsystems):
                subsystems.append(Subsystem(name, sub.group(1)))
        rev = _REV.search(up)
        if rev:
            revisions.add(rev.group(1))
    if foreign:
        return None
    if not subsystems or len(sub_vendors) != 1 or len(revisions) > 1:
        problems.append(f"{where}: hardware_id_patterns must name the device's SUBSYS_ form(s) with one "
                        "subsystem vendor and at most one REV_; fix: list the IDs the device reports, "
                        "as Aero's docs/windows-device-contract.json does")
        return None
    service = raw["driver_service_name"]
    return Device(
        name=raw["device"],
        virtio_type=raw.get("virtio_device_type"),
        vendor_id=vendor,
        device_id=dev_id,
        transitional_device_id=raw["pci_device_id_transitional"][2:].upper()
        if "pci_device_id_transitional" in raw else None,
        subsystem_vendor_id=sub_vendors.pop(),
        subsystems=tuple(subsystems),
        revision=revisions.pop() if revisions else "",
        class_code=function.class_code,
        service=service,
        service_aliases=(),
        inf=raw["inf_name"],
        setup_class=function.setup_class,
        class_guid=function.class_guid,
        boot_critical=function.boot_critical,
        hardware_ids=patterns,
    )

