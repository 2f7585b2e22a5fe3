"""Check one driver package the way Windows 7 will look at it.

One staged package (one INF with its files, for one arch) is checked against the
device contract: [Version] fields, the models section NT 6.1 picks, PnP binding,
the service, referenced files, PE headers and the security catalog. Every
problem is a :class:`~aero_media.win7.findings.Finding` with a severity, the file
(and INF line) and a fix.

Why each rule holds (models sections, ranking, catalogs, SHA-1 and SHA-2, embedded
signatures) is in docs/windows7.md.

``check_package`` never raises on bad input (binary junk, truncated DER, non-PE
.sys files): those become error findings.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asn1crypto import x509

from ..spec.contract import Contract, Device
from ..spec.types import Arch, PlaceholderPolicy
from . import pnp
from .catalog import Catalog, CatalogError, EmbeddedSignature, Member, parse_catalog
from .certs import thumbprint
from .findings import CheckPolicy, Finding, PackageReport, Severity, sort_findings
from .inf import AddService, Inf, Model, ModelsChoice, parse_inf
from .pe import PeError, PeInfo, authenticode_hash, pe_info
from .sigverify import SignatureCheck, Verdict

EXECUTABLE_EXTS = (".sys", ".dll", ".exe")
PE_EXTS = (".sys", ".dll")
VALID_SIGNATURES = ("$windows nt$", "$chicago$", "$windows 95$")
MAX_READ = 256 * 1024 * 1024
def _sha1_fix(policy: CheckPolicy) -> str:
    allow = policy.vocabulary.fix("checks.allow_sha256_only", "true")
    return ("use a SHA-1-signed Windows 7 build (virtio-win 0.1.173 or older, or 0.1.189 and newer), or "
            f"{allow} if every target has KB3033929 and never loads it in Windows 7 Setup")

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


class _Collector:
    """Gathers findings and facts while the checks run (internal, mutable)."""

    def __init__(self, pkg_dir: Path, arch: Arch, device: Device, policy: CheckPolicy) -> None:
        self.pkg_dir = pkg_dir
        self.arch = arch
        self.device = device
        self.policy = policy
        self.findings: list[Finding] = []
        self.facts: dict[str, Any] = {}
        self.files = _index(pkg_dir)

    def add(self, severity: Severity, code: str, file: str, line: int | None, message: str,
            fix: str | None) -> None:
        self.findings.append(Finding(severity, code, file, line, message, fix))

    def find(self, relpath: str) -> str | None:
        """Actual relative path of ``relpath`` in the package, matched case-insensitively."""
        return self.files.get(relpath.replace("\\", "/").strip("/").lower())

    def read(self, relpath: str) -> bytes | None:
        path = self.pkg_dir / relpath
        try:
            size = path.stat().st_size
            if size > MAX_READ:
                # Drivers are a few MB; reading a huge file whole would break flat memory.
                self.add(ERROR, "file-too-large", relpath, None,
                         f"{relpath} is {size} bytes, too large for a driver package file "
                         f"(limit {MAX_READ // 2**20} MiB)", "remove it from the package")
                return None
            return path.read_bytes()
        except OSError as exc:
            self.add(ERROR, "file-unreadable", relpath, None, f"{relpath} cannot be read ({exc.strerror})",
                     "check the file's permissions")
            return None


_MAX_INDEX_DEPTH = 8


def _index(pkg_dir: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(pkg_dir, followlinks=False):
        # A package is a few folders deep; pruning keeps os.walk's recursion bounded on hostile trees.
        deep = os.path.relpath(dirpath, pkg_dir).count(os.sep) >= _MAX_INDEX_DEPTH
        dirnames[:] = [] if deep else sorted(dirnames)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                if not stat.S_ISREG(os.lstat(full).st_mode):
                    continue  # symlinks and devices are never part of a package
            except OSError:
                continue  # vanished while we looked
            rel = os.path.relpath(full, pkg_dir).replace(os.sep, "/")
            out.setdefault(rel.lower(), rel)
    return out


def check_package(pkg_dir: Path, arch: Arch, device: Device, policy: CheckPolicy,
                  driver: str | None = None, contract: Contract | None = None) -> PackageReport:
    """Check one package folder (an INF and its files) for Windows 7 on ``arch``.

    With ``contract``, a further INF in the folder that drives another device of it (Aero's
    virtio-input package: the keyboard/mouse INF and the tablet INF) is checked too, for that device.
    """
    col = _Collector(pkg_dir, arch, device, policy)
    driver = driver or pkg_dir.name
    companions = _companion_infs(col, contract)
    inf_rel = _pick_inf(col, set(companions))
    if inf_rel is not None:
        _check_with_inf(col, inf_rel)
    for rel, dev in companions.items():
        if rel == inf_rel:
            continue
        sub = _Collector(pkg_dir, arch, dev, policy)
        _check_with_inf(sub, rel)
        col.findings.extend(sub.findings)
        col.facts.setdefault("more_infs", {})[rel] = {"device": dev.name, **sub.facts}
    return PackageReport(driver=driver, arch=arch.value, device=device.name,
                         findings=tuple(sort_findings(col.findings)), facts=col.facts)


def _top_infs(col: _Collector) -> list[str]:
    return sorted(rel for low, rel in col.files.items() if "/" not in low and low.endswith(".inf"))


def _companion_infs(col: _Collector, contract: Contract | None) -> dict[str, Device]:
    """INFs of the folder that drive a contract device other than the package's, by the IDs they list."""
    infs = _top_infs(col)
    if contract is None or len(infs) < 2:
        return {}
    from .folders import infer_device  # folders builds on this module

    out: dict[str, Device] = {}
    for rel in infs:
        data = col.read(rel)
        if data is None:
            continue
        dev = infer_device(parse_inf(data, rel), contract)
        if dev is not None and dev.name != col.device.name:
            out[rel] = dev
    return out


def _pick_inf(col: _Collector, companions: set[str] | None = None) -> str | None:
    infs = [r for r in _top_infs(col) if r not in (companions or set())]
    if not infs:
        col.add(ERROR, "package-no-inf", ".", None,
                f"{col.pkg_dir.name}/ has no .inf file, so Windows 7 has nothing to install",
                f"copy {col.device.inf} and its files from the virtio-win w7/{col.arch.value} folder")
        return None
    preferred = [r for r in infs if r.lower() == col.device.inf.lower()]
    chosen = preferred[0] if preferred else infs[0]
    if len(infs) > 1:
        col.add(WARNING, "package-multiple-infs", chosen, None,
                f"{col.pkg_dir.name}/ holds {len(infs)} INFs ({', '.join(infs)}); checked {chosen} only",
                "keep one driver package per folder")
    return chosen


def _check_with_inf(col: _Collector, inf_rel: str) -> None:
    data = col.read(inf_rel)
    if data is None:
        return
    inf = parse_inf(data, inf_rel)
    col.facts["inf"] = inf_rel
    col.facts["inf_encoding"] = inf.encoding
    for p in inf.problems:
        col.add(p.severity, p.code, inf_rel, p.line, p.message, p.fix)
    if not inf.section_names:
        return  # binary junk: nothing below would mean anything
    _check_version(col, inf)
    refs = _check_models(col, inf)
    catalog_file = _catalog_name(col, inf)
    _check_files(col, inf, refs, catalog_file)
    pe_facts = _check_pe(col, refs)
    if catalog_file is not None:
        _check_catalog(col, inf_rel, data, catalog_file, refs, pe_facts)


# --- [Version] ---------------------------------------------------------------------------


def _check_version(col: _Collector, inf: Inf) -> None:
    name = inf.name
    vline = inf.section_line("Version")
    if vline is None:
        col.add(ERROR, "inf-no-version", name, None, "the INF has no [Version] section: Windows rejects it",
                "use the INF shipped by virtio-win; it starts with [Version]")
        return
    _check_signature_line(col, inf, vline)
    _check_class(col, inf, vline)
    ver = inf.version_value("DriverVer")
    if ver is None:
        col.add(ERROR, "inf-no-driverver", name, vline,
                "[Version] has no DriverVer; Windows 7 will not stage the package",
                "add DriverVer = mm/dd/yyyy,w.x.y.z (the INF was probably hand-edited)")
        return
    col.facts["driver_ver"] = ",".join(ver.values)
    problem = _driver_ver_problem(ver.values)
    if problem:
        col.add(ERROR, "inf-bad-driverver", name, ver.lineno, f"DriverVer {problem}",
                "write DriverVer = mm/dd/yyyy,w.x.y.z")
    elif _major(ver.values) in (62, 63) or _major(ver.values) >= 100:
        col.add(INFO, "inf-driverver-os", name, ver.lineno,
                f"DriverVer {ver.values[1]} looks like a Windows 8/10 build (Windows 7 builds use 61.x)",
                "check that this package comes from the w7 folder")


def _check_signature_line(col: _Collector, inf: Inf, vline: int) -> None:
    sig = inf.version_value("Signature")
    if sig is None:
        col.add(ERROR, "inf-bad-signature", inf.name, vline, "[Version] has no Signature",
                'add Signature="$Windows NT$"')
    elif sig.value.lower() not in VALID_SIGNATURES:
        col.add(ERROR, "inf-bad-signature", inf.name, sig.lineno,
                f"Signature {sig.value!r} is not $Windows NT$ or $Chicago$", 'set Signature="$Windows NT$"')


def _check_class(col: _Collector, inf: Inf, vline: int) -> None:
    name = inf.name
    dev = col.device
    cls = inf.version_value("Class")
    guid = inf.version_value("ClassGuid")
    col.facts["class"] = cls.value if cls else None
    if cls is None or guid is None:
        missing = " and ".join(k for k, v in (("Class", cls), ("ClassGuid", guid)) if v is None)
        col.add(ERROR, "inf-no-class", name, vline, f"[Version] has no {missing}",
                f"add Class={dev.setup_class} and ClassGuid={dev.class_guid}")
    if cls is not None and cls.value.lower() != dev.setup_class.lower():
        col.add(ERROR, "inf-class-mismatch", name, cls.lineno,
                f"Class={cls.value}, but a {dev.name} driver installs in setup class {dev.setup_class}",
                f"use the {dev.service} package for {dev.name}, or fix the contract's setup_class")
    if guid is not None and _norm_guid(guid.value) != _norm_guid(dev.class_guid):
        col.add(ERROR, "inf-class-mismatch", name, guid.lineno,
                f"ClassGuid={guid.value}, but setup class {dev.setup_class} is {dev.class_guid}",
                f"use the {dev.service} package for {dev.name}")


def _major(values: tuple[str, ...]) -> int:
    try:
        return int(values[1].split(".")[0])
    except (IndexError, ValueError):
        return 0


def _driver_ver_problem(values: tuple[str, ...]) -> str | None:
    date = values[0] if values else ""
    if not re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}", date):
        return f"date {date!r} is not mm/dd/yyyy"
    month, day, _year = (int(x) for x in date.split("/"))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return f"date {date!r} is not a valid mm/dd/yyyy date"
    if len(values) > 1 and values[1]:
        parts = values[1].split(".")
        if len(parts) > 4 or not all(p.isdigit() and int(p) <= 65535 for p in parts):
            return f"version {values[1]!r} is not w.x.y.z with numbers up to 65535"
    return None


def _norm_guid(text: str) -> str:
    return text.strip().strip("{}").upper()


def _catalog_name(col: _Collector, inf: Inf) -> str | None:
    """Check CatalogFile and return the catalog's path in the package, if present."""
    name = inf.name
    line = inf.catalog_file(col.arch.inf_arch)
    if line is None or not line.value:
        col.add(ERROR, "inf-no-catalogfile", name, inf.section_line("Version"),
                "[Version] has no CatalogFile: Windows 7 treats the package as unsigned (x64 refuses to load it)",
                f"add CatalogFile={Path(name).stem}.cat and ship the signed catalog")
        return None
    col.facts["catalog_file"] = line.value
    found = col.find(line.value)
    if found is None:
        col.add(ERROR, "catalog-missing", name, line.lineno,
                f"CatalogFile names {line.value}, which is missing from the package",
                f"copy {line.value} from the same virtio-win folder as {name}")
    return found


# --- Models, binding, install sections, services -----------------------------------------


@dataclass
class _Refs:
    """Files the INF references, lower-case name -> (name, where from, INF line)."""

    inf: str
    files: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    boot_binaries: set[str] = field(default_factory=set)
    wow64: set[str] = field(default_factory=set)
    """Lower-case names of files copied into SysWOW64: x86 images inside an amd64 package."""
    present: dict[str, str] = field(default_factory=dict)
    """Lower-case name -> actual path in the package, for referenced files that exist."""

    def add(self, name: str, why: str, line: int) -> None:
        self.files.setdefault(name.lower(), (name, why, line))


def _check_models(col: _Collector, inf: Inf) -> _Refs:
    refs = _Refs(inf.name)
    arch = col.arch.inf_arch
    sel = inf.models(arch)
    col.facts["models_sections"] = [c.section for c in sel.chosen]
    if not sel.chosen:
        col.add(ERROR, "inf-no-win7-models", inf.name, sel.lineno,
                f"{sel.reason} (Windows 7 {col.arch.value} looks for NT{arch} decorations up to 6.1)",
                f"use the INF from the virtio-win w7/{col.arch.value} folder")
        return refs
    usable: list[ModelsChoice] = []
    for choice in sel.chosen:
        if not choice.exists:
            col.add(ERROR, "inf-models-section-missing", inf.name, choice.manufacturer.lineno,
                    f"[Manufacturer] points Windows 7 {col.arch.value} to [{choice.section}], which does not exist",
                    f"add [{choice.section}] or fix the decoration")
        else:
            usable.append(choice)
    matched_installs = _check_binding(col, inf, usable)
    installs: dict[str, int] = {}
    for choice in usable:
        for model in choice.models:
            installs.setdefault(model.install, model.lineno)
    for install, lineno in installs.items():
        _check_install(col, inf, install, lineno, refs, primary=install in matched_installs)
    return refs


def _best_match(windows_ids: list[str], models: list[Model]) -> tuple[int, int, str, Model] | None:
    """The model line that ranks best for one function: (rank index, field, ID as written, model)."""
    best: tuple[int, int, str, Model] | None = None
    for model in models:
        for pos, inf_id in enumerate(model.ids):
            up = inf_id.upper()
            if up in windows_ids:
                cand = (windows_ids.index(up), 0 if pos == 0 else 1, inf_id, model)
                if best is None or cand[:2] < best[:2]:
                    best = cand
    return best


def _check_binding(col: _Collector, inf: Inf, usable: list[ModelsChoice]) -> set[str]:
    """Match the contract device's PCI IDs; return the install sections of the best matches."""
    dev = col.device
    matches: list[dict[str, Any]] = []
    installs: set[str] = set()
    models = [m for c in usable for m in c.models]
    section_names = ", ".join(f"[{c.section}]" for c in usable) or "(no models section)"
    for sub in dev.subsystems:
        windows_ids = [i.upper() for i in pnp.windows_ids(dev, sub)]
        best = _best_match(windows_ids, models)
        label = f"{dev.name} ({sub.name})" if len(dev.subsystems) > 1 else dev.name
        if best is None:
            if usable:
                col.add(ERROR, "binding-no-match", inf.name, usable[0].manufacturer.lineno,
                        f"{section_names} lists none of the IDs Windows 7 reports for {label} "
                        f"({windows_ids[0]}, ..., {windows_ids[3]}){_legacy_note(dev, models)}",
                        f"use a virtio-win build whose INF lists {windows_ids[3]} (0.1.149 or newer)")
            continue
        index, _field, inf_id, model = best
        rank = index + 1
        installs.add(model.install)
        matches.append({"subsystem": sub.name, "hwid": inf_id, "rank": rank, "line": model.lineno,
                        "install": model.install})
        if pnp.is_generic(rank):
            col.add(WARNING, "binding-generic", inf.name, model.lineno,
                    f"{label} matches only the generic ID {inf_id} (rank {rank} of {len(windows_ids)}), "
                    "which every device of that vendor/class also reports",
                    f"list {windows_ids[3]} or a more specific ID in [{usable[0].section}]")
    col.facts["binding"] = matches
    return installs


def _legacy_note(dev: Device, models: list[Model]) -> str:
    listed = [i for m in models for i in m.ids]
    if dev.transitional_device_id:
        legacy = f"&DEV_{dev.transitional_device_id}".upper()
        if any(legacy in i.upper() for i in listed):
            return (f"; it only knows the legacy transitional DEV_{dev.transitional_device_id}, but the contract's "
                    f"device is modern-only DEV_{dev.device_id}")
    if listed:
        return f"; it lists {', '.join(listed[:3])}{' ...' if len(listed) > 3 else ''}"
    return "; the section lists no IDs"


def _check_install(col: _Collector, inf: Inf, install: str, lineno: int, refs: _Refs, primary: bool) -> None:
    name = inf.name
    arch = col.arch.inf_arch
    section = inf.install_section(install, arch)
    if section is None:
        col.add(ERROR if primary else WARNING, "inf-install-section-missing", name, lineno,
                f"install section [{install}] (or [{install}.NT{arch}], [{install}.NT]) does not exist",
                f"add [{install}] or fix the models line")
        return
    files, missing = inf.copy_files(section)
    co, co_files = inf.coinstallers(section)
    _, co_missing = inf.copy_files(f"{section}.CoInstallers")
    for ln in missing + co_missing:
        col.add(ERROR, "inf-section-missing", name, ln.lineno, f"CopyFiles names [{ln.value}], which does not exist",
                f"add [{ln.value}] listing the files to copy, or remove it from CopyFiles")
    for f in files + co_files:
        refs.add(f.name, f"[{f.section}]", f.lineno)
        if inf.copies_to_syswow64(f):
            refs.wow64.add(f.name.lower())
    for c in co:
        refs.add(c.dll, "CoInstallers32", c.lineno)
    known = col.facts.setdefault("coinstallers", []) if co else []
    for c in co:
        if c.dll not in known:
            known.append(c.dll)
    copied = {f.name.lower() for f in files}
    services = inf.add_services(section)
    functional = [s for s in services if s.is_function_driver]
    if primary:
        _check_service(col, inf, section, functional, copied, refs)
    for svc in services:
        si = inf.service_install(svc.install_section)
        if si.binary:
            refs.add(si.binary, "ServiceBinary", si.binary_lineno or svc.lineno)


def _check_service(col: _Collector, inf: Inf, section: str, functional: list[AddService], copied: set[str],
                   refs: _Refs) -> None:
    name = inf.name
    dev = col.device
    svc_section = f"{section}.Services"
    if not functional:
        col.add(ERROR, "service-missing", name, inf.section_line(svc_section) or inf.section_line(section),
                f"[{svc_section}] has no AddService with flag 0x2, so Windows 7 installs no function driver",
                f"add AddService = {dev.service}, 0x00000002, <service-install-section> to [{svc_section}]")
        return
    svc = functional[0]
    col.facts["service"] = svc.name
    if not dev.names_service(svc.name):
        col.add(ERROR if dev.boot_critical else WARNING, "service-name-mismatch", name, svc.lineno,
                f"AddService names {svc.name!r}, but the contract's {dev.name} service is {dev.service!r}"
                + (" (setup pre-seeds the boot disk under that name)" if dev.boot_critical else ""),
                f"set service: {svc.name} for {dev.name} in specs/devices.yaml, "
                f"or use a package whose AddService names {dev.service}")
    si = inf.service_install(svc.install_section)
    if not si.exists:
        col.add(ERROR, "service-section-missing", name, svc.lineno,
                f"AddService {svc.name} points to [{svc.install_section}], which does not exist",
                f"add [{svc.install_section}] with ServiceType, StartType, ErrorControl and ServiceBinary")
        return
    col.facts["start_type"] = si.start_type
    col.facts["service_binary"] = si.binary
    if not si.binary:
        col.add(ERROR, "service-no-binary", name, si.lineno,
                f"[{si.section}] has no ServiceBinary, so the {svc.name} service has no driver",
                f"add ServiceBinary = %12%\\{svc.name}.sys")
    elif si.binary.lower() not in copied:
        col.add(WARNING, "service-binary-not-copied", name, si.binary_lineno,
                f"ServiceBinary {si.binary} is not copied by [{section}] CopyFiles, "
                "so the service may point at a file that is never installed",
                f"add {si.binary} to a CopyFiles section of [{section}]")
    if dev.boot_critical:
        if si.binary:
            refs.boot_binaries.add(si.binary.lower())
        if si.start_type != 0:
            col.add(ERROR, "service-not-boot-start", name, si.start_lineno or si.lineno,
                    f"{svc.name} StartType is {si.start_raw or 'missing'}, but the {dev.name} boot disk driver "
                    "must be boot start (0) or Windows 7 cannot boot from it",
                    "set StartType = 0 (SERVICE_BOOT_START)")


# --- Files ---------------------------------------------------------------------------------


def _check_files(col: _Collector, inf: Inf, refs: _Refs, catalog_rel: str | None) -> None:
    name = inf.name
    sdf = inf.source_disks_files(col.arch.inf_arch)
    for entry in sdf.values():
        if not entry.disk_known:
            col.add(ERROR, "inf-unknown-disk", name, entry.lineno,
                    f"{entry.name} is on disk {entry.disk_id!r}, which [SourceDisksNames] does not define",
                    f"add {entry.disk_id} = ... to [SourceDisksNames]")
    for low, (fname, why, line) in refs.files.items():
        if low not in sdf:
            col.add(WARNING, "file-not-in-sourcedisks", name, line,
                    f"{fname} (from {why}) is not listed in [SourceDisksFiles], "
                    "so Windows 7 does not know where to copy it from", f"add {fname} = 1,, to [SourceDisksFiles]")
    for entry in sdf.values():
        # Driver store import copies every SourceDisksFiles entry, used or not.
        refs.add(entry.name, "[SourceDisksFiles]", entry.lineno)
    for low, (fname, why, line) in refs.files.items():
        sdf_entry = sdf.get(low)
        found = (col.find(sdf_entry.relpath) if sdf_entry is not None else None) or col.find(fname)
        if found is None:
            col.add(ERROR, "file-missing", name, line,
                    f"{fname} is missing from the package, but {why} references it",
                    f"copy {fname} from the same virtio-win folder as {name}")
        else:
            refs.present[low] = found
    col.facts["files"] = sorted(refs.present.values())
    referenced = {v.lower() for v in refs.present.values()} | {name.lower()}
    if catalog_rel:
        referenced.add(catalog_rel.lower())
    for low, rel in sorted(col.files.items()):
        if low.endswith(".pdb"):
            col.add(INFO, "file-pdb", rel, None, "debug symbols; Windows 7 never needs .pdb files",
                    "leave .pdb files out of the media")
        elif low.endswith(EXECUTABLE_EXTS) and low not in referenced:
            col.add(WARNING, "file-unreferenced", rel, None,
                    f"not referenced by {name}, so it is never installed (nor covered by its catalog)",
                    f"drop {rel} from the package, or use an INF that installs it")


# --- PE --------------------------------------------------------------------------------------


def _check_pe(col: _Collector, refs: _Refs) -> dict[str, PeInfo | None]:
    out: dict[str, PeInfo | None] = {}
    facts: dict[str, Any] = {}
    for low, rel in sorted(col.files.items()):
        if not low.endswith(PE_EXTS):
            continue
        data = col.read(rel)
        if data is None:
            continue
        try:
            info = pe_info(data)
        except PeError as exc:
            out[rel] = None
            facts[rel] = {"error": exc.message}
            col.add(ERROR, "pe-invalid", rel, None, f"not a valid PE image ({exc.message})",
                    f"replace {rel} with the file from the virtio-win w7/{col.arch.value} folder")
            continue
        out[rel] = info
        facts[rel] = info.to_json()
        _check_one_pe(col, rel, low, info, refs)
    col.facts["pe"] = facts
    return out


def _check_one_pe(col: _Collector, rel: str, low: str, info: PeInfo, refs: _Refs) -> None:
    machine = col.arch.pe_machine
    if col.arch is Arch.AMD64 and Path(rel).name.lower() in refs.wow64:
        machine = Arch.X86.pe_machine  # a WOW64 file: 32-bit on purpose
    if info.stand_in:
        _placeholder(col, "pe-stand-in", rel, "a stand-in PE from the sample pack, not a working driver")
    if info.machine != machine:
        col.add(ERROR, "pe-wrong-machine", rel, None,
                f"built for {info.machine_name} (Machine 0x{info.machine:x}), but this is the "
                f"{col.arch.value} package (needs 0x{machine:x})",
                f"take {rel} from the virtio-win w7/{col.arch.value} folder (wrong arch folder?)")
    if low.endswith(".sys") and info.subsystem != 1:
        col.add(ERROR, "pe-not-native", rel, None, f"subsystem {info.subsystem_name}, not native: not a kernel driver",
                f"replace {rel} with the real driver binary")
    if low.endswith(".sys") and not info.checksum_ok and not info.stand_in:
        col.add(WARNING, "pe-bad-checksum", rel, None,
                f"wrong PE CheckSum (0x{info.checksum:x}): the file was modified after linking",
                f"use the unmodified {rel} from virtio-win")
    if col.arch.enforces_kernel_signing and Path(rel).name.lower() in refs.boot_binaries:
        if not info.stand_in:
            _check_boot_signature(col, rel, info)
        elif info.embedded is not None:  # a test-signed stand-in: its signature must still be intact
            _check_embedded(col, rel, info, info.embedded)


def _check_boot_signature(col: _Collector, rel: str, info: PeInfo) -> None:
    # x64 Windows 7 verifies boot-start drivers from their embedded signature; the
    # catalog is not available that early.
    if not info.has_signature:
        col.add(WARNING if col.policy.accepts_unsigned else ERROR, "pe-boot-unsigned", rel, None,
                "a boot-start driver without an embedded signature: Windows 7 x64 will not load it at boot",
                f"use the embedded-signed {rel} from virtio-win (or test-sign it and enable testsigning)")
    elif info.signature_digest == "unreadable":
        col.add(ERROR, "pe-bad-signature", rel, None,
                "the embedded signature is not valid PKCS#7: Windows 7 x64 will not load it at boot",
                f"use the unmodified {rel} from virtio-win")
    elif info.signature_digest not in ("sha1", None):
        _sha2_finding(col, "pe-sha256-only", rel,
                      f"the embedded signature uses {info.signature_digest} only: Windows 7 without KB3033929 "
                      "and Windows 7 Setup cannot verify it, so the boot disk driver does not load")
    if info.embedded is not None:
        _check_embedded(col, rel, info, info.embedded)


def _signature_verdict(col: _Collector, kind: str, rel: str, what: str, broken: str | None,
                       check: SignatureCheck, consequence: str) -> None:
    """``<kind>-bad-signature`` when ``broken`` says why, else ``<kind>-unverifiable-signature`` when the
    check could not be made: a signature this tool cannot check is not taken as good (fail closed)."""
    fix = f"use the unmodified {rel} from virtio-win, or let the build re-sign it (signing: in the spec)"
    if broken:
        col.add(ERROR, f"{kind}-bad-signature", rel, None, f"{what} is broken: {broken}; {consequence}", fix)
    elif Verdict.UNSUPPORTED in (check.signature, check.chain):
        col.add(ERROR, f"{kind}-unverifiable-signature", rel, None, f"{what} cannot be verified: {check.problem}", fix)


def _check_embedded(col: _Collector, rel: str, info: PeInfo, sig: EmbeddedSignature) -> None:
    """The embedded signature must be intact and, in a test-signed build, by the build's own certificate."""
    broken = ("the file changed after it was signed (its image hash is not the signed one)"
              if info.image_digest_ok is False else
              "the signed content changed after signing" if sig.content_digest_ok is False else
              sig.check.problem if Verdict.INVALID in (sig.check.signature, sig.check.chain) else None)
    _signature_verdict(col, "pe", rel, "the embedded signature", broken, sig.check,
                       "Windows 7 x64 will not load it at boot")
    _check_trusted(col, rel, sig.certificate, "pe-untrusted-signer", "embedded-signed")


# --- Catalog -----------------------------------------------------------------------------


def _placeholder(col: _Collector, code: str, rel: str, what: str) -> None:
    vocab = col.policy.vocabulary
    if col.policy.placeholder_catalogs is PlaceholderPolicy.ALLOW:
        col.add(WARNING, code, rel, None, f"{what}; allowed by {vocab.term('checks.placeholder_catalogs', 'allow')}, "
                "but Windows 7 will not install this package", "build from a virtio-win source for real media")
    else:
        col.add(ERROR, code, rel, None, f"{what}: Windows 7 will not install this package",
                f"build from a virtio-win source, or {vocab.fix('checks.placeholder_catalogs', 'allow')} "
                "for sample media")


def _sha2_finding(col: _Collector, code: str, rel: str, message: str) -> None:
    if col.policy.allow_sha256_only:
        col.add(INFO, code, rel, None,
                f"{message} (allowed by {col.policy.vocabulary.term('checks.allow_sha256_only', 'true')})", None)
    else:
        col.add(ERROR if col.arch.enforces_kernel_signing else WARNING, code, rel, None, message,
                _sha1_fix(col.policy))


def _check_catalog(col: _Collector, inf_rel: str, inf_data: bytes, cat_rel: str, refs: _Refs,
                   pe: dict[str, PeInfo | None]) -> None:
    data = col.read(cat_rel)
    if data is None:
        return
    try:
        cat = parse_catalog(data, cat_rel)
    except CatalogError as exc:
        col.facts["catalog"] = {"valid": False}
        col.add(ERROR, "catalog-invalid", cat_rel, None, exc.message, exc.hint)
        return
    col.facts["catalog"] = cat.to_json()
    if cat.placeholder:
        _placeholder(col, "catalog-placeholder", cat_rel, "the sample pack's placeholder catalog, not a signed catalog")
        return
    _check_signature(col, cat_rel, cat)
    _check_os(col, cat_rel, cat)
    _check_members(col, inf_rel, inf_data, cat_rel, cat, refs, pe)


def _check_signature(col: _Collector, cat_rel: str, cat: Catalog) -> None:
    primary = cat.primary
    if primary is None:
        if col.policy.accepts_unsigned:
            col.add(WARNING, "catalog-unsigned", cat_rel, None,
                    "not signed: test-sign it before installing (signing policy test)",
                    f"osslsigncode sign -certs test.pem -key test.key -h sha1 -in {cat_rel} -out {cat_rel}")
        else:
            col.add(ERROR, "catalog-unsigned", cat_rel, None,
                    "not signed: Windows 7 treats the package as unsigned and x64 refuses it",
                    "use the signed catalog shipped by virtio-win, or "
                    f"{col.policy.vocabulary.fix('signing.policy', 'test')} and test-sign it")
        return
    _check_trusted(col, cat_rel, primary.certificate, "catalog-untrusted-signer", "signed")
    broken = primary.check.problem if Verdict.INVALID in (primary.check.signature, primary.check.chain) else None
    _signature_verdict(col, "catalog", cat_rel, "the signature", broken, primary.check,
                       "Windows treats the package as unsigned")
    others = [s.digest_algorithm for s in cat.signers[1:]]
    if primary.digest_algorithm != "sha1":
        extra = (f" (its nested {', '.join(others)} signature is not what Windows 7 checks)" if others else "")
        _sha2_finding(col, "catalog-sha256-only", cat_rel,
                      f"signed with {primary.digest_algorithm} only{extra}: Windows 7 without KB3033929 "
                      "and Windows 7 Setup cannot verify it (Code 52, 'No signed device drivers were found')")
    elif primary.cert_hash_algorithm not in ("sha1", None):
        _sha2_finding(col, "catalog-sha256-chain", cat_rel,
                      f"the signature is SHA-1, but the signing certificate is signed with "
                      f"{primary.cert_hash_algorithm}: Windows 7 without KB3033929 and Windows 7 Setup cannot "
                      "verify the chain")
    if primary.content_digest_ok is False:
        col.add(ERROR, "catalog-tampered", cat_rel, None,
                "changed after signing: its signed message digest no longer matches the member list",
                f"use the unmodified {cat_rel} from virtio-win")
    # A timestamped signature stays valid after the certificate expires, and an
    # untimestamped one is judged by Windows at install time; neither is judged
    # against today's date here, so findings depend only on the inputs.
    col.facts["catalog"]["expiry"] = "covered by timestamp" if primary.timestamp else "not timestamped"
    if not primary.timestamp and primary.not_after is not None:
        col.add(INFO, "catalog-not-timestamped", cat_rel, None,
                f"the signature has no timestamp, so Windows accepts it only while signing certificate "
                f"{_cn(primary.subject)!r} is valid (until {primary.not_after:%Y-%m-%d})",
                "build again with a certificate valid at install time (make-test-cert --days)"
                if col.policy.trusted_signers else "use a timestamped catalog from virtio-win")


def _check_trusted(col: _Collector, rel: str, certificate: bytes | None, check_id: str, verb: str) -> None:
    """In a build that signs with its own certificate, that certificate is the only signer trusted."""
    trusted = col.policy.trusted_signers
    if not trusted:
        return
    thumb = thumbprint(certificate) if certificate else None
    if thumb not in trusted:
        who = _cn(x509.Certificate.load(certificate).subject.human_friendly) if certificate else "no certificate"
        col.add(ERROR, check_id, rel, None,
                f"{verb} by {who!r} ({thumb or 'no certificate'}), not by the test certificate this build signs with",
                "let the build re-sign the package (signing: in the spec)")


def _cn(subject: str | None) -> str:
    if not subject:
        return "unknown"
    m = re.search(r"Common Name: ([^;,]+(?:, Inc\.?)?)", subject)
    return m.group(1).strip() if m else subject


def _check_os(col: _Collector, cat_rel: str, cat: Catalog) -> None:
    want = col.arch.catalog_os
    os_attr = cat.os_attr
    if os_attr is None:
        col.add(WARNING, "catalog-no-os", cat_rel, None,
                f"no OS attribute, so nothing says the catalog was made for Windows 7 ({want})",
                "use the catalog Inf2Cat made for the w7 build")
        return
    tokens = [t.strip().upper() for t in os_attr.split(",")]
    if want.upper() not in tokens:
        col.add(WARNING, "catalog-os-mismatch", cat_rel, None,
                f"OS attribute is {os_attr!r}, which does not include {want} (Windows 7 {col.arch.value})",
                f"use the catalog from the virtio-win w7/{col.arch.value} folder")


def _member_of(cat: Catalog, algos: list[str], data: bytes, is_pe: bool) -> tuple[Member | None, str, bytes]:
    """Look a file up by hash, trying each member hash algorithm; return (member, algorithm, our hash)."""
    ours = b""
    for algo in algos:
        try:
            ours = authenticode_hash(data, algo) if is_pe else hashlib.new(algo, data).digest()
        except PeError:
            continue
        member = cat.find(ours)
        if member is not None:
            return member, algo, ours
    return None, algos[0], ours


def _check_members(col: _Collector, inf_rel: str, inf_data: bytes, cat_rel: str, cat: Catalog, refs: _Refs,
                   pe: dict[str, PeInfo | None]) -> None:
    algos = [a for a in cat.member_algorithms if a in hashlib.algorithms_available] or ["sha1"]
    matched: dict[str, str] = {}
    skip = (inf_rel.lower(), cat_rel.lower())
    others = [rel for rel in sorted(set(refs.present.values())) if rel.lower() not in skip]
    for rel in [inf_rel, *others]:
        data = inf_data if rel == inf_rel else col.read(rel)
        if data is None:
            continue
        is_pe = pe.get(rel) is not None
        member, algo, digest = _member_of(cat, algos, data, is_pe)
        if member is not None:
            matched[rel] = member.file or member.tag
        elif rel == inf_rel:
            col.add(ERROR, "catalog-missing-inf", rel, None,
                    f"flat {algo} {digest.hex()} is not in {cat_rel}: the INF was edited after signing or belongs "
                    "to another build, so Windows 7 treats the package as unsigned",
                    f"use the {inf_rel} and {cat_rel} shipped together in one virtio-win folder")
        else:
            col.add(ERROR, "catalog-missing-file", rel, None,
                    f"{'Authenticode PE' if is_pe else 'flat'} {algo} {digest.hex()} is not in {cat_rel}: the file "
                    "differs from the one that was signed, so Windows 7 treats the package as unsigned",
                    f"use the {rel} shipped with {cat_rel} in the same virtio-win folder")
    col.facts["catalog"]["matched"] = matched
