"""Assemble, write and verify the drivers ISO (``win7/<arch>/<driver>/`` for Windows Setup's "Load Driver")."""

from __future__ import annotations

from dataclasses import replace

from .. import log
from ..answer import answerfile
from ..fsutil import dump_json, relpath_for_humans
from ..manifests import (
    DriversIsoManifest,
    FileRecord,
    IsoReport,
    MediaPackage,
    MediaProvenance,
    NoticesManifest,
)
from ..paths import MediaLayout, Run
from ..spec.model import Spec
from .certs import media_certs, medium_cert_files
from .contents import manifest_inputs, media_record, provenance, stage_manifests, staged_media
from .discard import discard_on_failure
from .files import MANIFEST_NAME, MediaFile
from .isowriter import write_iso
from .readme import media_packages, shared_values
from .templates import crlf, render
from .verify import Expectation, linked_copies, verify_iso
from .winpe import winpe_media

README_NAME = "README.txt"
README_TEMPLATE = "drivers-README.txt"


def _readme(spec: Spec, packages: list[MediaPackage], prov: MediaProvenance) -> bytes:
    values = shared_values(spec, packages, prov, noun="disc", how="a second CD drive beside the Windows 7 DVD",
                           drive="D:")
    return crlf(render(README_TEMPLATE, {**values, "LABEL": spec.drivers_iso.volume_label}))


def build_drivers_iso(run: Run) -> FileRecord:
    """Write ``dist/<spec>/<filename>.iso`` from the staged trees and notices; return its record."""
    spec, ctx, paths, epoch = run.spec, run.ctx, run.paths, run.epoch
    target = paths.drivers_iso
    # A report beside a new ISO must be about that ISO: drop the old one first.
    paths.drivers_iso_report.unlink(missing_ok=True)
    stages = stage_manifests(spec, paths)
    notices = NoticesManifest.read(paths.notices_manifest)
    files, records = staged_media(paths, stages, notices)
    if spec.media.winpe_drivers:
        winpe_files, winpe_records = winpe_media(spec, paths, stages)
        files += winpe_files
        records += winpe_records
    if spec.media.answer_file is not None:
        # Setup reads it from any CD's root, so the drivers ISO beside an unmodified DVD does the job too.
        xml = answerfile.render(spec.media.answer_file, {m.arch: [p.driver for p in m.packages] for m in stages})
        answerfile.check(xml)
        files.append(MediaFile(answerfile.FILE_NAME, data=xml))
        records.append(media_record(answerfile.FILE_NAME, xml))
    # The certificate travels with the drivers it signs: the README's test-signing steps import it from the root.
    for media_path, der in medium_cert_files(media_certs(spec, paths, stages)):
        files.append(MediaFile(media_path, data=der))
        records.append(media_record(media_path, der))
    packages = media_packages(stages)
    prov = provenance(run, stages)
    readme = _readme(spec, packages, prov)
    files.append(MediaFile(README_NAME, data=readme))
    records.append(media_record(README_NAME, readme))
    manifest = DriversIsoManifest(
        spec=spec.name,
        description=spec.description,
        volume_label=spec.drivers_iso.volume_label,
        source_date_epoch=epoch,
        contract=(spec.contract.name, spec.contract.version),
        arches=spec.arches,
        packages=tuple(packages),
        missing_optional=tuple(mo for m in stages for mo in m.missing_optional),
        validation={m.arch: m.validation.summary for m in stages},
        source_provenance=prov,
        inputs=manifest_inputs(spec, spec_file=False),  # the contract: the spec's settings rebuild it alone
        files=tuple(records),
    )
    files.append(MediaFile(MANIFEST_NAME, data=dump_json(manifest.to_json())))
    write_iso(files, target, spec.drivers_iso.volume_label, epoch)
    # Hashed once: verify and doit's checker find the digest in the memo.
    digest, size = run.memo.sha256(target), target.stat().st_size
    if not ctx.scratch:  # a command building in a scratch project names the file where it finally lands
        log.info(f"Wrote {relpath_for_humans(target, ctx.root, absolute=True)} ({size} bytes, sha256={digest})")
    return FileRecord(target.name, digest, size)


def verify_drivers_iso(run: Run) -> IsoReport:
    """Verify the spec's drivers ISO against its stage and notices manifests; the report goes beside it."""
    spec, paths = run.spec, run.paths
    target = paths.drivers_iso
    paths.drivers_iso_report.unlink(missing_ok=True)
    stages = stage_manifests(spec, paths)
    files: dict[str, tuple[FileRecord, str]] = {}
    for m in stages:
        for f in m.files:
            files[f.path] = (f.record, f"stage manifest {m.arch.value}")
    if spec.media.winpe_drivers:
        for m in stages:
            for f in m.files:
                files[MediaLayout.WINPE.relocate(f.path)] = (replace(f.record, path=MediaLayout.WINPE.relocate(f.path)),
                                                             f"stage manifest {m.arch.value}")
    for n in NoticesManifest.read(paths.notices_manifest).files:
        files[n.path] = (n, "notices manifest")
    required = [p.inf for p in media_packages(stages) if p.required]
    exp = Expectation(label=spec.drivers_iso.volume_label, required_paths=required, files=files, epoch=run.epoch,
                      same_extent=linked_copies(files))
    with discard_on_failure([target]):
        report = verify_iso(target, [a.value for a in spec.arches], exp,
                            report=paths.drivers_iso_report, memo=run.memo)
    log.info(f"verified {target.name}: {report.files_checked} files OK")
    return report

