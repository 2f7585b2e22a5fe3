"""Check a driver package the way Windows 7 will look at it.

One staged package (one INF with its files, for one arch) is checked against the
device contract: [Version] fields, the models section NT 6.1 picks, PnP binding,
the service, referenced files, PE headers and the security catalog. Every
problem is a :class:`Finding` with a severity, the file (and INF line) and a fix.

``check_package`` never raises on bad input (binary junk, truncated DER, non-PE
.sys files): those become error findings. ``check_folder`` raises
:class:`UsageError` only when it cannot tell which arch or device a folder is for.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .catalog import Catalog, CatalogError, parse_catalog
from .devices import Contract, Device
from .errors import SpecError, UsageError, ValidationError
from .inf import AddService, Inf, Model, ModelsChoice, parse_inf
from .pe import PeError, PeInfo, authenticode_hash, pe_info
from .spec import Arch
from .tree import has_recipes, materialise

SEVERITIES = ("error", "warning", "info")
EXECUTABLE_EXTS = (".sys", ".dll", ".exe")
PE_EXTS = (".sys", ".dll")
VALID_SIGNATURES = ("$windows nt$", "$chicago$", "$windows 95$")
GENERIC_RANK = 7  # Windows ID list entries 7..11 (VEN&CC, VEN, CC): they match any device of the class
SHA1_FIX = ("use a SHA-1-signed Windows 7 build (virtio-win 0.1.173 or older, or 0.1.189 and newer), or set "
            "checks.allow_sha256_only: true if every target has KB3033929 and never loads it in Windows 7 Setup")


# --- Public model ------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One problem (or note) about one file of a package."""

    severity: str
    code: str
    file: str
    line: int | None
    message: str
    fix: str | None

    @property
    def where(self) -> str:
        """``file:line`` or ``file``."""
        return f"{self.file}:{self.line}" if self.line else self.file

    def render(self) -> str:
        """One line: severity, code, message and fix."""
        text = f"{self.severity}: [{self.code}] {self.message}"
        return f"{text}; fix: {self.fix}" if self.fix else text

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict for manifests."""
        return {"severity": self.severity, "code": self.code, "file": self.file, "line": self.line,
                "message": self.message, "fix": self.fix}


@dataclass(frozen=True)
class CheckPolicy:
    """What the spec tolerates.

    ``placeholder_catalogs``: "error" fails on the sample pack's placeholder
    catalogs and stand-in binaries; "allow" reports them as warnings.
    ``signing_policy``: "testsigning" downgrades unsigned catalogs and boot
    drivers to warnings (they must be test-signed before use); "none" and
    "production" require real signatures, since Windows 7 x64 enforces them.
    """

    allow_sha256_only: bool = False
    placeholder_catalogs: str = "error"
    signing_policy: str = "none"

    def __post_init__(self) -> None:
        if self.placeholder_catalogs not in ("error", "allow"):
            raise ValueError(f"placeholder_catalogs must be 'error' or 'allow', not {self.placeholder_catalogs!r}")
        if self.signing_policy not in ("none", "testsigning", "production"):
            raise ValueError(f"signing_policy must be none, testsigning or production, not {self.signing_policy!r}")

    @classmethod
    def from_spec(cls, spec: Any) -> CheckPolicy:
        """Build the policy from a :class:`pipeline.spec.Spec` (its checks and signing policy)."""
        return cls(allow_sha256_only=spec.checks.allow_sha256_only,
                   placeholder_catalogs=spec.checks.placeholder_catalogs,
                   signing_policy=spec.signing_policy)


@dataclass(frozen=True)
class PackageReport:
    """All findings and facts for one package on one arch."""

    driver: str
    arch: str
    device: str
    findings: tuple[Finding, ...]
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def label(self) -> str:
        return f"{self.driver}/{self.arch}"

    def failing(self, warnings: str = "warn") -> tuple[Finding, ...]:
        """Findings that fail the build: errors, plus warnings when ``warnings == 'error'``."""
        return self.errors + (self.warnings if warnings == "error" else ())

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict for the stage manifest's validation section."""
        status = "error" if self.errors else "warning" if self.warnings else "ok"
        return {"driver": self.driver, "arch": self.arch, "device": self.device, "status": status,
                "errors": len(self.errors), "warnings": len(self.warnings),
                "findings": [f.to_json() for f in self.findings], "facts": self.facts}


# --- Package checks ----------------------------------------------------------------------


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

    def add(self, severity: str, code: str, file: str, line: int | None, message: str, fix: str | None) -> None:
        self.findings.append(Finding(severity, code, file, line, message, fix))

    def find(self, relpath: str) -> str | None:
        """Actual relative path of ``relpath`` in the package, matched case-insensitively."""
        return self.files.get(relpath.replace("\\", "/").strip("/").lower())

    def read(self, relpath: str) -> bytes | None:
        path = self.pkg_dir / relpath
        try:
            if path.stat().st_size > MAX_READ:
                # Drivers are a few MB; reading a huge file whole would break flat memory.
                self.add("error", "file-too-large", relpath, None,
                         f"{relpath} is {path.stat().st_size} bytes, too large for a driver package file "
                         f"(limit {MAX_READ // 2**20} MiB)", "remove it from the package")
                return None
            return path.read_bytes()
        except OSError as exc:
            self.add("error", "file-unreadable", relpath, None, f"{relpath} cannot be read ({exc.strerror})",
                     "check the file's permissions")
            return None


def _index(pkg_dir: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(pkg_dir, followlinks=False):
        dirnames.sort()
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
                  driver: str | None = None) -> PackageReport:
    """Check one package folder (an INF and its files) for Windows 7 on ``arch``."""
    col = _Collector(pkg_dir, arch, device, policy)
    driver = driver or pkg_dir.name
    inf_rel = _pick_inf(col)
    if inf_rel is not None:
        _check_with_inf(col, inf_rel)
    return PackageReport(driver=driver, arch=arch.value, device=device.name,
                         findings=tuple(_sorted(col.findings)), facts=col.facts)


def _sorted(findings: list[Finding]) -> list[Finding]:
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: (order.get(f.severity, 9), f.file.lower(), f.line or 0))


def _pick_inf(col: _Collector) -> str | None:
    infs = sorted(rel for low, rel in col.files.items() if "/" not in low and low.endswith(".inf"))
    if not infs:
        col.add("error", "package-no-inf", ".", None,
                f"{col.pkg_dir.name}/ has no .inf file, so Windows 7 has nothing to install",
                f"copy {col.device.inf} and its files from the virtio-win w7/{col.arch.value} folder")
        return None
    preferred = [r for r in infs if r.lower() == col.device.inf.lower()]
    chosen = preferred[0] if preferred else infs[0]
    if len(infs) > 1:
        col.add("warning", "package-multiple-infs", chosen, None,
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
        col.add("error", "inf-no-version", name, None, f"{name} has no [Version] section: Windows rejects the INF",
                "use the INF shipped by virtio-win; it starts with [Version]")
        return
    sig = inf.version_value("Signature")
    if sig is None:
        col.add("error", "inf-bad-signature", name, vline, f"{name}:{vline}: [Version] has no Signature",
                'add Signature="$Windows NT$"')
    elif sig.value.lower() not in VALID_SIGNATURES:
        col.add("error", "inf-bad-signature", name, sig.lineno,
                f"{name}:{sig.lineno}: Signature {sig.value!r} is not $Windows NT$ or $Chicago$",
                'set Signature="$Windows NT$"')
    dev = col.device
    cls = inf.version_value("Class")
    guid = inf.version_value("ClassGuid")
    col.facts["class"] = cls.value if cls else None
    if cls is None or guid is None:
        missing = " and ".join(k for k, v in (("Class", cls), ("ClassGuid", guid)) if v is None)
        col.add("error", "inf-no-class", name, vline, f"{name}:{vline}: [Version] has no {missing}",
                f"add Class={dev.setup_class} and ClassGuid={dev.class_guid}")
    if cls is not None and cls.value.lower() != dev.setup_class.lower():
        col.add("error", "inf-class-mismatch", name, cls.lineno,
                f"{name}:{cls.lineno}: Class={cls.value}, but a {dev.name} driver installs in setup class "
                f"{dev.setup_class}",
                f"use the {dev.service} package for {dev.name}, or fix the contract's setup_class")
    if guid is not None and _norm_guid(guid.value) != _norm_guid(dev.class_guid):
        col.add("error", "inf-class-mismatch", name, guid.lineno,
                f"{name}:{guid.lineno}: ClassGuid={guid.value}, but setup class {dev.setup_class} is {dev.class_guid}",
                f"use the {dev.service} package for {dev.name}")
    ver = inf.version_value("DriverVer")
    if ver is None:
        col.add("error", "inf-no-driverver", name, vline,
                f"{name}:{vline}: [Version] has no DriverVer; Windows 7 will not stage the package",
                "add DriverVer = mm/dd/yyyy,w.x.y.z (the INF was probably hand-edited)")
    else:
        col.facts["driver_ver"] = ",".join(ver.values)
        problem = _driver_ver_problem(ver.values)
        if problem:
            col.add("error", "inf-bad-driverver", name, ver.lineno, f"{name}:{ver.lineno}: DriverVer {problem}",
                    "write DriverVer = mm/dd/yyyy,w.x.y.z")
        elif _major(ver.values) in (62, 63) or _major(ver.values) >= 100:
            col.add("info", "inf-driverver-os", name, ver.lineno,
                    f"{name}:{ver.lineno}: DriverVer {ver.values[1]} looks like a Windows 8/10 build "
                    "(Windows 7 builds use 61.x)", "check that this package comes from the w7 folder")


def _at(name: str, line: int | None) -> str:
    """``file:line`` for messages (just ``file`` when the line is unknown)."""
    return f"{name}:{line}" if line else name


def _name_line(reason: str, name: str, line: int | None) -> str:
    """Put the line number on a reason that starts with the file name ("x.inf only has" -> "x.inf:20 only has")."""
    if line and reason.startswith(name + " "):
        return f"{name}:{line}{reason[len(name):]}"
    return reason


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
        col.add("error", "inf-no-catalogfile", name, inf.section_line("Version"),
                f"{_at(name, inf.section_line('Version'))}: [Version] has no CatalogFile: Windows 7 treats the "
                "package as unsigned "
                "(x64 refuses to load it)", f"add CatalogFile={Path(name).stem}.cat and ship the signed catalog")
        return None
    col.facts["catalog_file"] = line.value
    found = col.find(line.value)
    if found is None:
        col.add("error", "catalog-missing", name, line.lineno,
                f"{line.value} is missing: {name}:{line.lineno} names it as CatalogFile",
                f"copy {line.value} from the same virtio-win folder as {name}")
    return found


# --- Models, binding, install sections, services -----------------------------------------


@dataclass
class _Refs:
    """Files the INF references, lower-case name -> (name, where from, INF line)."""

    inf: str
    files: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    boot_binaries: set[str] = field(default_factory=set)
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
        col.add("error", "inf-no-win7-models", inf.name, sel.lineno,
                f"{_name_line(sel.reason or '', inf.name, sel.lineno)} "
                f"(Windows 7 {col.arch.value} looks for NT{arch} decorations up to 6.1)",
                f"use the INF from the virtio-win w7/{col.arch.value} folder")
        return refs
    usable: list[ModelsChoice] = []
    for choice in sel.chosen:
        if not choice.exists:
            col.add("error", "inf-models-section-missing", inf.name, choice.manufacturer.lineno,
                    f"{inf.name}:{choice.manufacturer.lineno}: [Manufacturer] points Windows 7 {col.arch.value} "
                    f"to [{choice.section}], which does not exist", f"add [{choice.section}] or fix the decoration")
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


def _check_binding(col: _Collector, inf: Inf, usable: list[ModelsChoice]) -> set[str]:
    """Match the contract device's PCI IDs; return the install sections of the best matches."""
    dev = col.device
    matches: list[dict[str, Any]] = []
    installs: set[str] = set()
    models = [m for c in usable for m in c.models]
    section_names = ", ".join(f"[{c.section}]" for c in usable) or "(no models section)"
    for sub in dev.subsystems:
        windows_ids = [i.upper() for i in dev.hardware_ids(sub)]
        best: tuple[int, int, str, Model] | None = None
        for model in models:
            for pos, inf_id in enumerate(model.ids):
                up = inf_id.upper()
                if up in windows_ids:
                    cand = (windows_ids.index(up), 0 if pos == 0 else 1, inf_id, model)
                    if best is None or cand[:2] < best[:2]:
                        best = cand
        label = f"{dev.name} ({sub.name})" if len(dev.subsystems) > 1 else dev.name
        if best is None:
            if usable:
                col.add("error", "binding-no-match", inf.name, usable[0].manufacturer.lineno,
                        f"{_at(inf.name, usable[0].manufacturer.lineno)}: {section_names} lists none of the IDs "
                        f"Windows 7 reports for {label} "
                        f"({windows_ids[0]}, ..., {windows_ids[3]}){_legacy_note(dev, models)}",
                        f"use a virtio-win build whose INF lists {windows_ids[3]} (0.1.149 or newer)")
            continue
        rank, _field, inf_id, model = best
        installs.add(model.install)
        matches.append({"subsystem": sub.name, "hwid": inf_id, "rank": rank + 1, "line": model.lineno,
                        "install": model.install})
        if rank + 1 >= GENERIC_RANK:
            col.add("warning", "binding-generic", inf.name, model.lineno,
                    f"{inf.name}:{model.lineno}: {label} matches only the generic ID {inf_id} (rank {rank + 1} of "
                    f"{len(windows_ids)}), which every device of that vendor/class also reports",
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
        col.add("error" if primary else "warning", "inf-install-section-missing", name, lineno,
                f"{name}:{lineno}: install section [{install}] (or [{install}.NT{arch}], [{install}.NT]) "
                "does not exist",
                f"add [{install}] or fix the models line")
        return
    files, missing = inf.copy_files(section)
    co, co_files = inf.coinstallers(section)
    _, co_missing = inf.copy_files(f"{section}.CoInstallers")
    for ln in missing + co_missing:
        col.add("error", "inf-section-missing", name, ln.lineno,
                f"{name}:{ln.lineno}: CopyFiles names [{ln.value}], which does not exist",
                f"add [{ln.value}] listing the files to copy, or remove it from CopyFiles")
    for f in files + co_files:
        refs.add(f.name, f"[{f.section}]", f.lineno)
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
        line = inf.section_line(svc_section) or inf.section_line(section)
        col.add("error", "service-missing", name, line,
                f"{_at(name, line)}: [{svc_section}] has no AddService with flag 0x2, "
                "so Windows 7 installs no function driver",
                f"add AddService = {dev.service}, 0x00000002, <service-install-section> to [{svc_section}]")
        return
    svc = functional[0]
    col.facts["service"] = svc.name
    if not dev.names_service(svc.name):
        col.add("error" if dev.boot_critical else "warning", "service-name-mismatch", name, svc.lineno,
                f"{name}:{svc.lineno}: AddService names {svc.name!r}, but the contract's {dev.name} service is "
                f"{dev.service!r}" + (" (setup pre-seeds the boot disk under that name)" if dev.boot_critical else ""),
                f"set service: {svc.name} for {dev.name} in specs/devices.yaml, "
                f"or use a package whose AddService names {dev.service}")
    si = inf.service_install(svc.install_section)
    if not si.exists:
        col.add("error", "service-section-missing", name, svc.lineno,
                f"{name}:{svc.lineno}: AddService {svc.name} points to [{svc.install_section}], which does not exist",
                f"add [{svc.install_section}] with ServiceType, StartType, ErrorControl and ServiceBinary")
        return
    col.facts["start_type"] = si.start_type
    col.facts["service_binary"] = si.binary
    if not si.binary:
        col.add("error", "service-no-binary", name, si.lineno,
                f"{name}:{si.lineno}: [{si.section}] has no ServiceBinary, so the {svc.name} service has no driver",
                f"add ServiceBinary = %12%\\{svc.name}.sys")
    elif si.binary.lower() not in copied:
        col.add("warning", "service-binary-not-copied", name, si.binary_lineno,
                f"{name}:{si.binary_lineno}: ServiceBinary {si.binary} is not copied by [{section}] CopyFiles, "
                "so the service may point at a file that is never installed",
                f"add {si.binary} to a CopyFiles section of [{section}]")
    if dev.boot_critical:
        if si.binary:
            refs.boot_binaries.add(si.binary.lower())
        if si.start_type != 0:
            col.add("error", "service-not-boot-start", name, si.start_lineno or si.lineno,
                    f"{name}:{si.start_lineno or si.lineno}: {svc.name} StartType is {si.start_raw or 'missing'}, "
                    f"but the {dev.name} boot disk driver must be boot start (0) or Windows 7 cannot boot from it",
                    "set StartType = 0 (SERVICE_BOOT_START)")


# --- Files ---------------------------------------------------------------------------------


def _check_files(col: _Collector, inf: Inf, refs: _Refs, catalog_rel: str | None) -> None:
    name = inf.name
    sdf = inf.source_disks_files(col.arch.inf_arch)
    for entry in sdf.values():
        if not entry.disk_known:
            col.add("error", "inf-unknown-disk", name, entry.lineno,
                    f"{name}:{entry.lineno}: {entry.name} is on disk {entry.disk_id!r}, "
                    "which [SourceDisksNames] does not define", f"add {entry.disk_id} = ... to [SourceDisksNames]")
    for low, (fname, why, line) in refs.files.items():
        if low not in sdf:
            col.add("warning", "file-not-in-sourcedisks", name, line,
                    f"{name}:{line}: {fname} (from {why}) is not listed in [SourceDisksFiles], "
                    "so Windows 7 does not know where to copy it from", f"add {fname} = 1,, to [SourceDisksFiles]")
    for entry in sdf.values():
        # Driver store import copies every SourceDisksFiles entry, used or not.
        refs.add(entry.name, "[SourceDisksFiles]", entry.lineno)
    for low, (fname, why, line) in refs.files.items():
        sdf_entry = sdf.get(low)
        found = (col.find(sdf_entry.relpath) if sdf_entry is not None else None) or col.find(fname)
        if found is None:
            col.add("error", "file-missing", fname, None,
                    f"{fname} is missing from the package: {name}:{line} references it in {why}",
                    f"copy {fname} from the same virtio-win folder as {name}")
        else:
            refs.present[low] = found
    col.facts["files"] = sorted(refs.present.values())
    referenced = {v.lower() for v in refs.present.values()} | {name.lower()}
    if catalog_rel:
        referenced.add(catalog_rel.lower())
    for low, rel in sorted(col.files.items()):
        if low.endswith(".pdb"):
            col.add("info", "file-pdb", rel, None, f"{rel} is debug symbols; Windows 7 never needs .pdb files",
                    "leave .pdb files out of the media")
        elif low.endswith(EXECUTABLE_EXTS) and low not in referenced:
            col.add("warning", "file-unreferenced", rel, None,
                    f"{rel} is not referenced by {name}, so it is never installed (nor covered by its catalog)",
                    f"drop {rel} from the package, or use an INF that installs it")


# --- PE --------------------------------------------------------------------------------------


def _check_pe(col: _Collector, refs: _Refs) -> dict[str, PeInfo | None]:
    machine = col.arch.pe_machine
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
            col.add("error", "pe-invalid", rel, None, f"{rel} is not a valid PE image ({exc.message})",
                    f"replace {rel} with the file from the virtio-win w7/{col.arch.value} folder")
            continue
        out[rel] = info
        facts[rel] = info.to_json()
        if info.stand_in:
            _placeholder(col, "pe-stand-in", rel,
                         f"{rel} is a stand-in PE from the sample pack, not a working driver")
        if info.machine != machine:
            col.add("error", "pe-wrong-machine", rel, None,
                    f"{rel} is built for {info.machine_name} (Machine 0x{info.machine:x}), but this is the "
                    f"{col.arch.value} package (needs 0x{machine:x})",
                    f"take {rel} from the virtio-win w7/{col.arch.value} folder (wrong arch folder?)")
        if low.endswith(".sys") and info.subsystem != 1:
            col.add("error", "pe-not-native", rel, None,
                    f"{rel} has subsystem {info.subsystem_name}, not native: it is not a kernel driver",
                    f"replace {rel} with the real driver binary")
        if low.endswith(".sys") and not info.checksum_ok and not info.stand_in:
            col.add("warning", "pe-bad-checksum", rel, None,
                    f"{rel} has a wrong PE CheckSum (0x{info.checksum:x}): the file was modified after linking",
                    f"use the unmodified {rel} from virtio-win")
        if col.arch is Arch.AMD64 and Path(rel).name.lower() in refs.boot_binaries and not info.stand_in:
            _check_boot_signature(col, rel, info)
    col.facts["pe"] = facts
    return out


def _check_boot_signature(col: _Collector, rel: str, info: PeInfo) -> None:
    # x64 Windows 7 verifies boot-start drivers from their embedded signature; the
    # catalog is not available that early.
    if not info.has_signature:
        col.add("warning" if col.policy.signing_policy == "testsigning" else "error", "pe-boot-unsigned", rel, None,
                f"{rel} is a boot-start driver without an embedded signature: Windows 7 x64 will not load it at boot",
                f"use the embedded-signed {rel} from virtio-win (or test-sign it and enable testsigning)")
    elif info.signature_digest == "unreadable":
        col.add("error", "pe-bad-signature", rel, None,
                f"{rel} has an embedded signature that is not valid PKCS#7: Windows 7 x64 will not load it at boot",
                f"use the unmodified {rel} from virtio-win")
    elif info.signature_digest not in ("sha1", None):
        _sha2_finding(col, "pe-sha256-only", rel,
                      f"{rel}'s embedded signature uses {info.signature_digest} only: Windows 7 without KB3033929 "
                      "and Windows 7 Setup cannot verify it, so the boot disk driver does not load")


# --- Catalog -----------------------------------------------------------------------------


def _placeholder(col: _Collector, code: str, rel: str, what: str) -> None:
    if col.policy.placeholder_catalogs == "allow":
        col.add("warning", code, rel, None, f"{what}; allowed by checks.placeholder_catalogs: allow, "
                "but Windows 7 will not install this package", "build from a virtio-win source for real media")
    else:
        col.add("error", code, rel, None, f"{what}: Windows 7 will not install this package",
                "build from a virtio-win source, or set checks.placeholder_catalogs: allow for sample media")


def _sha2_finding(col: _Collector, code: str, rel: str, message: str) -> None:
    if col.policy.allow_sha256_only:
        col.add("info", code, rel, None, message + " (allowed by checks.allow_sha256_only)", None)
    else:
        col.add("error" if col.arch is Arch.AMD64 else "warning", code, rel, None, message, SHA1_FIX)


def _check_catalog(col: _Collector, inf_rel: str, inf_data: bytes, cat_rel: str, refs: _Refs,
                   pe: dict[str, PeInfo | None]) -> None:
    data = col.read(cat_rel)
    if data is None:
        return
    try:
        cat = parse_catalog(data, cat_rel)
    except CatalogError as exc:
        col.facts["catalog"] = {"valid": False}
        col.add("error", "catalog-invalid", cat_rel, None, exc.message, exc.hint)
        return
    col.facts["catalog"] = cat.to_json()
    if cat.placeholder:
        _placeholder(col, "catalog-placeholder", cat_rel,
                     f"{cat_rel} is the sample pack's placeholder catalog, not a signed catalog")
        return
    _check_signature(col, cat_rel, cat)
    _check_os(col, cat_rel, cat)
    _check_members(col, inf_rel, inf_data, cat_rel, cat, refs, pe)


def _check_signature(col: _Collector, cat_rel: str, cat: Catalog) -> None:
    primary = cat.primary
    if primary is None:
        if col.policy.signing_policy == "testsigning":
            col.add("warning", "catalog-unsigned", cat_rel, None,
                    f"{cat_rel} is not signed: test-sign it before installing (testsigning policy)",
                    f"osslsigncode sign -certs test.pem -key test.key -h sha1 -in {cat_rel} -out {cat_rel}")
        else:
            col.add("error", "catalog-unsigned", cat_rel, None,
                    f"{cat_rel} is not signed: Windows 7 treats the package as unsigned and x64 refuses it",
                    "use the signed catalog shipped by virtio-win, or set signing_policy: testsigning and test-sign it")
        return
    others = [s.digest_algorithm for s in cat.signers[1:]]
    if primary.digest_algorithm != "sha1":
        extra = (f" (its nested {', '.join(others)} signature is not what Windows 7 checks)" if others else "")
        _sha2_finding(col, "catalog-sha256-only", cat_rel,
                      f"{cat_rel} is signed with {primary.digest_algorithm} only{extra}: Windows 7 without KB3033929 "
                      "and Windows 7 Setup cannot verify it (Code 52, 'No signed device drivers were found')")
    elif primary.cert_hash_algorithm not in ("sha1", None):
        _sha2_finding(col, "catalog-sha256-chain", cat_rel,
                      f"{cat_rel} has a SHA-1 signature, but its signing certificate is signed with "
                      f"{primary.cert_hash_algorithm}: Windows 7 without KB3033929 and Windows 7 Setup cannot "
                      "verify the chain")
    if primary.content_digest_ok is False:
        col.add("error", "catalog-tampered", cat_rel, None,
                f"{cat_rel} was changed after signing: its signed message digest no longer matches the member list",
                f"use the unmodified {cat_rel} from virtio-win")
    subject = _cn(primary.subject)
    # A timestamped signature stays valid after the certificate expires, so its
    # validity is recorded as a fact, not judged against today's date: findings (and
    # the media manifests that carry them) must not change with the clock.
    col.facts["catalog"]["expiry"] = "covered by timestamp" if primary.timestamp else "not timestamped"
    if not primary.timestamp and primary.not_after is not None and primary.not_after < datetime.now(UTC):
        col.add("warning", "catalog-cert-expired", cat_rel, None,
                f"{cat_rel}: signing certificate {subject!r} expired on {primary.not_after:%Y-%m-%d} and the "
                "signature has no timestamp, so Windows may reject it",
                "use a timestamped catalog from virtio-win")


MAX_READ = 256 * 1024 * 1024


def _cn(subject: str | None) -> str:
    if not subject:
        return "unknown"
    m = re.search(r"Common Name: ([^;,]+(?:, Inc\.?)?)", subject)
    return m.group(1).strip() if m else subject


def _check_os(col: _Collector, cat_rel: str, cat: Catalog) -> None:
    want = col.arch.catalog_os
    os_attr = cat.os_attr
    if os_attr is None:
        col.add("warning", "catalog-no-os", cat_rel, None,
                f"{cat_rel} has no OS attribute, so nothing says it was made for Windows 7 ({want})",
                "use the catalog Inf2Cat made for the w7 build")
        return
    tokens = [t.strip().upper() for t in os_attr.split(",")]
    if want.upper() not in tokens:
        col.add("warning", "catalog-os-mismatch", cat_rel, None,
                f"{cat_rel} OS attribute is {os_attr!r}, which does not include {want} (Windows 7 {col.arch.value})",
                f"use the catalog from the virtio-win w7/{col.arch.value} folder")


def _check_members(col: _Collector, inf_rel: str, inf_data: bytes, cat_rel: str, cat: Catalog, refs: _Refs,
                   pe: dict[str, PeInfo | None]) -> None:
    algos = [a for a in cat.member_algorithms if a in hashlib.algorithms_available] or ["sha1"]
    matched: dict[str, str] = {}

    def lookup(flat: bytes, pe_data: bytes | None) -> tuple[Any, str]:
        for algo in algos:
            if pe_data is not None:
                try:
                    member = cat.find(authenticode_hash(pe_data, algo))
                except PeError:
                    member = None
                if member is not None:
                    return member, algo
            else:
                member = cat.find(hashlib.new(algo, flat).digest())
                if member is not None:
                    return member, algo
        return None, algos[0]

    member, algo = lookup(inf_data, None)
    if member is None:
        col.add("error", "catalog-missing-inf", inf_rel, None,
                f"{inf_rel} (flat {algo} {hashlib.new(algo, inf_data).hexdigest()}) is not in {cat_rel}: the INF was "
                "edited after signing or belongs to another build, so Windows 7 treats the package as unsigned",
                f"use the {inf_rel} and {cat_rel} shipped together in one virtio-win folder")
    else:
        matched[inf_rel] = member.file or member.tag
    for rel in sorted(set(refs.present.values())):
        if rel.lower() in (inf_rel.lower(), cat_rel.lower()):
            continue
        data = col.read(rel)
        if data is None:
            continue
        is_pe = pe.get(rel) is not None
        member, algo = lookup(data, data if is_pe else None)
        if member is None:
            kind = "Authenticode PE" if is_pe else "flat"
            digest = (authenticode_hash(data, algo) if is_pe else hashlib.new(algo, data).digest()).hex()
            col.add("error", "catalog-missing-file", rel, None,
                    f"{rel} ({kind} {algo} {digest}) is not in {cat_rel}: the file differs from the one that was "
                    "signed, so Windows 7 treats the package as unsigned",
                    f"use the {rel} shipped with {cat_rel} in the same virtio-win folder")
        else:
            matched[rel] = member.file or member.tag
    col.facts["catalog"]["matched"] = matched


# --- Folders -------------------------------------------------------------------------------

_ARCH_NAMES = {"x86": Arch.X86, "i386": Arch.X86, "amd64": Arch.AMD64, "x64": Arch.AMD64}
_MAX_DEPTH = 6


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


def check_folder(path: Path, contract: Contract, policy: CheckPolicy, arch: Arch | None = None,
                 device: str | None = None) -> list[PackageReport]:
    """Check one package folder, or every package under a pack root (``win7/<arch>/<driver>/``).

    Arch comes from ``arch``, else folder names (x86/i386, amd64/x64), else the
    .sys files' PE Machine. The device comes from ``device``, else the INF's PCI
    IDs / AddService name. With several packages, ``arch`` and ``device`` also
    select which ones are checked.
    """
    if not path.is_dir():
        raise UsageError(f"{path}: not a directory", "pass a driver package folder or a pack root")
    if has_recipes(path):
        # Check what staging would see: stand-in recipes expanded, in a scratch copy
        # that keeps the last folder names (they tell the arch).
        with tempfile.TemporaryDirectory(prefix="aero-check-") as tmp:
            copy = Path(tmp).joinpath(*path.resolve().parts[-4:])
            materialise(path, copy)
            return _check_folder(copy, contract, policy, arch, device)
    return _check_folder(path, contract, policy, arch, device)


def _check_folder(path: Path, contract: Contract, policy: CheckPolicy, arch: Arch | None,
                  device: str | None) -> list[PackageReport]:
    forced: Device | None = None
    if device is not None:
        try:
            forced = contract.device(device)
        except SpecError as exc:
            raise UsageError(exc.message, exc.hint) from None
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
        driver = pkg.name if pkg.name.lower() not in _ARCH_NAMES and not _looks_like_os(pkg.name) else (
            Path(inf.name).stem.lower() if inf is not None else dev.service)
        reports.append(check_package(pkg, pkg_arch, dev, policy, driver=driver))
    if not reports:
        wanted = (f"arch {arch.value}" if arch else "", f"device {device}" if device else "")
        what = " and ".join(x for x in wanted if x)
        raise UsageError(f"{path}: no package for {what}", "drop --arch/--device or point at another folder")
    return reports


def _looks_like_os(name: str) -> bool:
    return bool(re.fullmatch(r"(w\d+(\.\d)?|2k\d+(r2)?|xp|win7|vista)", name.lower()))


def _read_inf(pkg: Path, forced: Device | None) -> Inf | None:
    infs = sorted(p for p in pkg.iterdir() if p.is_file() and p.suffix.lower() == ".inf")
    if forced is not None:
        infs = [p for p in infs if p.name.lower() == forced.inf.lower()] or infs
    try:
        return parse_inf(infs[0].read_bytes(), infs[0].name) if infs else None
    except OSError:
        return None


# --- Output --------------------------------------------------------------------------------


def format_table(reports: Iterable[PackageReport]) -> str:
    """Plain-text table for stderr: one row per finding, a summary row per clean package."""
    rows: list[tuple[str, str, str, str, str | None]] = []
    for r in reports:
        for f in r.findings:
            rows.append((f.severity, r.label, f.where, f.message, f.fix))
        if not r.errors and not r.warnings:
            rows.append(("ok", r.label, str(r.facts.get("inf", "-")), _summary(r), None))
    if not rows:
        return "no driver packages checked\n"
    w0 = max(len("severity"), *(len(r[0]) for r in rows))
    w1 = max(len("package"), *(len(r[1]) for r in rows))
    w2 = min(40, max(len("file:line"), *(len(r[2]) for r in rows)))
    out = [f"{'severity':<{w0}}  {'package':<{w1}}  {'file:line':<{w2}}  message"]
    for sev, pkg, where, msg, fix in rows:
        out.append(f"{sev:<{w0}}  {pkg:<{w1}}  {where:<{w2}}  {msg}")
        if fix:
            out.append(f"{'':<{w0}}  {'':<{w1}}  {'':<{w2}}  fix: {fix}")
    return "\n".join(out) + "\n"


def _summary(r: PackageReport) -> str:
    parts = [f"{r.device} ok"]
    if r.facts.get("driver_ver"):
        parts.append(f"DriverVer {r.facts['driver_ver']}")
    if r.facts.get("models_sections"):
        parts.append(", ".join(f"[{s}]" for s in r.facts["models_sections"]))
    for b in r.facts.get("binding", [])[:1]:
        parts.append(f"binds {b['hwid']} (rank {b['rank']})")
    cat = r.facts.get("catalog") or {}
    if cat.get("digest_algorithms"):
        parts.append(f"catalog {'+'.join(cat['digest_algorithms'])}")
    infos = [f for f in r.findings if f.severity == "info"]
    if infos:
        parts.append(f"{len(infos)} note(s)")
    return "; ".join(parts)


def gate(reports: Iterable[PackageReport], warnings: str = "warn") -> None:
    """Raise :class:`ValidationError` listing every failing finding (errors; warnings if ``warnings='error'``)."""
    lines = []
    for r in reports:
        for f in r.failing(warnings):
            # Most messages already start with their file:line; don't say it twice.
            loc = "" if f.message.startswith(f.file) else f"{f.where}: "
            text = f"{r.label}: {loc}{f.message}"
            lines.append(f"{text}; fix: {f.fix}" if f.fix else text)
    if lines:
        raise ValidationError("\n".join(lines))
