"""Fixture builders for upstream-like inputs: an extracted virtio-win tree and ISOs made from it.

Nothing here is a real driver. Binaries are :func:`aero_media.devtools.pestub.build_pe`
stand-ins with the right Machine for their folder, catalogs are marked
stand-in bytes, and INFs are either byte-exact copies of the real Win7 INFs in
``<realdata>/inf`` (when ``realdata`` is given, see ``tests/conftest.py``) or synthetic INFs shaped
like them. Everything is deterministic: the same path always gets the same bytes.

Public API (see each docstring):

* :func:`make_upstream_tree` lays out an extracted ISO tree and returns
  ``{relative path: bytes}`` of everything it wrote;
* :func:`upstream_file_bytes` is the content rule it uses, for one path;
* :func:`builtin_listing`, :func:`read_listing`: the paths to lay out;
* :func:`make_iso` turns a folder into an ISO in the upstream styles
  (``"rr"`` = 0.1.173-9 and later, ``"rr-joliet"`` = older, ``"joliet"``,
  ``"iso9660"``) with xorriso, genisoimage or pycdlib;
* :func:`iso9660_name` maps a path to the name the ``"iso9660"`` style gives it;
* :func:`make_hostile_iso` builds the damaged and malicious images in
  :data:`HOSTILE_KINDS`;
* :func:`have_tool`, :func:`require_tool`, :func:`iso_tools`, :func:`make_writable`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import unittest.mock
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from aero_media.devtools import pestub
from aero_media.win7.catalog import PLACEHOLDER_MAGIC
from aero_media.win7.pe import (
    MACHINE_AMD64,
    MACHINE_I386,
    STAND_IN_MARKER,
    SUBSYSTEM_NATIVE,
    SUBSYSTEM_WINDOWS_GUI,
    image_checksum,
)

FIXED_MTIME = 1741651200  # 2025-03-11 00:00 UTC, the date of the real 2025 listing
DEFAULT_LABEL = "virtio-win-0.1.285"
STYLES = ("rr", "rr-joliet", "joliet", "iso9660")
TOOLS = ("xorriso", "genisoimage", "pycdlib")

# A subset of realdata/listings/virtio-win-iso-2025.txt (folder: files), kept
# here so the core tests run without the real data. It keeps the traps of the real
# layout: mixed-case 'NetKVM' and 'Balloon', 'Readme.md' next to 'readme.doc',
# w7 x86+amd64 and the identical 2k8R2/amd64 copy, w8/w10/w11 folders whose INFs
# never match Win7, the root 'amd64'/'i386' auto trees, vioinput's
# WdfCoInstaller01009.dll (01011 in w8), .pdb files, data/info.json, root files.
_BUILTIN = """
.: release-drivers-versions.txt virtio-win-gt-x64.msi virtio-win-gt-x86.msi virtio-win-guest-tools.exe virtio-win_license.txt winfsp-2.0.23075.msi
Balloon/w7/amd64: WdfCoInstaller01009.dll balloon.cat balloon.inf balloon.pdb balloon.sys blnsvr.exe blnsvr.pdb
NetKVM/2k8R2/amd64: netkvm.cat netkvm.inf netkvm.pdb netkvm.sys netkvmco.dll netkvmco.pdb readme.doc
NetKVM/w10/amd64: Readme.md netkvm.cat netkvm.inf netkvm.pdb netkvm.sys netkvmco.exe netkvmco.pdb netkvmp.exe netkvmp.pdb
NetKVM/w10/x86: Readme.md netkvm.cat netkvm.inf netkvm.pdb netkvm.sys netkvmco.exe netkvmco.pdb netkvmp.exe netkvmp.pdb
NetKVM/w7/amd64: netkvm.cat netkvm.inf netkvm.pdb netkvm.sys netkvmco.dll netkvmco.pdb readme.doc
NetKVM/w7/x86: netkvm.cat netkvm.inf netkvm.pdb netkvm.sys netkvmco.dll netkvmco.pdb readme.doc
NetKVM/w8/amd64: Readme.md netkvm.cat netkvm.inf netkvm.pdb netkvm.sys netkvmco.dll netkvmco.pdb
NetKVM/w8/x86: Readme.md netkvm.cat netkvm.inf netkvm.pdb netkvm.sys netkvmco.dll netkvmco.pdb
amd64/w10: vioscsi.cat vioscsi.inf vioscsi.pdb vioscsi.sys viostor.cat viostor.inf viostor.pdb viostor.sys
amd64/w11: vioscsi.cat vioscsi.inf vioscsi.pdb vioscsi.sys viostor.cat viostor.inf viostor.pdb viostor.sys
data: info.json
guest-agent: qemu-ga-i386.msi qemu-ga-x86_64.msi
i386/w10: vioscsi.cat vioscsi.inf vioscsi.pdb vioscsi.sys viostor.cat viostor.inf viostor.pdb viostor.sys
tools/debug: CollectSystemInfo.ps1 LICENSE README.md
vioinput/2k8R2/amd64: WdfCoInstaller01009.dll viohidkmdf.pdb viohidkmdf.sys vioinput.cat vioinput.inf vioinput.pdb vioinput.sys
vioinput/w10/amd64: viohidkmdf.pdb viohidkmdf.sys vioinput.cat vioinput.inf vioinput.pdb vioinput.sys
vioinput/w10/x86: viohidkmdf.pdb viohidkmdf.sys vioinput.cat vioinput.inf vioinput.pdb vioinput.sys
vioinput/w7/amd64: WdfCoInstaller01009.dll viohidkmdf.pdb viohidkmdf.sys vioinput.cat vioinput.inf vioinput.pdb vioinput.sys
vioinput/w7/x86: WdfCoInstaller01009.dll viohidkmdf.pdb viohidkmdf.sys vioinput.cat vioinput.inf vioinput.pdb vioinput.sys
vioinput/w8/amd64: WdfCoInstaller01011.dll viohidkmdf.pdb viohidkmdf.sys vioinput.cat vioinput.inf vioinput.pdb vioinput.sys
vioinput/w8/x86: WdfCoInstaller01011.dll viohidkmdf.pdb viohidkmdf.sys vioinput.cat vioinput.inf vioinput.pdb vioinput.sys
vioscsi/2k8R2/amd64: vioscsi.cat vioscsi.inf vioscsi.pdb vioscsi.sys
vioscsi/w7/amd64: vioscsi.cat vioscsi.inf vioscsi.pdb vioscsi.sys
vioscsi/w7/x86: vioscsi.cat vioscsi.inf vioscsi.pdb vioscsi.sys
viostor/2k8R2/amd64: viostor.cat viostor.inf viostor.pdb viostor.sys
viostor/w10/amd64: viostor.cat viostor.inf viostor.pdb viostor.sys
viostor/w10/x86: viostor.cat viostor.inf viostor.pdb viostor.sys
viostor/w11/amd64: viostor.cat viostor.inf viostor.pdb viostor.sys
viostor/w7/amd64: viostor.cat viostor.inf viostor.pdb viostor.sys
viostor/w7/x86: viostor.cat viostor.inf viostor.pdb viostor.sys
viostor/w8/amd64: viostor.cat viostor.inf viostor.pdb viostor.sys
viostor/w8/x86: viostor.cat viostor.inf viostor.pdb viostor.sys
"""


def builtin_listing() -> list[str]:
    """The embedded listing: 187 ISO paths (no ``cd/`` prefix), a subset of the real 2025 ISO."""
    out: list[str] = []
    for line in _BUILTIN.strip().splitlines():
        folder, names = line.split(":", 1)
        for name in names.split():
            out.append(name if folder == "." else f"{folder}/{name}")
    return sorted(out)


def read_listing(path: Path) -> list[str]:
    """Read a listing such as ``realdata/listings/virtio-win-iso-2025.txt``; strips the ``cd/`` prefix."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("cd/"):
            line = line[3:]
        out.append(line)
    return out


# -- file contents -----------------------------------------------------------

@dataclass(frozen=True)
class _Driver:
    section: str                       # models section base name ([VioStor.NTamd64.6.1])
    cls: str
    guid: str
    desc_key: str
    desc: str
    hwids: tuple[tuple[str, str, str], ...]  # (DEV, SUBSYS, REV)
    bare: bool                         # also list PCI\VEN_1AF4&DEV_xxxx (real files from ~0.1.149 do)
    service: str
    start: int                         # 0 boot, 3 demand
    group: str | None
    install: str


# HWIDs, classes, services and strings as in realdata/inf (docs/upstream.md#real-windows-7-infs);
# balloon from the osinfo list. Unknown drivers get a generic System device.
_DRIVERS: dict[str, _Driver] = {
    "viostor": _Driver("VioStor", "SCSIAdapter", "{4D36E97B-E325-11CE-BFC1-08002BE10318}", "VioStorScsi.DeviceDesc",
                       "Red Hat VirtIO SCSI controller", (("1001", "00021AF4", "00"), ("1042", "11001AF4", "01")),
                       True, "viostor", 0, "SCSI miniport", "scsi_inst"),
    "vioscsi": _Driver("RHEL", "SCSIAdapter", "{4D36E97B-E325-11CE-BFC1-08002BE10318}", "RHELScsi.DeviceDesc",
                       "Red Hat VirtIO SCSI pass-through controller",
                       (("1004", "00081AF4", "00"), ("1048", "11001AF4", "01")), False, "vioscsi", 0,
                       "SCSI miniport", "rhelscsi_inst"),
    "netkvm": _Driver("NetKVM", "Net", "{4d36e972-e325-11ce-bfc1-08002be10318}", "kvmnet6.DeviceDesc",
                      "Red Hat VirtIO Ethernet Adapter", (("1000", "00011AF4", "00"), ("1041", "11001AF4", "01")),
                      True, "netkvm", 3, "NDIS", "kvmnet6.ndi"),
    "vioinput": _Driver("VirtioInput", "HIDClass", "{745a17a0-74d3-11d0-b6fe-00a0c90f57da}", "VirtioInput.DeviceDesc",
                        "VirtIO Input Driver", (("1052", "11001AF4", "01"),), True, "VirtioInput", 3, None,
                        "VirtioInput_Device"),
    "balloon": _Driver("VirtioBalloon", "System", "{4d36e97d-e325-11ce-bfc1-08002be10318}", "VirtioBalloon.DeviceDesc",
                       "VirtIO Balloon Driver", (("1002", "00051AF4", "00"), ("1045", "11001AF4", "01")), True,
                       "BALLOON", 3, None, "BALLOON_Device"),
}
_GENERIC = _Driver("VirtIO", "System", "{4d36e97d-e325-11ce-bfc1-08002be10318}", "VirtIO.DeviceDesc",
                   "VirtIO stand-in device", (("10FF", "11001AF4", "01"),), True, "", 3, None, "Generic_Device")

# Models decoration version per OS folder (docs/windows7.md#models-sections) and a DriverVer shaped like
# upstream's (<NT>.<n>.104.<build>00; w7 = the real frozen 172 build).
_OS_VERSION = {"xp": "5.1", "2k3": "5.2", "2k8": "6.0", "w7": "6.1", "2k8R2": "6.1", "w8": "6.2", "2k12": "6.2",
               "w8.1": "6.3", "2k12R2": "6.3"}
_DRIVER_VER = {"6.1": "06/07/2019,61.77.104.17200", "6.2": "06/04/2025,62.101.104.28500",
               "6.3": "06/04/2025,63.101.104.28500", "10.0": "06/04/2025,100.101.104.28500",
               "5.1": "06/04/2025,51.101.104.28500", "5.2": "06/04/2025,52.101.104.28500",
               "6.0": "06/04/2025,60.101.104.28500"}
_ARCH_DIRS = {"x86": "x86", "i386": "x86", "amd64": "amd64", "ARM64": "ARM64"}
_INF_ARCH = {"x86": "NTx86", "amd64": "NTamd64", "ARM64": "NTarm64"}
_MACHINE = {"x86": MACHINE_I386, "amd64": MACHINE_AMD64}

# Approximate real sizes per extension for payload="realistic" (the full 2025
# listing then comes to roughly 600 MB, like the real ISO).
_REALISTIC = {"pdb": 1_200_000, "sys": 150_000, "dll": 900_000, "exe": 1_000_000, "msi": 15_000_000, "cat": 12_000,
              "doc": 200_000}


def content_key(relpath: str) -> str:
    """The path whose content ``relpath`` shares upstream.

    ``<Driver>/2k8R2/amd64/x`` is the Win7 amd64 build (``<Driver>/w7/amd64/x``),
    and the root auto tree ``amd64|i386/<os>/<drv>.*`` is a copy of
    ``<drv>/<os>/amd64|x86/<drv>.*``. Upstream hardlinks such copies, so the
    fixture gives them identical bytes (and :func:`make_upstream_tree` hardlinks them).
    """
    parts = relpath.split("/")
    if len(parts) == 4 and parts[1] == "2k8R2" and parts[2] == "amd64":
        return "/".join([parts[0], "w7", "amd64", parts[3]])
    if len(parts) == 3 and parts[0] in ("amd64", "i386"):
        driver = parts[2].split(".", 1)[0]
        return "/".join([driver, parts[1], _ARCH_DIRS[parts[0]], parts[2]])
    return relpath


def _where(key: str) -> tuple[str | None, str | None]:
    """(os folder, normalised arch) for ``<Driver>/<os>/<arch>/file`` keys, else (None, None)."""
    parts = key.split("/")
    if len(parts) == 4 and parts[2] in _ARCH_DIRS:
        return parts[1], _ARCH_DIRS[parts[2]]
    return None, None


def _stream(seed: str, size: int) -> bytes:
    # Incompressible, deterministic filler; a 64 KiB block repeated keeps
    # "realistic" 600 MB trees quick to generate.
    block = hashlib.shake_256(seed.encode()).digest(min(size, 65536) or 1)
    reps = -(-size // len(block))
    return (block * reps)[:size]


def _pe(key: str, arch: str, dll: bool, gui: bool, pad_to: int) -> bytes:
    marker = STAND_IN_MARKER + b" [" + key.encode("ascii", "replace") + b"]"
    image = pestub.build_pe(_MACHINE[arch], SUBSYSTEM_WINDOWS_GUI if gui else SUBSYSTEM_NATIVE,
                            dll=dll, marker=marker)
    if pad_to > len(image):
        # Overlay padding; recompute the CheckSum so pefile still agrees.
        image = image + _stream(key, pad_to - len(image))
        offset = 0x80 + 4 + 20 + 64
        image = image[:offset] + image_checksum(image, offset).to_bytes(4, "little") + image[offset + 4:]
    return image


def _coinstaller(siblings: Iterable[str]) -> str | None:
    for name in sorted(siblings):
        if re.fullmatch(r"WdfCoInstaller\d{5}\.dll", name, re.IGNORECASE):
            return name
    return None


def synthetic_inf(relpath: str, siblings: Iterable[str] = ()) -> bytes:
    """A synthetic INF for ``<Driver>/<os>/<arch>/<name>.inf`` (or the root auto tree), CRLF, ASCII.

    Shaped like the real Win7 INFs: ``[Version]`` with DriverVer/CatalogFile,
    ``[Manufacturer]`` decorated ``NTx86|NTamd64.<os version>`` (6.1 for w7/2k8R2,
    6.2 for w8, 10.0 for w10+), the real models' HWIDs (full and bare), an
    ``AddService`` with the real service name and start type, and a KMDF
    co-installer section when a ``WdfCoInstaller*.dll`` is among ``siblings``.
    """
    key = content_key(relpath)
    os_dir, arch = _where(key)
    stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    drv = _DRIVERS.get(stem.lower(), _GENERIC)
    service = drv.service or stem
    version = _OS_VERSION.get(os_dir or "", "10.0")
    decoration = f"{_INF_ARCH.get(arch or 'amd64', 'NTamd64')}.{version}"
    models = f"{drv.section}.{decoration}"
    coinst = _coinstaller(siblings)
    lines = [
        ";",
        f"; {stem}.inf: synthetic stand-in shaped like the upstream virtio-win INF ({key}).",
        "; Not a real driver package: generated by tests/lib/upstream.py.",
        ";",
        "",
        "[Version]",
        'Signature="$Windows NT$"',
        f"Class={drv.cls}",
        f"ClassGUID={drv.guid}",
        "Provider=%VENDOR%",
        f"DriverVer = {_DRIVER_VER[version]}",
        f"CatalogFile={stem}.cat",
        "DriverPackageType = PlugAndPlay",
        f"DriverPackageDisplayName = %{drv.desc_key}%",
        "",
        "[SourceDisksNames]",
        '1 = %DiskId1%,,,""',
        "",
        "[SourceDisksFiles]",
        f"{stem}.sys = 1,,",
    ]
    if stem.lower() == "vioinput":
        lines.append("viohidkmdf.sys = 1,,")
    if coinst:
        lines.append(f"{coinst} = 1,,")
    lines += ["", "[DestinationDirs]", "DefaultDestDir = 12"]
    if coinst:
        lines.append("CoInstaller_CopyFiles = 11")
    lines += ["", "[Manufacturer]", f"%VENDOR% = {drv.section},{decoration}", "", f"[{models}]"]
    for dev, subsys, rev in drv.hwids:
        ids = f"PCI\\VEN_1AF4&DEV_{dev}&SUBSYS_{subsys}&REV_{rev}"
        if drv.bare:
            ids += f", PCI\\VEN_1AF4&DEV_{dev}"
        lines.append(f"%{drv.desc_key}% = {drv.install}, {ids}")
    if stem.lower() == "vioinput":
        lines.append("%VirtioInput.ChildDesc% = VirtioInput_Child, VIOINPUT\\REV_01")
    lines += ["", f"[{drv.install}]", "CopyFiles = Drivers_Dir", "", "[Drivers_Dir]", f"{stem}.sys", "",
              f"[{drv.install}.Services]", f"AddService = {service}, 0x00000002, {service}_Service_Inst", "",
              f"[{service}_Service_Inst]", "ServiceType    = 1", f"StartType      = {drv.start}",
              "ErrorControl   = 1", f"ServiceBinary  = %12%\\{stem}.sys"]
    if drv.group:
        lines.append(f"LoadOrderGroup = {drv.group}")
    if stem.lower() == "vioinput":
        lines += ["", "[VirtioInput_Child]", "CopyFiles = Child_Dir", "", "[Child_Dir]", "viohidkmdf.sys", "",
                  "[VirtioInput_Child.Services]", "AddService = viohidkmdf, 0x00000002, viohidkmdf_Service_Inst", "",
                  "[viohidkmdf_Service_Inst]", "ServiceType    = 1", "StartType      = 3", "ErrorControl   = 1",
                  "ServiceBinary  = %12%\\viohidkmdf.sys"]
    if coinst:
        lines += ["", f"[{drv.install}.CoInstallers]", "AddReg = CoInstaller_AddReg",
                  "CopyFiles = CoInstaller_CopyFiles", "", "[CoInstaller_CopyFiles]", coinst, "",
                  "[CoInstaller_AddReg]", f'HKR,,CoInstallers32,0x00010000, "{coinst},WdfCoInstaller"', "",
                  f"[{drv.install}.Wdf]", f"KmdfService = {service}, {service}_wdfsect", "",
                  f"[{service}_wdfsect]", f"KmdfLibraryVersion = 1.{int(coinst[-7:-4]) % 100}"]
    lines += ["", "[Strings]", 'VENDOR = "Red Hat, Inc."', f'DiskId1 = "{drv.desc} Installation Disk"',
              f'{drv.desc_key} = "{drv.desc}"']
    if stem.lower() == "vioinput":
        lines.append('VirtioInput.ChildDesc = "VirtIO Input Driver Helper"')
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _real_inf(relpath: str, realdata: Path | None) -> bytes | None:
    """The real Win7 INF for a ``*/w7/<arch>/`` or ``*/2k8R2/amd64/`` INF, when realdata has it."""
    if realdata is None:
        return None
    key = content_key(relpath)
    os_dir, arch = _where(key)
    if os_dir != "w7" or arch not in ("x86", "amd64"):
        return None
    stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
    candidate = Path(realdata) / "inf" / stem / arch / f"{stem}.inf"
    return candidate.read_bytes() if candidate.is_file() else None


def upstream_file_bytes(relpath: str, *, realdata: Path | None = None, payload: str = "small",
                        siblings: Iterable[str] = ()) -> bytes:
    """The fixture content of one upstream path (except ``data/info.json``, which depends on the whole tree).

    * ``.inf``: the real file from ``realdata/inf/<drv>/<arch>/<drv>.inf`` for
      ``*/w7/<arch>/`` and ``*/2k8R2/amd64/`` when ``realdata`` is given and has
      it (byte-exact, CRLF), else :func:`synthetic_inf`;
    * ``.sys``/``.dll``/``.exe`` in an arch folder: a PE stand-in with Machine
      0x14c (x86, i386) or 0x8664 (amd64);
    * ``.cat``: a placeholder catalog (``aero_media.win7.catalog.PLACEHOLDER_MAGIC``), which
      validation accepts only under ``checks: {placeholder_catalogs: allow}``; anything else: deterministic text
      (or filler bytes for ``.pdb``/``.msi``/``.exe``/``.doc``).

    ``payload="realistic"`` pads binaries to roughly real sizes (for benchmarks);
    ``"small"`` keeps every file at a few KiB at most.
    """
    if payload not in ("small", "realistic"):
        raise ValueError(f"payload must be 'small' or 'realistic', not {payload!r}")
    key = content_key(relpath)
    name = key.rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    _os_dir, arch = _where(key)
    size = _REALISTIC.get(ext, 0) if payload == "realistic" else 0
    if ext == "inf":
        return _real_inf(relpath, realdata) or synthetic_inf(relpath, siblings)
    if ext in ("sys", "dll", "exe") and arch in _MACHINE:
        return _pe(key, arch, dll=ext == "dll", gui=ext != "sys", pad_to=size)
    if ext == "cat":
        # The sample pack's placeholder format, so checks report it as exactly that.
        head = PLACEHOLDER_MAGIC + b" (not DER, not signed) " + key.encode() + b"\n"
        return head + _stream("cat:" + key, max(size - len(head), 64))
    if ext in ("pdb", "msi", "exe", "doc", "dll", "sys"):
        head = f"AERO STAND-IN {ext.upper()} for {key}\n".encode()
        return head + _stream(key, max(size - len(head), 256))
    return f"Stand-in for upstream file {key}\r\nGenerated by tests/lib/upstream.py; not upstream content.\r\n".encode()


def _info_json(files: Mapping[str, bytes]) -> bytes:
    """data/info.json as upstream writes it (since 0.1.173-3), from the INFs in the tree."""
    drivers = []
    for path in sorted(files):
        parts = path.split("/")
        if len(parts) != 4 or not path.lower().endswith(".inf") or parts[0] == "qemupciserial":
            continue
        text = files[path].decode("latin-1")
        ver = re.search(r"^\s*DriverVer\s*=\s*([^\r\n;]+)", text, re.MULTILINE | re.IGNORECASE)
        desc = re.search(r'^\s*[\w.]*DeviceDesc\s*=\s*"([^"]*)"', text, re.MULTILINE | re.IGNORECASE)
        drivers.append({"arch": parts[2], "driver_version": ver.group(1).strip().replace(" ", "") if ver else "",
                        "inf_path": path, "name": desc.group(1) if desc else "", "windows_version": parts[1]})
    return (json.dumps({"drivers": drivers}, indent=2, sort_keys=True) + "\n").encode()


def make_upstream_tree(root: Path, *, listing: Path | Iterable[str] | None = None, realdata: Path | None = None,
                       payload: str = "small", extra: Mapping[str, bytes] | None = None,
                       readonly: bool = False, hardlink: bool = True) -> dict[str, bytes]:
    """Lay out an extracted virtio-win ISO tree under ``root``; return ``{relative path: bytes}`` written.

    ``listing``: a listing file (``cd/`` prefixes stripped, e.g.
    ``realdata/listings/virtio-win-iso-2025.txt``) or an iterable of relative
    paths; default :func:`builtin_listing`. ``realdata``: the real-data folder
    for byte-exact Win7 INFs (else synthetic ones). ``payload``: ``"small"``
    (KiB-sized stand-ins) or ``"realistic"`` (about real sizes).
    ``extra``: more files, written last (they may override listed ones).
    ``hardlink``: identical files are hardlinked, as upstream's packaging does,
    so ISO tools share their extents. ``readonly``: files 0444 and folders 0555
    like ``mkisofs -r`` output (pytest's tmp_path cleanup copes; elsewhere call
    :func:`make_writable` or ``aero_media.fsutil.remove_tree``).
    All mtimes are fixed (:data:`FIXED_MTIME`) so ISO builds are repeatable.
    ``root`` should not exist yet (or be empty): files are created, not replaced.
    """
    root = Path(root)
    paths = read_listing(listing) if isinstance(listing, (str, Path)) else list(listing or builtin_listing())
    siblings: dict[str, set[str]] = {}
    for p in paths:
        folder, _, name = p.rpartition("/")
        siblings.setdefault(folder, set()).add(name)
    files: dict[str, bytes] = {}
    for p in paths:
        if p == "data/info.json":
            continue
        folder, _, _name = p.rpartition("/")
        # Siblings of the content key's folder decide the INF's co-installer.
        key_folder = content_key(p).rpartition("/")[0]
        files[p] = upstream_file_bytes(p, realdata=realdata, payload=payload,
                                       siblings=siblings.get(key_folder, siblings.get(folder, ())))
    if "data/info.json" in paths:
        files["data/info.json"] = _info_json(files)
    for p, data in (extra or {}).items():
        files[p] = data
    written_by_hash: dict[bytes, Path] = {}
    for p in sorted(files):
        dest = root.joinpath(*p.split("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(files[p]).digest()
        first = written_by_hash.get(digest)
        if hardlink and first is not None and p not in (extra or {}):
            os.link(first, dest)
            continue
        dest.write_bytes(files[p])
        os.utime(dest, (FIXED_MTIME, FIXED_MTIME))
        written_by_hash.setdefault(digest, dest)
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        os.utime(dirpath, (FIXED_MTIME, FIXED_MTIME))
    if readonly:
        _chmod_tree(root, 0o444, 0o555)
    return files


def _chmod_tree(root: Path, file_mode: int, dir_mode: int) -> None:
    # Bottom-up for read-only (a 0555 folder cannot be changed into), top-down
    # for writable (a 0555 parent must open up before its children).
    for dirpath, _dirnames, filenames in os.walk(root, topdown=dir_mode & 0o200 != 0):
        if dir_mode & 0o200:
            os.chmod(dirpath, dir_mode)
        for name in filenames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, file_mode)
        if not dir_mode & 0o200:
            os.chmod(dirpath, dir_mode)


def make_writable(root: Path) -> None:
    """Undo ``readonly=True`` (files 0644, folders 0755) so anything can delete the tree."""
    _chmod_tree(Path(root), 0o644, 0o755)


# -- ISO building ------------------------------------------------------------

def have_tool(name: str) -> bool:
    """True when ``name`` ("xorriso", "genisoimage", "pycdlib") can build ISOs here."""
    if name == "pycdlib":
        try:
            import pycdlib  # noqa: F401
        except ImportError:
            return False
        return True
    return shutil.which(name) is not None


def iso_tools(style: str = "rr") -> list[str]:
    """Tools that can build ``style`` here, preferred first."""
    if style in ("joliet", "iso9660"):
        return ["pycdlib"] if have_tool("pycdlib") else []
    return [t for t in TOOLS if have_tool(t)]


def require_tool(name: str) -> None:
    """Skip (or in CI fail) the calling test with a clear reason when ``name`` is not installed."""
    if name != "pycdlib":
        from tests.lib.needs import need_tool

        need_tool(name, "to build test ISOs")


def _source_entries(src: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = Path(dirpath).relative_to(src).as_posix()
        for name in sorted(dirnames + filenames):
            yield (name if rel == "." else f"{rel}/{name}"), Path(dirpath) / name


def _mangle_part(name: str, is_dir: bool) -> str:
    if is_dir:
        return re.sub(r"[^A-Z0-9_]", "_", name.upper())
    base, dot, ext = name.rpartition(".")
    if not dot:
        base, ext = name, ""
    return f"{re.sub(r'[^A-Z0-9_]', '_', base.upper())}.{re.sub(r'[^A-Z0-9_]', '_', ext.upper())}"


def iso9660_name(relpath: str, is_dir: bool = False) -> str:
    """The path an ``"iso9660"``-style image gives ``relpath``, as IsoTree reads it back.

    Upper case, characters outside ``A-Z0-9_`` become ``_`` (folders: dots too,
    ``w8.1`` -> ``W8_1``), one dot before the extension, no ``;1``, and no
    trailing dot for extension-less files (``tools/debug/LICENSE`` -> ``TOOLS/DEBUG/LICENSE``).
    """
    parts = relpath.split("/")
    out = [_mangle_part(p, True) for p in parts[:-1]] + [_mangle_part(parts[-1], is_dir)]
    return "/".join(out).rstrip(".") if not is_dir else "/".join(out)


@contextlib.contextmanager
def _frozen_clock() -> Iterator[None]:
    # pycdlib stamps time.time() through localtime: pin both (docs/upstream.md#libraries-and-tools).
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        with unittest.mock.patch("time.time", return_value=float(FIXED_MTIME)):
            yield
    finally:
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()


def _pycdlib_iso(src: Path, out: Path, style: str, label: str) -> None:  # noqa: C901 (one branch per mkisofs option)
    import pycdlib

    rr = style in ("rr", "rr-joliet")
    joliet = style in ("rr-joliet", "joliet")
    level = 4 if style == "rr" else 3
    with _frozen_clock():
        iso = pycdlib.PyCdlib()
        kwargs: dict[str, object] = {"interchange_level": level, "vol_ident": label[:16] if joliet else label}
        if joliet:
            kwargs["joliet"] = 3
        if rr:
            kwargs["rock_ridge"] = "1.09"
        iso.new(**kwargs)
        if joliet:
            # The Joliet SVD holds 16 UCS-2 characters; mkisofs truncates it the
            # same way while the PVD keeps the full label (docs/windows7.md#iso-9660-and-joliet).
            iso.pvd.volume_identifier = label.encode("ascii").ljust(32, b" ")
        seen_iso: dict[str, str] = {}
        inodes: dict[tuple[int, int], str] = {}
        for rel, full in _source_entries(src):
            st = os.lstat(full)
            parts = rel.split("/")
            if level == 4:
                iso_path = "/" + rel
            else:
                iso_path = "/" + iso9660_name(rel, is_dir=stat.S_ISDIR(st.st_mode))
                if not stat.S_ISDIR(st.st_mode):
                    iso_path += ";1"
            # Level 4 names keep their case (like genisoimage); lower levels are upper case.
            folded = iso_path if level == 4 else iso_path.upper()
            if folded in seen_iso:
                raise ValueError(f"{rel!r} and {seen_iso[folded]!r} map to one ISO 9660 name {iso_path!r}")
            seen_iso[folded] = rel
            names: dict[str, str] = {"iso_path": iso_path}
            if rr:
                names["rr_name"] = parts[-1]
            if joliet:
                names["joliet_path"] = "/" + rel
            if stat.S_ISLNK(st.st_mode):
                if not rr:
                    continue  # only Rock Ridge can carry a symlink
                iso.add_symlink(symlink_path=iso_path, rr_symlink_name=parts[-1], rr_path=os.readlink(full),
                                **({"joliet_path": names["joliet_path"]} if joliet else {}))
            elif stat.S_ISDIR(st.st_mode):
                iso.add_directory(**names, **({"file_mode": 0o40555} if rr else {}))
            else:
                key = (st.st_dev, st.st_ino)
                if key in inodes:
                    # A hardlink: share the first file's extent, as mkisofs does.
                    link: dict[str, object] = {"iso_old_path": inodes[key], "iso_new_path": iso_path}
                    if rr:
                        link["rr_name"] = parts[-1]
                    iso.add_hard_link(**link)
                    if joliet:
                        iso.add_hard_link(iso_old_path=inodes[key], joliet_new_path=names["joliet_path"])
                    continue
                inodes[key] = iso_path
                iso.add_file(str(full), **names, **({"file_mode": 0o100444} if rr else {}))
        iso.write(str(out))
        iso.close()


def make_iso(src_dir: Path, out: Path, *, style: str = "rr", label: str = DEFAULT_LABEL,
             tool: str | None = None) -> Path:
    """Build an ISO of ``src_dir`` at ``out`` in an upstream style; return ``out``.

    Styles:

    * ``"rr"``: what virtio-win ships since 0.1.173-9, ``mkisofs -r -iso-level 4
      -input-charset iso8859-1 -V <label>``: Rock Ridge, no Joliet;
    * ``"rr-joliet"``: the older ``-r -J`` images (Joliet label cut to 16 chars);
    * ``"joliet"``: Joliet without Rock Ridge (pycdlib), to exercise the Joliet reader;
    * ``"iso9660"``: plain ISO 9660 level 3, no Rock Ridge or Joliet (pycdlib),
      names as :func:`iso9660_name` says; the last-resort reader.

    ``tool`` picks ``"xorriso"`` (``-as mkisofs``), ``"genisoimage"`` or
    ``"pycdlib"``; default: the first of :func:`iso_tools` (xorriso preferred).
    Note that xorriso's level-4 primary names are upper case with ``;1`` while
    genisoimage keeps the original case; the Rock Ridge names are identical.
    Output is repeatable for xorriso and pycdlib (fixed dates); genisoimage
    stamps the build time in the volume descriptor.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, not {style!r}")
    src_dir, out = Path(src_dir), Path(out)
    candidates = iso_tools(style)
    if tool is None:
        if not candidates:
            raise RuntimeError(f"no tool to build a {style!r} ISO: install xorriso, genisoimage or pycdlib")
        tool = candidates[0]
    elif tool not in candidates:
        raise RuntimeError(f"{tool} cannot build a {style!r} ISO here (available: {candidates or 'none'})")
    out.parent.mkdir(parents=True, exist_ok=True)
    if tool == "pycdlib":
        _pycdlib_iso(src_dir, out, style, label)
        return out
    flags = ["-r", "-iso-level", "4"] if style == "rr" else ["-r", "-J"]
    cmd = ["xorriso", "-as", "mkisofs"] if tool == "xorriso" else ["genisoimage"]
    cmd += [*flags, "-input-charset", "iso8859-1", "-V", label, "-quiet", "-o", str(out), str(src_dir)]
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(FIXED_MTIME), TZ="UTC")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return out


# -- hostile images ----------------------------------------------------------

HOSTILE_KINDS: dict[str, str] = {
    "traversal": "Rock Ridge name '../../../evil.inf' in viostor/w7/amd64 (byte-patched NM entry)",
    "absolute": "Rock Ridge name '/tmp/aero-evil.inf' (byte-patched NM entry)",
    "backslash": "Rock Ridge name '..\\..\\evil.inf', a traversal on Windows (byte-patched NM entry)",
    "dotdot": "Rock Ridge name '..' for a file (byte-patched NM entry)",
    "nul": "Rock Ridge name 'evil\\x00inf' (byte-patched NM entry)",
    "duplicate": "two Rock Ridge names 'viostor.sys' in one folder (byte-patched NM entry)",
    "joliet-traversal": "Joliet-only image with the name '..\\..\\evil.inf' (byte-patched UCS-2 identifier)",
    "symlink": "Rock Ridge symlinks: viostor/w7/amd64/viostor.sys -> /etc/passwd, NetKVM/w7/x86 -> /etc",
    "case-clash": "viostor/w7/amd64/viostor.sys and VIOSTOR.SYS in one folder (Rock Ridge allows it)",
    "truncated": "image cut in the middle of viostor/w7/amd64/viostor.pdb's extent",
    "truncated-head": "image cut inside its directory records (sector 20)",
    "garbage": "64 KiB of deterministic random bytes, not an ISO",
}

# Same-length placeholder -> hostile name. The placeholder is a real file in the
# source tree; its Rock Ridge NM entry is rewritten in the built image, so the
# directory record stays well-formed and only the name is evil.
_NM_PATCHES = {
    "traversal": ("zzzzzzzzzzzzz.inf", "../../../evil.inf"),
    "absolute": ("zzzzzzzzzzzzzzzzzz", "/tmp/aero-evil.inf"),
    "backslash": ("zzzzzzzzzzzzz.inf", "..\\..\\..\\evil.inf"),
    "dotdot": ("zz", ".."),
    "nul": ("zzzzzzzz", "evil\x00inf"),
    "duplicate": ("viostor.syz", "viostor.sys"),
}
_HOSTILE_BASE = ["viostor/w7/amd64/viostor.cat", "viostor/w7/amd64/viostor.inf", "viostor/w7/amd64/viostor.sys",
                 "viostor/w7/x86/viostor.inf", "viostor/w7/x86/viostor.sys", "NetKVM/w7/x86/netkvm.inf",
                 "virtio-win_license.txt"]


@dataclass(frozen=True)
class HostileIso:
    """A hostile image from :func:`make_hostile_iso`; usable wherever a path is (``os.fspath``)."""

    path: Path
    kind: str
    bad_path: str | None
    """The offending path as IsoTree reports it (e.g. ``viostor/w7/amd64/../../../evil.inf``), if any."""
    description: str

    def __fspath__(self) -> str:
        return str(self.path)


def _patch_once(data: bytearray, old: bytes, new: bytes, what: str) -> None:
    assert len(old) == len(new), (old, new)
    at = data.find(old)
    if at < 0 or data.find(old, at + 1) >= 0:
        raise RuntimeError(f"cannot patch {what}: pattern found {data.count(old)} times")
    data[at:at + len(old)] = new


def make_hostile_iso(out: Path, kind: str, *, tool: str | None = None) -> HostileIso:  # noqa: C901 (one branch per kind)
    """Build the hostile or damaged image ``kind`` (see :data:`HOSTILE_KINDS`) at ``out``.

    Name attacks start from a small, sane Rock Ridge image of the ``"rr"`` style
    holding a placeholder file, then rewrite that file's Rock Ridge ``NM`` entry
    in place with a same-length evil name (tools refuse to write such names, and
    same length keeps every record offset valid). The build folder is a temp dir
    next to ``out`` and is removed afterwards; only ``out`` remains.
    """
    if kind not in HOSTILE_KINDS:
        raise ValueError(f"kind must be one of {sorted(HOSTILE_KINDS)}, not {kind!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    desc = HOSTILE_KINDS[kind]
    if kind == "garbage":
        out.write_bytes(_stream("garbage", 65536))
        return HostileIso(out, kind, None, desc)
    work = Path(tempfile.mkdtemp(prefix=".hostile-", dir=out.parent))
    try:
        src = work / "src"
        extra: dict[str, bytes] = {}
        folder = "viostor/w7/amd64"
        if kind in _NM_PATCHES:
            placeholder, evil = _NM_PATCHES[kind]
            extra[f"{folder}/{placeholder}"] = b"evil payload\r\n"
        elif kind == "case-clash":
            extra[f"{folder}/VIOSTOR.SYS"] = b"the other viostor.sys\r\n"
        elif kind == "truncated":
            extra[f"{folder}/viostor.pdb"] = _stream("truncated", 300_000)
        elif kind == "joliet-traversal":
            extra[f"{folder}/zzzzzzzzzz.inf"] = b"evil payload\r\n"
        make_upstream_tree(src, listing=_HOSTILE_BASE, extra=extra)
        if kind == "symlink":
            (src / folder / "viostor.sys").unlink()
            (src / folder / "viostor.sys").symlink_to("/etc/passwd")
            shutil.rmtree(src / "NetKVM/w7/x86")
            (src / "NetKVM/w7/x86").symlink_to("/etc")
        style = "joliet" if kind == "joliet-traversal" else "rr"
        tmp_iso = work / "image.iso"
        make_iso(src, tmp_iso, style=style, tool=tool if style == "rr" else None)
        data = bytearray(tmp_iso.read_bytes())
        bad: str | None = None
        if kind in _NM_PATCHES:
            placeholder, evil = _NM_PATCHES[kind]
            nm = lambda name: b"NM" + bytes([5 + len(name), 1, 0]) + name.encode("latin-1")  # noqa: E731
            _patch_once(data, nm(placeholder), nm(evil), f"Rock Ridge name {placeholder!r}")
            bad = f"{folder}/{evil}"
        elif kind == "joliet-traversal":
            evil = "..\\..\\evil.inf"
            _patch_once(data, "zzzzzzzzzz.inf".encode("utf-16-be"), evil.encode("utf-16-be"), "Joliet name")
            bad = f"{folder}/{evil}"
        elif kind == "symlink":
            bad = f"{folder}/viostor.sys"
        elif kind == "case-clash":
            bad = f"{folder}/VIOSTOR.SYS"
        elif kind == "truncated":
            import pycdlib

            iso = pycdlib.PyCdlib()
            with open(tmp_iso, "rb") as fp:
                iso.open_fp(fp)
                rec = iso.get_record(rr_path=f"/{folder}/viostor.pdb")
                start = rec.extent_location() * iso.logical_block_size
                iso.close()
            del data[start + 150_000:]
            bad = f"{folder}/viostor.pdb"
        elif kind == "truncated-head":
            del data[20 * 2048:]
        out.write_bytes(bytes(data))
        return HostileIso(out, kind, bad, desc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
