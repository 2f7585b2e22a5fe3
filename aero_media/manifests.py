"""Every record one stage writes and another reads, as frozen dataclasses.

Each manifest has ``to_json`` (the exact JSON written) and ``from_json`` (which
checks that the data is this kind of manifest at this schema version, and fails
with one line naming the file and the fix when it is foreign or older). No stage
reads another stage's output by string key: they go through these types.

The stage, notices, fetch and provenance records live under ``build/``; the drivers
ISO and Guest Tools manifests are written onto the media; the verify reports go to
``dist/`` beside the media they describe.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from .errors import BuildStateError
from .spec.types import Arch, SigningPolicy, SourceKind
from .win7.findings import PackageReport, summarise

T = TypeVar("T")
Json = dict[str, Any]


def _check(data: Any, where: str, what: str, marker: tuple[str, Any] | None, schema: int) -> Json:
    """Refuse data that is not ``what`` at ``schema``; return it as a mapping."""
    if not isinstance(data, dict):
        raise BuildStateError(f"{where}: not a {what} (not a JSON object)", "delete it and run the build again")
    if marker is not None and data.get(marker[0]) != marker[1]:
        raise BuildStateError(f"{where}: not a {what} written by aero-virtio-media "
                              f"({marker[0]} is {data.get(marker[0])!r}, expected {marker[1]!r})",
                              "delete it and run the build again")
    version = data.get("schema_version")
    if version != schema:
        older = isinstance(version, int) and version < schema
        raise BuildStateError(f"{where}: {what} schema_version {version!r}, this version of the tool reads "
                              f"{schema}" + (" (written by an older version)" if older else ""),
                              "delete it and run the build again (doit rebuilds it)")
    return data


def read_manifest(path: Path, parse: Callable[[Any, str], T], where: str | None = None) -> T:
    """Read a JSON manifest file with ``parse`` (a ``from_json``); malformed files are BuildStateError."""
    shown = where or path.as_posix()
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise BuildStateError(f"{shown}: missing",
                              "run the build again (the stage that writes it runs first)") from None
    except (OSError, ValueError) as exc:
        raise BuildStateError(f"{shown}: unreadable ({exc})", "delete it and run the build again") from None
    try:
        return parse(data, shown)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BuildStateError(f"{shown}: malformed ({type(exc).__name__}: {exc})",
                              "delete it and run the build again") from None


# --- Records shared by several manifests ----------------------------------------------------------


@dataclass(frozen=True)
class FileRecord:
    """A file on a medium or in a build folder: path, sha256, size."""

    path: str
    sha256: str
    size: int

    def to_json(self) -> Json:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, d: Json) -> FileRecord:
        return cls(str(d["path"]), str(d["sha256"]), int(d["size"]))

    @property
    def identity(self) -> tuple[str, int]:
        """(sha256, size): what two copies of a file must agree on."""
        return self.sha256, self.size


@dataclass(frozen=True)
class StagedFile:
    """A staged file (``win7/<arch>/<driver>/<file>``) and the path it came from in the source tree."""

    path: str
    sha256: str
    size: int
    source_path: str

    @property
    def record(self) -> FileRecord:
        return FileRecord(self.path, self.sha256, self.size)

    def to_json(self) -> Json:
        return {**self.record.to_json(), "source_path": self.source_path}

    @classmethod
    def from_json(cls, d: Json) -> StagedFile:
        return cls(str(d["path"]), str(d["sha256"]), int(d["size"]), str(d["source_path"]))


@dataclass(frozen=True)
class MissingOptional:
    """An optional driver left out, and why."""

    driver: str
    arch: Arch | None
    reason: str

    def to_json(self) -> Json:
        return {"driver": self.driver, "arch": self.arch.value if self.arch else None, "reason": self.reason}

    @classmethod
    def from_json(cls, d: Json) -> MissingOptional:
        return cls(d["driver"], Arch(d["arch"]) if d["arch"] else None, d["reason"])


@dataclass(frozen=True)
class ValidationSummary:
    """How many packages were checked and how many findings of each severity they had."""

    packages: int
    error: int
    warning: int
    info: int

    def to_json(self) -> Json:
        return {"packages": self.packages, "error": self.error, "warning": self.warning, "info": self.info}

    @classmethod
    def from_json(cls, d: Json) -> ValidationSummary:
        return cls(int(d["packages"]), int(d["error"]), int(d["warning"]), int(d["info"]))

    @classmethod
    def of(cls, reports: Iterable[PackageReport]) -> ValidationSummary:
        return cls.from_json(summarise(reports))


# --- fetch ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchRecord:
    """build/<spec>/fetch.json: the ISO fetch located (or downloaded), and what its digest must be.

    ``sha256`` is known when the bytes were hashed on the way in (a download) or
    earlier (the hash memo); otherwise the prove stage computes it, in the
    background while extraction and staging run. ``stat`` identifies the very file,
    so anything that reads it later can tell whether it changed since.
    """

    path: str
    size: int
    stat: tuple[int, ...]
    origin: str
    url: str | None
    sha256: str | None
    expected: str | None
    """What the digest must be: the spec's whole-ISO pin, or the digest recorded when it was downloaded."""

    KIND = "fetch"
    SCHEMA = 2

    def to_json(self) -> Json:
        return {"manifest": self.KIND, "schema_version": self.SCHEMA, "path": self.path, "size": self.size,
                "stat": list(self.stat), "origin": self.origin, "url": self.url, "sha256": self.sha256,
                "expected": self.expected}

    @classmethod
    def from_json(cls, data: Any, where: str) -> FetchRecord:
        d = _check(data, where, "fetch record", ("manifest", cls.KIND), cls.SCHEMA)
        return cls(d["path"], int(d["size"]), tuple(int(x) for x in d["stat"]), d["origin"], d["url"],
                   d["sha256"], d["expected"])


@dataclass(frozen=True)
class ProofRecord:
    """build/<spec>/proof.json: the ISO's sha256, proven against its pin. Everything published waits for it."""

    sha256: str
    size: int

    KIND = "proof"
    SCHEMA = 1

    def to_json(self) -> Json:
        return {"manifest": self.KIND, "schema_version": self.SCHEMA, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, data: Any, where: str) -> ProofRecord:
        d = _check(data, where, "proof record", ("manifest", cls.KIND), cls.SCHEMA)
        return cls(d["sha256"], int(d["size"]))


# --- provenance (extract) --------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceRecord:
    """Where the drivers came from, as the media record it (never an absolute path outside the repo or ~)."""

    kind: SourceKind
    path: str | None
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    volume_label: str | None = None
    version: str | None = None
    reader: str | None = None

    def to_json(self) -> Json:
        if not self.kind.is_iso:
            return {"kind": self.kind.value, "path": self.path}
        return {"kind": self.kind.value, "url": self.url, "path": self.path, "sha256": self.sha256,
                "size": self.size, "volume_label": self.volume_label, "version": self.version,
                "reader": self.reader}

    @classmethod
    def from_json(cls, d: Json) -> SourceRecord:
        return cls(SourceKind(d["kind"]), d.get("path"), d.get("url"), d.get("sha256"), d.get("size"),
                   d.get("volume_label"), d.get("version"), d.get("reader"))


@dataclass(frozen=True)
class IsoFile:
    """A file copied out of the ISO: its path there and its bytes."""

    iso_path: str
    sha256: str
    size: int

    def to_json(self) -> Json:
        return {"iso_path": self.iso_path, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, d: Json) -> IsoFile:
        return cls(d["iso_path"], d["sha256"], int(d["size"]))


@dataclass(frozen=True)
class ExtractedFile:
    """One file of an extracted package: its path in the package and on the ISO."""

    path: str
    iso: IsoFile

    def to_json(self) -> Json:
        return {"path": self.path, **self.iso.to_json()}

    @classmethod
    def from_json(cls, d: Json) -> ExtractedFile:
        return cls(d["path"], IsoFile.from_json(d))


@dataclass(frozen=True)
class ExtractedPackage:
    """A driver package taken from the ISO for one arch."""

    driver: str
    arch: Arch
    os_dir: str | None
    iso_dir: str
    driver_ver: str | None
    files: tuple[ExtractedFile, ...]

    def to_json(self) -> Json:
        return {"driver": self.driver, "arch": self.arch.value, "os_dir": self.os_dir, "iso_dir": self.iso_dir,
                "driver_ver": self.driver_ver, "files": [f.to_json() for f in self.files]}

    @classmethod
    def from_json(cls, d: Json) -> ExtractedPackage:
        return cls(d["driver"], Arch(d["arch"]), d["os_dir"], d["iso_dir"], d["driver_ver"],
                   tuple(ExtractedFile.from_json(f) for f in d["files"]))


@dataclass(frozen=True)
class Provenance:
    """build/<spec>/provenance.json: what extraction took from the ISO, byte by byte."""

    source: SourceRecord
    packages: tuple[ExtractedPackage, ...]
    notice_files: tuple[IsoFile, ...]
    info_json: IsoFile | None
    missing_optional: tuple[MissingOptional, ...]
    warnings: tuple[str, ...]
    metadata_files: tuple[IsoFile, ...] = ()
    """The release's VERSION files, copied beside the licences."""

    SCHEMA = 1
    AERO_BACKEND = "aero-virtio-media"

    def to_json(self) -> Json:
        return {"schema_version": self.SCHEMA, "source": self.source.to_json(),
                "packages": [p.to_json() for p in self.packages],
                "notice_files": [n.to_json() for n in self.notice_files],
                "metadata_files": [m.to_json() for m in self.metadata_files],
                "info_json": self.info_json.to_json() if self.info_json else None,
                "missing_optional": [m.to_json() for m in self.missing_optional],
                "warnings": list(self.warnings)}

    def aero_fields(self) -> Json:
        """The fields of Aero's ``virtio-win-provenance.json`` (tools/virtio-win/extract.py) that its
        make-driver-pack.ps1 reads, in its names. No ``created_utc``: a clock time would break reproducibility.
        """
        return {"virtio_win_iso": {"path": self.source.path, "sha256": self.source.sha256,
                                   "volume_id": self.source.volume_label},
                "backend": self.AERO_BACKEND,
                "extracted": [{"driver": p.driver, "arch": p.arch.value, "iso_path": p.iso_dir}
                              for p in self.packages],
                "extracted_notice_files": [n.iso_path for n in self.notice_files],
                "extracted_metadata_files": [m.iso_path for m in self.metadata_files]}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Provenance:
        d = _check(data, where, "provenance record", None, cls.SCHEMA)
        return cls(SourceRecord.from_json(d["source"]),
                   tuple(ExtractedPackage.from_json(p) for p in d["packages"]),
                   tuple(IsoFile.from_json(n) for n in d["notice_files"]),
                   IsoFile.from_json(d["info_json"]) if d["info_json"] else None,
                   tuple(MissingOptional.from_json(m) for m in d["missing_optional"]),
                   tuple(d["warnings"]), tuple(IsoFile.from_json(m) for m in d.get("metadata_files", ())))


# --- stage ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StagedPackage:
    """One package staged for one arch, with what the checks found out about it."""

    driver: str
    device: str
    required: bool
    os_dir: str | None
    source_dir: str
    files: tuple[StagedFile, ...]
    inf: str
    """Staged path of the INF the checks evaluated (the one setup installs)."""
    service: str | None
    sys_file: str | None
    """File name of the service binary (what the storage pre-seed copies)."""

    def to_json(self) -> Json:
        return {"driver": self.driver, "device": self.device, "required": self.required, "os_dir": self.os_dir,
                "source_dir": self.source_dir, "files": [f.to_json() for f in self.files], "inf": self.inf,
                "service": self.service, "sys_file": self.sys_file}

    @classmethod
    def from_json(cls, d: Json) -> StagedPackage:
        return cls(d["driver"], d["device"], bool(d["required"]), d["os_dir"], d["source_dir"],
                   tuple(StagedFile.from_json(f) for f in d["files"]), d["inf"], d["service"], d["sys_file"])


@dataclass(frozen=True)
class StageSource:
    """Which tree the stage read.

    An Aero checkout also says which of its outputs (``input``), whether those came catalogued and signed
    (``signed``: False means catalogs and signatures are still to be made) and, when signed, the certificate
    they were signed for (``certificate``, relative to the checkout). Other sources leave the three None.
    """

    kind: SourceKind
    tree: str
    reader: str
    input: str | None = None
    signed: bool | None = None
    certificate: str | None = None

    def to_json(self) -> Json:
        aero = {"input": self.input, "signed": self.signed, "certificate": self.certificate}
        return {"kind": self.kind.value, "tree": self.tree, "reader": self.reader,
                **(aero if self.input is not None else {})}

    @classmethod
    def from_json(cls, d: Json) -> StageSource:
        return cls(SourceKind(d["kind"]), d["tree"], d["reader"], d.get("input"), d.get("signed"),
                   d.get("certificate"))


@dataclass(frozen=True)
class Validation:
    """The Windows 7 checks' verdict on one arch's packages."""

    policy: Json
    summary: ValidationSummary
    reports: tuple[PackageReport, ...]

    def to_json(self) -> Json:
        return {"policy": self.policy, "summary": self.summary.to_json(),
                "packages": [r.to_json() for r in self.reports]}

    @classmethod
    def from_json(cls, d: Json) -> Validation:
        return cls(dict(d["policy"]), ValidationSummary.from_json(d["summary"]),
                   tuple(PackageReport.from_json(r) for r in d["packages"]))


@dataclass(frozen=True)
class StageManifest:
    """build/<spec>/stage/<arch>.json: every staged file with size and sha256, and the validation findings."""

    spec: str
    arch: Arch
    source: StageSource
    packages: tuple[StagedPackage, ...]
    missing_optional: tuple[MissingOptional, ...]
    warnings: tuple[str, ...]
    validation: Validation

    KIND = "stage"
    SCHEMA = 2

    @property
    def files(self) -> tuple[StagedFile, ...]:
        """Every staged file of every package, sorted by staged path."""
        return tuple(sorted((f for p in self.packages for f in p.files), key=lambda f: f.path))

    def to_json(self) -> Json:
        return {"manifest": self.KIND, "schema_version": self.SCHEMA, "spec": self.spec, "arch": self.arch.value,
                "source": self.source.to_json(), "packages": [p.to_json() for p in self.packages],
                "files": [f.to_json() for f in self.files],
                "missing_optional": [m.to_json() for m in self.missing_optional],
                "warnings": list(self.warnings), "validation": self.validation.to_json()}

    @classmethod
    def from_json(cls, data: Any, where: str) -> StageManifest:
        d = _check(data, where, "stage manifest", ("manifest", cls.KIND), cls.SCHEMA)
        return cls(d["spec"], Arch(d["arch"]), StageSource.from_json(d["source"]),
                   tuple(StagedPackage.from_json(p) for p in d["packages"]),
                   tuple(MissingOptional.from_json(m) for m in d["missing_optional"]),
                   tuple(d["warnings"]), Validation.from_json(d["validation"]))

    @classmethod
    def read(cls, path: Path) -> StageManifest:
        return read_manifest(path, cls.from_json)


def staged_files(stages: Iterable[StageManifest]) -> list[StagedFile]:
    """The staged files of several arches, sorted by staged path."""
    return sorted((f for m in stages for f in m.files), key=lambda f: f.path)


# --- notices --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticesManifest:
    """build/<spec>/notices.json: THIRD_PARTY_NOTICES.md and the licence files, as they go on the media."""

    spec: str
    license: str | None
    files: tuple[FileRecord, ...]

    KIND = "notices"
    SCHEMA = 1

    def to_json(self) -> Json:
        return {"manifest": self.KIND, "schema_version": self.SCHEMA, "spec": self.spec, "license": self.license,
                "files": [f.to_json() for f in self.files]}

    @classmethod
    def from_json(cls, data: Any, where: str) -> NoticesManifest:
        d = _check(data, where, "notices manifest", ("manifest", cls.KIND), cls.SCHEMA)
        return cls(d["spec"], d["license"], tuple(FileRecord.from_json(f) for f in d["files"]))

    @classmethod
    def read(cls, path: Path) -> NoticesManifest:
        return read_manifest(path, cls.from_json)


# --- expand (packs of stand-in recipes) ----------------------------------------------------------


@dataclass(frozen=True)
class PackManifest:
    """build/<spec>/pack.json: a pack with its stand-in recipes expanded, file by file."""

    source: str
    files: tuple[FileRecord, ...]

    KIND = "pack"
    SCHEMA = 1

    def to_json(self) -> Json:
        return {"manifest": self.KIND, "schema_version": self.SCHEMA, "source": self.source,
                "files": [f.to_json() for f in self.files]}

    @classmethod
    def from_json(cls, data: Any, where: str) -> PackManifest:
        d = _check(data, where, "expanded pack manifest", ("manifest", cls.KIND), cls.SCHEMA)
        return cls(d["source"], tuple(FileRecord.from_json(f) for f in d["files"]))


# --- media manifests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StagedProvenance:
    """What one package on the media was staged from."""

    arch: Arch
    driver: str
    os_dir: str | None
    source_dir: str
    files: tuple[StagedFile, ...]

    def to_json(self) -> Json:
        return {"arch": self.arch.value, "driver": self.driver, "os_dir": self.os_dir,
                "source_dir": self.source_dir, "files": [f.to_json() for f in self.files]}

    @classmethod
    def from_json(cls, d: Json) -> StagedProvenance:
        return cls(Arch(d["arch"]), d["driver"], d["os_dir"], d["source_dir"],
                   tuple(StagedFile.from_json(f) for f in d["files"]))


@dataclass(frozen=True)
class MediaProvenance:
    """Where every file on a medium came from: the source (with extraction details for ISOs) and staging."""

    source: SourceRecord
    extraction: Provenance | None
    staged: tuple[StagedProvenance, ...]

    @classmethod
    def of(cls, source: SourceRecord, extraction: Provenance | None, iso_sha256: str | None,
           stages: Iterable[StageManifest]) -> MediaProvenance:
        staged = tuple(StagedProvenance(m.arch, p.driver, p.os_dir, p.source_dir, p.files)
                       for m in stages for p in m.packages)
        if extraction is not None and iso_sha256 is not None:
            extraction = replace(extraction, source=replace(extraction.source, sha256=iso_sha256))
        return cls(extraction.source if extraction else source, extraction, staged)

    def to_json(self) -> Json:
        head = self.extraction.to_json() if self.extraction else {"source": self.source.to_json()}
        return {**head, "staged": [s.to_json() for s in self.staged]}

    @classmethod
    def from_json(cls, d: Json, where: str) -> MediaProvenance:
        staged = tuple(StagedProvenance.from_json(s) for s in d["staged"])
        if "schema_version" in d:
            extraction = Provenance.from_json({k: v for k, v in d.items() if k != "staged"}, where)
            return cls(extraction.source, extraction, staged)
        return cls(SourceRecord.from_json(d["source"]), None, staged)


@dataclass(frozen=True)
class MediaPackage:
    """A driver package on the drivers ISO."""

    driver: str
    device: str
    arch: Arch
    required: bool
    dir: str
    inf: str

    def to_json(self) -> Json:
        return {"driver": self.driver, "device": self.device, "arch": self.arch.value, "required": self.required,
                "dir": self.dir, "inf": self.inf}

    @classmethod
    def from_json(cls, d: Json) -> MediaPackage:
        return cls(d["driver"], d["device"], Arch(d["arch"]), bool(d["required"]), d["dir"], d["inf"])


def _validation_json(validation: dict[Arch, ValidationSummary]) -> Json:
    return {a.value: s.to_json() for a, s in validation.items()}


def _validation_from(d: Json) -> dict[Arch, ValidationSummary]:
    return {Arch(a): ValidationSummary.from_json(s) for a, s in d.items()}


@dataclass(frozen=True)
class InputFile:
    """A file a build read, by its path in the project and its sha256."""

    path: str
    sha256: str

    def to_json(self) -> Json:
        return {"path": self.path, "sha256": self.sha256}

    @classmethod
    def from_json(cls, d: Json) -> InputFile:
        return cls(str(d["path"]), str(d["sha256"]))


@dataclass(frozen=True)
class ContractInput:
    """The device contract a build used, as Aero's manifest type records it."""

    path: str
    sha256: str
    contract_name: str
    contract_version: str
    schema_version: int

    def to_json(self) -> Json:
        return {"path": self.path, "sha256": self.sha256, "contract_name": self.contract_name,
                "contract_version": self.contract_version, "schema_version": self.schema_version}

    @classmethod
    def from_json(cls, d: Json) -> ContractInput:
        return cls(str(d["path"]), str(d["sha256"]), str(d["contract_name"]), str(d["contract_version"]),
                   int(d["schema_version"]))


@dataclass(frozen=True)
class ManifestInputs:
    """What a medium was packaged from: the spec file (absent for command-line builds) and the contract.

    Serialised twice, in the two shapes Aero's packager reads: ``inputs`` and the
    four-string ``provenance`` (only when there is a spec file, since Aero requires all four).
    """

    packaging_spec: InputFile | None
    windows_device_contract: ContractInput

    def to_json(self) -> Json:
        out: Json = {"windows_device_contract": self.windows_device_contract.to_json()}
        if self.packaging_spec is not None:
            out["packaging_spec"] = self.packaging_spec.to_json()
        return out

    def aero_provenance(self) -> Json | None:
        if self.packaging_spec is None:
            return None
        return {"packaging_spec_path": self.packaging_spec.path,
                "packaging_spec_sha256": self.packaging_spec.sha256,
                "windows_device_contract_path": self.windows_device_contract.path,
                "windows_device_contract_sha256": self.windows_device_contract.sha256}

    def add_to(self, out: Json) -> Json:
        """``out`` with ``inputs`` and, when complete, Aero's ``provenance`` added."""
        out["inputs"] = self.to_json()
        prov = self.aero_provenance()
        if prov is not None:
            out["provenance"] = prov
        return out

    @classmethod
    def from_json(cls, d: Json) -> ManifestInputs:
        inputs = d["inputs"]
        spec = inputs.get("packaging_spec")
        return cls(InputFile.from_json(spec) if spec else None,
                   ContractInput.from_json(inputs["windows_device_contract"]))


@dataclass(frozen=True)
class DriversIsoManifest:
    """manifest.json on the drivers ISO: every file with its sha256, the packages, and their provenance."""

    spec: str
    description: str
    volume_label: str
    source_date_epoch: int
    contract: tuple[str, str]
    arches: tuple[Arch, ...]
    packages: tuple[MediaPackage, ...]
    missing_optional: tuple[MissingOptional, ...]
    validation: dict[Arch, ValidationSummary]
    source_provenance: MediaProvenance
    inputs: ManifestInputs
    files: tuple[FileRecord, ...]

    MEDIA = "aero-virtio-win7-drivers"
    SCHEMA = 2

    def to_json(self) -> Json:
        return self.inputs.add_to({
            "schema_version": self.SCHEMA, "media": self.MEDIA, "spec": self.spec,
            "description": self.description, "volume_label": self.volume_label,
            "source_date_epoch": self.source_date_epoch,
            "contract": {"name": self.contract[0], "version": self.contract[1]},
            "target": {"os": "win7", "arches": [a.value for a in self.arches]},
            "packages": [p.to_json() for p in self.packages],
            "missing_optional": [m.to_json() for m in self.missing_optional],
            "validation": _validation_json(self.validation),
            "source_provenance": self.source_provenance.to_json(),
            "files": [f.to_json() for f in sorted(self.files, key=lambda f: f.path)]})

    @classmethod
    def from_json(cls, data: Any, where: str) -> DriversIsoManifest:
        d = _check(data, where, "drivers ISO manifest", ("media", cls.MEDIA), cls.SCHEMA)
        return cls(d["spec"], d["description"], d["volume_label"], int(d["source_date_epoch"]),
                   (d["contract"]["name"], d["contract"]["version"]),
                   tuple(Arch(a) for a in d["target"]["arches"]),
                   tuple(MediaPackage.from_json(p) for p in d["packages"]),
                   tuple(MissingOptional.from_json(m) for m in d["missing_optional"]),
                   _validation_from(d["validation"]), MediaProvenance.from_json(d["source_provenance"], where),
                   ManifestInputs.from_json(d), tuple(FileRecord.from_json(f) for f in d["files"]))


@dataclass(frozen=True)
class CertRecord:
    """A certificate on the Guest Tools media and the stores setup adds it to."""

    path: str
    subject: str
    sha1_thumbprint: str
    stores: tuple[str, ...]

    def to_json(self) -> Json:
        return {"path": self.path, "subject": self.subject, "sha1_thumbprint": self.sha1_thumbprint,
                "stores": list(self.stores)}

    @classmethod
    def from_json(cls, d: Json) -> CertRecord:
        return cls(d["path"], d["subject"], d["sha1_thumbprint"], tuple(d["stores"]))


@dataclass(frozen=True)
class GuestToolsDriver:
    """A driver package on the Guest Tools media."""

    arch: Arch
    name: str
    device: str
    service: str
    inf: str

    def to_json(self) -> Json:
        return {"arch": self.arch.value, "name": self.name, "device": self.device, "service": self.service,
                "inf": self.inf}

    @classmethod
    def from_json(cls, d: Json) -> GuestToolsDriver:
        return cls(Arch(d["arch"]), d["name"], d["device"], d["service"], d["inf"])


@dataclass(frozen=True)
class PackageIdentity:
    """Who the Guest Tools media say they are."""

    name: str
    version: str
    build_id: str
    source_date_epoch: int

    def to_json(self) -> Json:
        return {"name": self.name, "version": self.version, "build_id": self.build_id,
                "source_date_epoch": self.source_date_epoch}

    @classmethod
    def from_json(cls, d: Json) -> PackageIdentity:
        return cls(d["name"], d["version"], d["build_id"], int(d["source_date_epoch"]))


@dataclass(frozen=True)
class GuestToolsManifest:
    """manifest.json on (and beside) the Guest Tools media."""

    package: PackageIdentity
    spec: str
    volume_label: str
    signing_policy: SigningPolicy
    certs: tuple[CertRecord, ...]
    sha256_only_catalogs: bool
    contract: tuple[str, str]
    drivers: tuple[GuestToolsDriver, ...]
    missing_optional: tuple[MissingOptional, ...]
    validation: dict[Arch, ValidationSummary]
    source_provenance: MediaProvenance
    inputs: ManifestInputs
    files: tuple[FileRecord, ...] = field(default=())

    PACKAGE_NAME = "aero-guest-tools"
    # Aero's packager type (src/manifest.rs) is schema 4; this manifest is a superset of it.
    SCHEMA = 4

    def to_json(self) -> Json:
        return self.inputs.add_to({
            "schema_version": self.SCHEMA, "package": self.package.to_json(), "spec": self.spec,
            "volume_label": self.volume_label, "signing_policy": self.signing_policy.value,
            "certs_required": self.signing_policy.certs_required,
            "certs": [c.to_json() for c in self.certs], "sha256_only_catalogs": self.sha256_only_catalogs,
            "contract": {"name": self.contract[0], "version": self.contract[1]},
            "drivers": [d.to_json() for d in self.drivers],
            "missing_optional": [m.to_json() for m in self.missing_optional],
            "validation": _validation_json(self.validation),
            "source_provenance": self.source_provenance.to_json(),
            "files": [f.to_json() for f in sorted(self.files, key=lambda f: f.path)]})

    @classmethod
    def from_json(cls, data: Any, where: str) -> GuestToolsManifest:
        d = _check(data, where, "Guest Tools manifest", None, cls.SCHEMA)
        package = PackageIdentity.from_json(d["package"])
        if package.name != cls.PACKAGE_NAME:
            raise BuildStateError(f"{where}: not a Guest Tools manifest (package.name is {package.name!r})",
                                  "delete it and run the build again")
        return cls(package, d["spec"], d["volume_label"], SigningPolicy(d["signing_policy"]),
                   tuple(CertRecord.from_json(c) for c in d["certs"]), bool(d["sha256_only_catalogs"]),
                   (d["contract"]["name"], d["contract"]["version"]),
                   tuple(GuestToolsDriver.from_json(x) for x in d["drivers"]),
                   tuple(MissingOptional.from_json(m) for m in d["missing_optional"]),
                   _validation_from(d["validation"]), MediaProvenance.from_json(d["source_provenance"], where),
                   ManifestInputs.from_json(d), tuple(FileRecord.from_json(f) for f in d["files"]))

    @classmethod
    def read(cls, path: Path) -> GuestToolsManifest:
        return read_manifest(path, cls.from_json)


# --- verify reports -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IsoReport:
    """<iso>.verify.json: what reading an ISO back checked, and the ISO's sha256."""

    iso: str
    sha256: str
    size: int
    label: str
    joliet_label: str | None
    require_arches: tuple[str, ...]
    files_checked: int
    problems: tuple[str, ...]

    SCHEMA = 1

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> Json:
        return {"iso": self.iso, "sha256": self.sha256, "size": self.size, "label": self.label,
                "joliet_label": self.joliet_label, "require_arches": list(self.require_arches),
                "files_checked": self.files_checked, "ok": self.ok, "problems": list(self.problems)}

    @classmethod
    def from_json(cls, data: Any, where: str) -> IsoReport:
        d = dict(data)
        return cls(d["iso"], d["sha256"], int(d["size"]), d["label"], d["joliet_label"],
                   tuple(d["require_arches"]), int(d["files_checked"]), tuple(d["problems"]))


@dataclass(frozen=True)
class ZipReport:
    """What reading a zip back checked."""

    zip: str
    sha256: str
    size: int
    files_checked: int

    def to_json(self) -> Json:
        return {"zip": self.zip, "sha256": self.sha256, "size": self.size, "files_checked": self.files_checked,
                "ok": True}


@dataclass(frozen=True)
class GuestToolsReport:
    """The Guest Tools verify report: the ISO and the zip, both read back."""

    iso: IsoReport
    zip: ZipReport

    def to_json(self) -> Json:
        return {"iso": self.iso.to_json(), "zip": self.zip.to_json(), "ok": True}


@dataclass(frozen=True)
class FatDiskReport:
    """<disk>.verify.json: what reading the FAT driver disk back checked, and the file's sha256."""

    disk: str
    sha256: str
    size: int
    virtual_size: int
    label: str
    partition: tuple[int, int]
    """First sector and sector count of the FAT32 partition."""
    files_checked: int
    fsck: str
    """What ``fsck.fat -n`` said ("clean", or "not installed")."""
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> Json:
        return {"disk": self.disk, "sha256": self.sha256, "size": self.size, "virtual_size": self.virtual_size,
                "label": self.label, "partition": {"first_sector": self.partition[0], "sectors": self.partition[1]},
                "files_checked": self.files_checked, "fsck": self.fsck, "ok": self.ok,
                "problems": list(self.problems)}
