"""What every medium carries: the staged drivers (in the medium's layout), the notices, and their records."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ..errors import ValidationError
from ..fsutil import sha256_file
from ..manifests import (
    ContractInput,
    FileRecord,
    InputFile,
    ManifestInputs,
    MediaProvenance,
    NoticesManifest,
    StageManifest,
    staged_files,
)
from ..paths import MediaLayout, SpecPaths, split_staged
from ..sources.resolve import extraction, proof, source_record
from ..spec.model import Context, Spec
from ..win7.setupscan import OfferedInf, scan_problems
from .files import MediaFile


def media_record(path: str, data: bytes) -> FileRecord:
    """The {path, sha256, size} record of in-memory bytes."""
    return FileRecord(path, hashlib.sha256(data).hexdigest(), len(data))


def provenance(spec: Spec, ctx: Context, stages: Iterable[StageManifest]) -> MediaProvenance:
    """Where the medium's files came from: the source (and extraction, for ISOs) and what each stage took."""
    return MediaProvenance.of(source_record(spec, ctx), extraction(spec, ctx), proof(spec, ctx), stages)


def manifest_inputs(spec: Spec) -> ManifestInputs:
    """The spec file (when the build has one) and the contract, by project path and sha256."""
    packaging = None
    if spec.file.suffix == ".yaml" and spec.file.is_file():  # not a build from command-line options
        packaging = InputFile(spec.display, sha256_file(spec.file)[0])
    c = spec.contract
    return ManifestInputs(packaging, ContractInput(c.file, c.sha256, c.name, c.version, c.schema_version))


def staged_media(paths: SpecPaths, stages: Iterable[StageManifest], notices: NoticesManifest | None,
                 layout: MediaLayout = MediaLayout.STAGED) -> tuple[list[MediaFile], list[FileRecord]]:
    """Media entries and records for the staged files (in ``layout``) and the notices (unless None).

    Every entry of one staged file names the same source, so the writers store its bytes
    once however many layouts a medium carries.
    """
    files: list[MediaFile] = []
    records: list[FileRecord] = []
    for f in staged_files(stages):
        path = layout.relocate(f.path)
        files.append(MediaFile(path, source=paths.staged_file(f.path)))
        records.append(FileRecord(path, f.sha256, f.size))
    for n in notices.files if notices is not None else ():
        files.append(MediaFile(n.path, source=paths.notices_dir / n.path))
        records.append(n)
    return files, records


def winpe_media(spec: Spec, paths: SpecPaths,
                stages: Iterable[StageManifest]) -> tuple[list[MediaFile], list[FileRecord]]:
    """``$WinPEDriver$/<arch>/<driver>/`` entries, once Setup's scan of them is proven to bind per arch only.

    Raises :class:`ValidationError` naming each INF another arch's Setup could take.
    """
    stages = list(stages)
    offered = [OfferedInf(MediaLayout.WINPE.relocate(f.path), split_staged(f.path)[0],
                          paths.staged_file(f.path).read_bytes())
               for f in staged_files(stages) if f.path.lower().endswith(".inf")]
    problems = scan_problems(offered, spec.arches)
    if problems:
        raise ValidationError("\n".join(problems),
                              "give each arch's INF models sections for that arch only (NTx86, NTamd64), "
                              "or set outputs.drivers_iso.winpe_drivers: false")
    return staged_media(paths, stages, None, MediaLayout.WINPE)
