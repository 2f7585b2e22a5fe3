"""Assemble, write and verify the drivers ISO (``win7/<arch>/<driver>/`` for Windows Setup's "Load Driver").

Under ``media.winpe_drivers: per-arch`` one more drivers ISO per arch (``<stem>-<arch>.iso``) holds that
arch alone, with its ``$WinPEDriver$``: the same writer, README, notices, manifest and read-back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

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
    StageManifest,
)
from ..paths import MediaLayout, Run
from ..spec.model import Spec
from ..spec.types import Arch
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

# What each arch's folder holds, as the README lists it (a one-arch ISO lists its own alone).
_ARCH_LINES = {Arch.X86: "  win7\\x86\\<driver>\\     drivers for 32-bit Windows 7\n",
               Arch.AMD64: "  win7\\amd64\\<driver>\\   drivers for 64-bit Windows 7 (and Server 2008 R2)\n"}


@dataclass(frozen=True)
class _Disc:
    """One drivers ISO: the spec's, or a one-arch one (``media.winpe_drivers: per-arch``)."""

    arches: tuple[Arch, ...]
    target: Path
    report: Path
    label: str

    @classmethod
    def of(cls, run: Run, arch: Arch | None = None) -> _Disc:
        """The spec's drivers ISO (``arch`` None), or its one-arch drivers ISO for ``arch``: written and verified
        under ``build/<spec>/media/``, published by the publish stage."""
        p, out = run.pending, run.spec.drivers_iso
        if arch is None:
            return cls(run.spec.arches, p.drivers_iso, p.drivers_iso_report, out.volume_label)
        return cls((arch,), p.arch_drivers_iso(arch), p.arch_drivers_iso_report(arch), out.arch_label(arch))

    def winpe(self, spec: Spec) -> bool:
        """Whether this ISO carries ``$WinPEDriver$``."""
        return spec.media.winpe_drivers.carried(len(self.arches))


def _readme(spec: Spec, disc: _Disc, packages: list[MediaPackage], prov: MediaProvenance) -> bytes:
    values = shared_values(spec, packages, prov, noun="disc", how="a second CD drive beside the Windows 7 DVD",
                           drive="D:")
    return crlf(render(README_TEMPLATE, {**values, "LABEL": disc.label,
                                         "ARCH_LINES": "".join(_ARCH_LINES[a] for a in disc.arches)}))


def build_drivers_iso(run: Run) -> FileRecord:
    """Write ``<filename>.iso`` from the staged trees and notices (unpublished); return its record."""
    return _build(run, _Disc.of(run))


def build_arch_drivers_iso(run: Run, arch: Arch) -> FileRecord:
    """Write ``<stem>-<arch>.iso`` (unpublished): ``arch``'s drivers alone, with its ``$WinPEDriver$``."""
    return _build(run, _Disc.of(run, arch))


def _stages(run: Run, disc: _Disc) -> list[StageManifest]:
    return [m for m in stage_manifests(run.spec, run.paths) if m.arch in disc.arches]


def _build(run: Run, disc: _Disc) -> FileRecord:
    spec, ctx, paths, epoch = run.spec, run.ctx, run.paths, run.epoch
    target = disc.target
    # A report beside a new ISO must be about that ISO: drop the old one first.
    disc.report.unlink(missing_ok=True)
    stages = _stages(run, disc)
    notices = NoticesManifest.read(paths.notices_manifest)
    files, records = staged_media(paths, stages, notices)
    if disc.winpe(spec):
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
    readme = _readme(spec, disc, packages, prov)
    files.append(MediaFile(README_NAME, data=readme))
    records.append(media_record(README_NAME, readme))
    manifest = DriversIsoManifest(
        spec=spec.name,
        description=spec.description,
        volume_label=disc.label,
        source_date_epoch=epoch,
        contract=(spec.contract.name, spec.contract.version),
        arches=disc.arches,
        packages=tuple(packages),
        missing_optional=tuple(mo for m in stages for mo in m.missing_optional),
        validation={m.arch: m.validation.summary for m in stages},
        source_provenance=prov,
        inputs=manifest_inputs(spec, spec_file=False),  # the contract: the spec's settings rebuild it alone
        files=tuple(records),
    )
    files.append(MediaFile(MANIFEST_NAME, data=dump_json(manifest.to_json())))
    # Hashed as written (the writer reads the image back behind itself): verify and doit's checker find the
    # digest in the memo, and nothing reads the ISO again to hash it.
    digest = write_iso(files, target, disc.label, epoch)
    st = target.stat()
    run.memo.record(target, st, digest)
    size = st.st_size
    if not ctx.scratch:  # a command building in a scratch project names the file where it finally lands
        log.info(f"Wrote {relpath_for_humans(target, ctx.root, absolute=True)} ({size} bytes, sha256={digest})")
    return FileRecord(target.name, digest, size)


def verify_drivers_iso(run: Run) -> IsoReport:
    """Verify the spec's drivers ISO against its stage and notices manifests; the report goes beside it."""
    return _verify(run, _Disc.of(run))


def verify_arch_drivers_iso(run: Run, arch: Arch) -> IsoReport:
    """Verify the one-arch drivers ISO of ``arch`` as :func:`verify_drivers_iso` does the spec's."""
    return _verify(run, _Disc.of(run, arch))


def _verify(run: Run, disc: _Disc) -> IsoReport:
    spec, paths = run.spec, run.paths
    target = disc.target
    disc.report.unlink(missing_ok=True)
    stages = _stages(run, disc)
    files: dict[str, tuple[FileRecord, str]] = {}
    for m in stages:
        for f in m.files:
            files[f.path] = (f.record, f"stage manifest {m.arch.value}")
    if disc.winpe(spec):
        for m in stages:
            for f in m.files:
                files[MediaLayout.WINPE.relocate(f.path)] = (replace(f.record, path=MediaLayout.WINPE.relocate(f.path)),
                                                             f"stage manifest {m.arch.value}")
    for n in NoticesManifest.read(paths.notices_manifest).files:
        files[n.path] = (n, "notices manifest")
    required = [p.inf for p in media_packages(stages) if p.required]
    exp = Expectation(label=disc.label, required_paths=required, files=files, epoch=run.epoch,
                      same_extent=linked_copies(files))
    with discard_on_failure([target]):
        report = verify_iso(target, [a.value for a in disc.arches], exp, report=disc.report, memo=run.memo)
    log.info(f"verified {target.name}: {report.files_checked} files OK")
    return report
