"""Find and check the driver packages under any folder (what ``aero-media check`` runs).

A folder is one package (``viostor/w7/amd64``) or a pack root
(``win7/<arch>/<driver>/``). Arch and device are taken from the options, else
inferred: the arch from nearby folder names or the PE Machine of the .sys files,
the device from the INF's PCI IDs, service name or file name. Folders are read
in place, never copied.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import SpecError, UsageError
from ..spec.contract import Contract, Device
from ..spec.types import Arch
from .checks import check_package
from .findings import CheckPolicy, PackageReport
from .inf import AddService, Inf, parse_inf
from .pe import PeError, pe_info

_ARCH_NAMES = {alias: a for a in Arch for alias in a.folder_aliases}
_MAX_DEPTH = 6
_OS_FOLDER = re.compile(r"(w\d+(\.\d)?|2k\d+(r2)?|xp|win7|vista)")


def _find_packages(root: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < _MAX_DEPTH else []
        if any(f.lower().endswith(".inf") for f in filenames):
            out.append(Path(dirpath))
    return sorted(out)


def arch_from_path(path: Path) -> Arch | None:
    """The arch a folder name says (x86/i386, amd64/x64): the folder or one of its 3 nearest parents.

    Only nearby folders count (``win7/<arch>/<driver>``, ``viostor/w7/<arch>``),
    so an unrelated directory higher up (``/home/x64/...``) cannot decide it.
    """
    for part in list(reversed(path.resolve().parts))[:4]:
        arch = _ARCH_NAMES.get(part.lower())
        if arch is not None:
            return arch
    return None


def _arch_from_pe(pkg: Path) -> Arch | None:
    machines = set()
    for p in sorted(pkg.iterdir()):
        if p.is_file() and not p.is_symlink() and p.suffix.lower() == ".sys":
            try:
                machines.add(pe_info(p.read_bytes()).machine)
            except (PeError, OSError):
                continue
    by_machine = {a.pe_machine: a for a in Arch}
    if len(machines) == 1 and next(iter(machines)) in by_machine:
        return by_machine[next(iter(machines))]
    return None


def infer_device(inf: Inf, contract: Contract, folder: str = "") -> Device | None:
    """The contract device an INF drives: by PCI VEN&DEV, then AddService name, then INF/folder name."""
    ids = [i.upper() for i in inf.all_model_ids()]

    def lists(vendor: str, dev_id: str | None) -> bool:
        if not dev_id:
            return False
        prefix = f"PCI\\VEN_{vendor}&DEV_{dev_id}".upper()
        return any(i == prefix or i.startswith(prefix + "&") for i in ids)

    by_id = [d for d in contract.devices.values()
             if lists(d.vendor_id, d.device_id) or lists(d.vendor_id, d.transitional_device_id)]
    if len(by_id) == 1:
        return by_id[0]
    # One PCI ID, several INFs (virtio-input's keyboard/mouse INF and its tablet INF): the
    # subsystem IDs the INF lists tell them apart.
    by_subsys = [d for d in by_id if any(f"&SUBSYS_{s.id}{d.subsystem_vendor_id}&".upper() in i + "&"
                                         for s in d.subsystems for i in ids)]
    if len(by_subsys) == 1:
        return by_subsys[0]
    services = {s.name.lower() for s in _all_services(inf)}
    candidates = by_id or list(contract.devices.values())
    for pick in (lambda d: any(d.names_service(s) for s in services),
                 lambda d: d.inf.lower() == inf.name.lower(),
                 lambda d: d.service.lower() == folder.lower()):
        hits = [d for d in candidates if pick(d)]
        if len(hits) == 1:
            return hits[0]
    return None


def _all_services(inf: Inf) -> list[AddService]:
    out: list[AddService] = []
    for name in inf.section_names:
        if name.lower().endswith(".services"):
            out.extend(inf.add_services(name[: -len(".services")]))
    return out


def _forced_device(contract: Contract, device: str | None) -> Device | None:
    if device is None:
        return None
    try:
        return contract.device(device)
    except SpecError as exc:
        raise UsageError(exc.message, exc.hint) from None


def check_folder(path: Path, contract: Contract, policy: CheckPolicy, arch: Arch | None = None,
                 device: str | None = None) -> list[PackageReport]:
    """Check one package folder, or every package under a pack root (``win7/<arch>/<driver>/``).

    Arch comes from ``arch``, else folder names (x86/i386, amd64/x64), else the
    .sys files' PE Machine. The device comes from ``device``, else the INF's PCI
    IDs / AddService name. With several packages, ``arch`` and ``device`` also
    select which ones are checked. Raises :class:`UsageError` only when it cannot
    tell which arch or device a folder is for.
    """
    if not path.is_dir():
        raise UsageError(f"{path}: not a directory", "pass a driver package folder or a pack root")
    forced = _forced_device(contract, device)
    pkgs = _find_packages(path)
    if not pkgs:
        raise UsageError(f"{path}: no .inf file found in it or its subfolders",
                         "pass a driver package folder (e.g. viostor/w7/amd64) "
                         "or a pack root with win7/<arch>/<driver>/")
    several = len(pkgs) > 1
    reports: list[PackageReport] = []
    for pkg in pkgs:
        folder_arch = arch_from_path(pkg)
        if several and arch is not None and folder_arch is not None and folder_arch != arch:
            continue
        pkg_arch = arch or folder_arch or _arch_from_pe(pkg)
        if pkg_arch is None:
            raise UsageError(f"{pkg}: cannot tell the arch (no x86/amd64 folder name, no readable .sys)",
                             "pass --arch x86 or --arch amd64")
        inf = _read_inf(pkg, forced)
        inferred = infer_device(inf, contract, pkg.name) if inf is not None else None
        if several and forced is not None and inferred is not None and inferred.name != forced.name:
            continue
        dev = forced or inferred
        if dev is None:
            name = inf.name if inf is not None else "its INF"
            raise UsageError(f"{pkg}: cannot tell which contract device {name} drives "
                             "(no known PCI VEN&DEV, AddService or file name)",
                             f"pass --device with one of: {', '.join(sorted(contract.devices))}")
        reports.append(check_package(pkg, pkg_arch, dev, policy, driver=_driver_name(pkg, inf, dev), contract=contract))
    if not reports:
        wanted = (f"arch {arch.value}" if arch else "", f"device {device}" if device else "")
        what = " and ".join(x for x in wanted if x)
        raise UsageError(f"{path}: no package for {what}", "drop --arch/--device or point at another folder")
    return reports


def _driver_name(pkg: Path, inf: Inf | None, dev: Device) -> str:
    if pkg.name.lower() not in _ARCH_NAMES and not _OS_FOLDER.fullmatch(pkg.name.lower()):
        return pkg.name
    return Path(inf.name).stem.lower() if inf is not None else dev.service


def _read_inf(pkg: Path, forced: Device | None) -> Inf | None:
    infs = sorted(p for p in pkg.iterdir() if p.is_file() and p.suffix.lower() == ".inf")
    if forced is not None:
        infs = [p for p in infs if p.name.lower() == forced.inf.lower()] or infs
    try:
        return parse_inf(infs[0].read_bytes(), infs[0].name) if infs else None
    except OSError:
        return None
