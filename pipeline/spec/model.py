"""Build specs (``specs/<name>.yaml``): loading, validation and the frozen model.

A spec is checked against ``specs/schema.json`` and then against the device
contract; every problem is reported with its file, line, column and JSON pointer.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from .devices import Contract, Device, load_contract
from .errors import SpecError
from .yamldoc import Doc, load_doc, raise_problems, schema_problems

CONTRACT_FILE = "devices.yaml"
NON_SPEC_FILES = {CONTRACT_FILE}


class Arch(StrEnum):
    """A Windows 7 architecture, with the knowledge that hangs off it."""

    X86 = "x86"
    AMD64 = "amd64"

    @property
    def folder_aliases(self) -> tuple[str, ...]:
        """Folder names that hold this arch in upstream trees, preferred first."""
        return ("x86", "i386") if self is Arch.X86 else ("amd64", "x64")

    @property
    def pe_machine(self) -> int:
        """IMAGE_FILE_HEADER.Machine of binaries built for this arch."""
        return 0x14C if self is Arch.X86 else 0x8664

    @property
    def inf_arch(self) -> str:
        """The INF decoration architecture (NTx86 / NTamd64)."""
        return "x86" if self is Arch.X86 else "amd64"

    @property
    def catalog_os(self) -> str:
        """The catalog OS attribute token for Windows 7 on this arch."""
        return "7X86" if self is Arch.X86 else "7X64"


ALL_ARCHES = (Arch.X86, Arch.AMD64)
DEFAULT_OS_DIRS = ("w7",)


@dataclass(frozen=True)
class Context:
    """Where a project keeps its specs, builds, outputs and download cache."""

    root: Path
    cache_override: Path | None = None

    @property
    def specs_dir(self) -> Path:
        return self.root / "specs"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def dist_dir(self) -> Path:
        return self.root / "dist"

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

    kind: str
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

    def excludes(self, staged_path: str) -> bool:
        """Whether ``staged_path`` (``win7/<arch>/<driver>/<file>``) is left out by ``exclude``."""
        low = staged_path.lower()
        return any(fnmatch.fnmatchcase(low, pat.lower()) for pat in self.exclude)

    @property
    def is_iso(self) -> bool:
        return self.kind == "virtio-win-iso"

    def os_dirs_for(self, arch: Arch) -> tuple[str, ...]:
        """OS folders to try for ``arch``, preferred first."""
        return self.os_dirs.get(arch, DEFAULT_OS_DIRS)


@dataclass(frozen=True)
class DriversIsoOut:
    filename: str = "aero-virtio-win7-drivers.iso"
    volume_label: str = "AERO_VIRTIO"


@dataclass(frozen=True)
class GuestToolsOut:
    iso_filename: str = "aero-guest-tools.iso"
    zip_filename: str = "aero-guest-tools.zip"
    volume_label: str = "AERO_GUEST_TOOLS"
    version: str = "0.0.0"
    build_id: str = "local"
    signing_policy: str = "none"
    trust_publisher: bool = True
    certs: tuple[Path, ...] = ()
    certs_raw: tuple[str, ...] = ()


@dataclass(frozen=True)
class Checks:
    warnings: str = "warn"
    allow_sha256_only: bool = False
    placeholder_catalogs: str = "error"


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
    optional_policy: str
    checks: Checks
    drivers_iso: DriversIsoOut
    guest_tools: GuestToolsOut
    cache_dir: Path | None
    contract: Contract

    def driver(self, name: str) -> DriverReq:
        for d in self.drivers:
            if d.name == name:
                return d
        raise KeyError(name)

    @property
    def signing_policy(self) -> str:
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
        source = {"kind": src.kind, "path": src.path_raw, "url": src.url, "sha256": src.sha256, "size": src.size}
        selection = {
            "source": source,
            "os_dirs": {a.value: list(v) for a, v in sorted(src.os_dirs.items())},
            "arches": [a.value for a in self.arches],
            "drivers": [[d.name, d.device.name, d.required] for d in self.drivers],
            "optional": self.optional_policy,
            "exclude": list(src.exclude),
        }
        slices: dict[str, dict[str, Any]] = {
            "fetch": {"source": source},
            "extract": {**selection, "license_file": src.license_file_raw},
            "stage": {
                **selection,
                "expect": src.expect,
                "checks": [self.checks.warnings, self.checks.allow_sha256_only, self.checks.placeholder_catalogs],
                "signing_policy": self.signing_policy,
                "contract": self._contract_slice(),
            },
            "notices": {"source": source, "license_file": src.license_file_raw, "name": self.name},
            "drivers_iso": {"name": self.name, "description": self.description,
                            "out": [self.drivers_iso.filename, self.drivers_iso.volume_label],
                            "contract": [self.contract.name, self.contract.version]},
            "verify": {"out": [self.drivers_iso.filename, self.drivers_iso.volume_label],
                       "arches": [a.value for a in self.arches],
                       "required": [d.name for d in self.drivers if d.required]},
            "guest_tools": {"name": self.name, "out": repr(self.guest_tools),
                            "contract": self._contract_slice()},
        }
        return slices[stage]


def _load_contract_for(specs_dir: Path) -> Contract:
    path = specs_dir / CONTRACT_FILE
    if not path.exists():
        raise SpecError(f"{path}: the device contract is missing", "restore specs/devices.yaml from the repository")
    return load_contract(path, _display(path, specs_dir.parent))


def _display(path: Path, root: Path) -> str:
    try:
        return path.absolute().relative_to(root.absolute()).as_posix()
    except ValueError:
        return str(path)


def load_spec(path: Path, ctx: Context, contract: Contract | None = None) -> Spec:
    """Load one spec file, raising :class:`SpecError` with every problem found."""
    return _validate(load_doc(path, _display(path, ctx.root)), ctx, contract)


def spec_from_mapping(data: dict[str, Any], ctx: Context, display: str, contract: Contract | None = None) -> Spec:
    """Build a spec from a mapping (e.g. command-line options), with the same checks as a file."""
    return _validate(Doc(path=Path(display), display=display, data=data, marks={}), ctx, contract)


def _validate(doc: Doc, ctx: Context, contract: Contract | None) -> Spec:
    display = doc.display
    if not isinstance(doc.data, dict):
        raise SpecError(f"{display}:1:1: /: expected a mapping of keys", "start from specs/sample.yaml")
    raise_problems(schema_problems(doc, ctx.specs_dir / "schema.json"))
    contract = contract or _load_contract_for(ctx.specs_dir)
    return _build(doc, ctx, contract)


def _build(doc: Doc, ctx: Context, contract: Contract) -> Spec:
    data = doc.data
    problems: list[str] = []
    stem = doc.path.stem
    name = data.get("name", stem)
    if "name" not in data and not _valid_name(stem):
        problems.append(f"{doc.where('/')}: the file name {stem!r} is not a valid spec name; "
                        "fix: rename the file or set name: to lower-case letters, digits, '.', '_' or '-'")

    drivers: list[DriverReq] = []
    seen: dict[str, int] = {}
    for i, d in enumerate(data["drivers"]):
        if d["name"] in seen:
            problems.append(f"{doc.where(f'/drivers/{i}/name')}: driver {d['name']!r} is listed twice "
                            f"(also /drivers/{seen[d['name']]}); fix: keep one entry")
        seen[d["name"]] = i
        dev = contract.devices.get(d["device"])
        if dev is None:
            close = difflib.get_close_matches(d["device"], list(contract.devices), n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(sorted(contract.devices))}"
            problems.append(f"{doc.where(f'/drivers/{i}/device')}: unknown device {d['device']!r} "
                            f"(not in specs/{CONTRACT_FILE}); fix: {fix}")
            continue
        drivers.append(DriverReq(name=d["name"], device=dev, required=bool(d.get("required", False))))
    if drivers and not any(d.required for d in drivers):
        problems.append(f"{doc.where('/drivers')}: no driver is required; fix: mark at least viostor required: true")

    target = data.get("target", {})
    arches = tuple(Arch(a) for a in target.get("arches", [a.value for a in ALL_ARCHES]))
    arches = tuple(a for a in ALL_ARCHES if a in arches)

    s = data["source"]
    os_dirs = {Arch(a): tuple(v) for a, v in s.get("os_dirs", {}).items()}
    if "2k8R2" in os_dirs.get(Arch.X86, ()):
        problems.append(f"{doc.where('/source/os_dirs/x86')}: 2k8R2 has no x86 build (Server 2008 R2 is 64-bit only); "
                        "fix: list 2k8R2 under amd64 only")
    expect = dict(s.get("expect", {}))
    for key in expect:
        arch = key.split("/")[1]
        drv = key.split("/")[2]
        if drv not in seen:
            problems.append(f"{doc.where('/source/expect/' + key.replace('/', '~1'))}: pin for driver {drv!r}, "
                            "which is not in drivers; fix: remove the pin or add the driver")
        if Arch(arch) not in arches:
            problems.append(f"{doc.where('/source/expect/' + key.replace('/', '~1'))}: pin for arch {arch!r}, "
                            "which is not in target.arches; fix: remove the pin or add the arch")
    source = Source(
        kind=s["kind"],
        path=ctx.resolve(s["path"]) if "path" in s else None,
        path_raw=s.get("path"),
        url=s.get("url"),
        sha256=s.get("sha256"),
        size=s.get("size"),
        os_dirs=os_dirs,
        expect=expect,
        license_file=ctx.resolve(s["license_file"]) if "license_file" in s else None,
        license_file_raw=s.get("license_file"),
        exclude=tuple(s.get("exclude", ())),
    )

    outputs = data.get("outputs", {})
    gt = dict(outputs.get("guest_tools", {}))
    certs_raw = tuple(gt.pop("certs", ()))
    guest_tools = GuestToolsOut(**gt, certs=tuple(ctx.resolve(c) for c in certs_raw), certs_raw=certs_raw)
    checks = Checks(**data.get("checks", {}))
    names = {"outputs/drivers_iso/filename": outputs.get("drivers_iso", {}).get("filename", DriversIsoOut.filename),
             "outputs/guest_tools/iso_filename": guest_tools.iso_filename,
             "outputs/guest_tools/zip_filename": guest_tools.zip_filename}
    taken: dict[str, str] = {"manifest.json": "the Guest Tools manifest"}
    for where, fname in names.items():
        key = fname.lower()
        if key in taken or key.endswith(".verify.json"):
            problems.append(f"{doc.where('/' + where)}: {fname!r} is already used by {taken.get(key, 'a report')}; "
                            "fix: choose a different file name")
        taken[key] = "/" + where
    raise_problems(problems)
    return Spec(
        name=name,
        file=doc.path,
        display=doc.display,
        description=data.get("description", ""),
        default=bool(data.get("default", False)),
        source=source,
        arches=arches,
        drivers=tuple(drivers),
        optional_policy=data.get("optional", "best-effort"),
        checks=checks,
        drivers_iso=DriversIsoOut(**outputs.get("drivers_iso", {})),
        guest_tools=guest_tools,
        cache_dir=ctx.resolve(data["cache_dir"]) if "cache_dir" in data else None,
        contract=contract,
    )


def _valid_name(name: str) -> bool:
    import re

    return bool(re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name)) and len(name) <= 64


def spec_files(ctx: Context) -> list[Path]:
    """Return the spec files in ``specs/``, sorted (the contract file is not a spec)."""
    if not ctx.specs_dir.is_dir():
        return []
    return sorted(p for p in ctx.specs_dir.glob("*.yaml") if p.name not in NON_SPEC_FILES)


def load_specs(ctx: Context) -> list[Spec]:
    """Load every spec in ``specs/``; report all problems of all files at once."""
    problems: list[str] = []
    specs: list[Spec] = []
    contract = _load_contract_for(ctx.specs_dir)
    for path in spec_files(ctx):
        try:
            specs.append(load_spec(path, ctx, contract))
        except SpecError as exc:
            problems.append(exc.message)
    by_name: dict[str, Spec] = {}
    for spec in specs:
        other = by_name.get(spec.name)
        if other is not None:
            problems.append(f"{spec.display}: spec name {spec.name!r} is already used by {other.display}; "
                            "fix: give one of them a different name: key")
        by_name[spec.name] = spec
    raise_problems(problems)
    return specs
