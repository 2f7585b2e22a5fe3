"""What every medium carries: the staged drivers (in the medium's layout), the notices, and their records."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

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
from ..paths import MediaLayout, Run, SpecPaths
from ..sources.resolve import extraction, iso_sha256, source_record
from ..spec.model import Spec
from .files import MediaFile


def stage_manifests(spec: Spec, paths: SpecPaths) -> list[StageManifest]:
    """The stage manifest of each of the spec's arches, in the spec's order: what every medium is made from."""
    return [StageManifest.read(paths.stage_manifest(a)) for a in spec.arches]


def media_record(path: str, data: bytes) -> FileRecord:
    """The {path, sha256, size} record of in-memory bytes."""
    return FileRecord(path, hashlib.sha256(data).hexdigest(), len(data))


def provenance(run: Run, stages: Iterable[StageManifest]) -> MediaProvenance:
    """Where the medium's files came from: the source (and extraction, for ISOs) and what each stage took."""
    return MediaProvenance.of(source_record(run), extraction(run), iso_sha256(run), stages)


def manifest_inputs(spec: Spec, *, spec_file: bool = True) -> ManifestInputs:
    """The spec file (when the build has one and ``spec_file``) and the contract, by project path and sha256.

    Only the Guest Tools record the spec file, as Aero's packager does. A medium that
    recorded it would be rebuilt by any edit of the file, a Guest Tools version bump
    included, though it reads none of those settings.
    """
    packaging = None
    if spec_file and spec.file.suffix == ".yaml" and spec.file.is_file():  # not a build from command-line options
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
        files.append(MediaFile(path, source=paths.staged_file(f.path), sha256=f.sha256))
        records.append(FileRecord(path, f.sha256, f.size))
    for n in notices.files if notices is not None else ():
        files.append(MediaFile(n.path, source=paths.notices_dir / n.path, sha256=n.sha256))
        records.append(n)
    return files, records
