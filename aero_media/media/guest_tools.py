"""Assemble the Guest Tools media: scripts, drivers per arch, certificates, notices; ISO, zip, manifest.

The ISO and the zip carry the same tree. ``manifest.json`` lists every other file
on the media with sha256 and size, with the package identity, the signing policy,
provenance (no absolute paths) and the validation summary; ``config/files.sha256``
is the same list in a form ``setup.cmd /verify-media`` can read with ``certutil``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import log
from ..errors import SourceError
from ..fsutil import dump_json, relpath_for_humans, staging_dir, write_bytes_atomic
from ..manifests import (
    CertRecord,
    FileRecord,
    GuestToolsDriver,
    GuestToolsManifest,
    GuestToolsReport,
    NoticesManifest,
    PackageIdentity,
    StageManifest,
)
from ..paths import MediaLayout, Run
from ..spec.model import Spec
from ..spec.types import Arch
from ..win7.certs import Cert, refuse_private_keys
from .certs import media_certs
from .contents import manifest_inputs, media_record, provenance, stage_manifests, staged_media
from .discard import discard_on_failure
from .files import MANIFEST_NAME, MediaFile
from .isowriter import write_iso
from .notices import NOTICES_NAME
from .scripts import MEDIA_HASHES_PATH, DriverEntry, render_guest_tools_scripts, render_media_hashes
from .templates import TemplateError
from .verify import Expectation, verify_iso, verify_zip
from .zipwriter import write_zip

REQUIRED_FILES = ("setup.cmd", "uninstall.cmd", "verify.cmd", "README.txt", NOTICES_NAME,
                  "config/devices.cmd", MANIFEST_NAME)


def _driver_entries(spec: Spec, stages: list[StageManifest]) -> list[DriverEntry]:
    out = []
    for m in stages:
        for p in m.packages:
            dev = spec.driver(p.driver).device
            out.append(DriverEntry(arch=m.arch.value, name=p.driver, inf=p.inf.rsplit("/", 1)[-1],
                                   service=p.service or dev.service, device=dev.name, sys_file=p.sys_file))
    return out


def _render_scripts(spec: Spec, drivers: list[DriverEntry], test_certs: Sequence[Cert], trust: Sequence[Cert],
                    shipped: dict[str, Cert], sha256_only: bool) -> dict[str, bytes]:
    gt = spec.guest_tools
    test_names = {c.name for c in test_certs}
    try:
        return render_guest_tools_scripts(
            spec.contract, drivers, signing_policy=spec.signing.policy,
            certs=[c.name for c in test_certs], trust_certs=[c.name for c in trust if c.name not in test_names],
            sha256_only=sha256_only, version=gt.version, build_id=gt.build_id, label=gt.volume_label,
            # Thumbprints from here, so setup never parses certutil's (localised) output.
            cert_thumbprints={c.name: c.thumbprint for c in shipped.values()})
    except TemplateError as exc:  # names or INF values the batch scripts cannot carry
        raise SourceError(f"{spec.display}: cannot write the Guest Tools scripts: {exc}",
                          "rename the offending file or fix the INF value in the source") from None


def guest_tools_files(run: Run) -> tuple[list[MediaFile], GuestToolsManifest]:
    """Return the media files and the manifest (without writing anything)."""
    spec, paths = run.spec, run.paths
    gt = spec.guest_tools
    stages = stage_manifests(spec, paths)
    notices = NoticesManifest.read(paths.notices_manifest)
    files, records = staged_media(paths, stages, notices, MediaLayout.GUEST_TOOLS)
    refuse_private_keys([(f.path, f.source) for f in files if f.source is not None], spec.name)

    chosen = media_certs(spec, paths, stages)
    test_certs, trust, shipped, sha256_only = chosen.test, chosen.trust, chosen.shipped, chosen.sha256_only
    for c in shipped.values():
        files.append(MediaFile(f"certs/{c.name}", data=c.der))
        records.append(media_record(f"certs/{c.name}", c.der))

    drivers = _driver_entries(spec, stages)
    for path, data in _render_scripts(spec, drivers, test_certs, trust, shipped, sha256_only).items():
        files.append(MediaFile(path, data=data))
        records.append(media_record(path, data))
    hashes = render_media_hashes([(r.path, r.sha256, r.size) for r in records])
    files.append(MediaFile(MEDIA_HASHES_PATH, data=hashes))
    records.append(media_record(MEDIA_HASHES_PATH, hashes))

    manifest = GuestToolsManifest(
        package=PackageIdentity(GuestToolsManifest.PACKAGE_NAME, gt.version, gt.build_id, run.epoch),
        spec=spec.name,
        volume_label=gt.volume_label,
        signing_policy=spec.signing.policy,
        certs=tuple(CertRecord(f"certs/{c.name}", c.subject, c.thumbprint,
                               ("Root", "TrustedPublisher") if c in test_certs else ("TrustedPublisher",))
                    for c in shipped.values()),
        sha256_only_catalogs=sha256_only,
        contract=(spec.contract.name, spec.contract.version),
        drivers=tuple(GuestToolsDriver(arch=Arch(d.arch), name=d.name, device=d.device, service=d.service,
                                       inf=f"{MediaLayout.GUEST_TOOLS.driver_dir(d.arch, d.name)}/{d.inf}")
                      for d in drivers),
        missing_optional=tuple(mo for m in stages for mo in m.missing_optional),
        validation={m.arch: m.validation.summary for m in stages},
        source_provenance=provenance(run, stages),
        inputs=manifest_inputs(spec),
        files=tuple(records),
    )
    files.append(MediaFile(MANIFEST_NAME, data=dump_json(manifest.to_json())))
    return files, manifest


def build_guest_tools(run: Run) -> GuestToolsManifest:
    """Write the Guest Tools ISO, zip and manifest.json as one set: ``guest-tools/`` under ``build/<spec>/media/``."""
    spec, ctx, paths, epoch = run.spec, run.ctx, run.pending, run.epoch
    files, manifest = guest_tools_files(run)
    # The set is written into a temp folder and swapped in whole: dist/ holds the old set or the new one.
    with staging_dir(paths.guest_tools_dir) as tmp:
        iso_digest = write_iso(files, tmp / paths.guest_tools_iso.name, spec.guest_tools.volume_label, epoch)
        write_zip(files, tmp / paths.guest_tools_zip.name, epoch)
        write_bytes_atomic(tmp / paths.guest_tools_manifest.name, dump_json(manifest.to_json()))
    # The ISO was hashed as written; the folder's swap moves it unchanged (its stat is taken where it landed).
    run.memo.record(paths.guest_tools_iso, paths.guest_tools_iso.stat(), iso_digest)
    for out in (paths.guest_tools_iso, paths.guest_tools_zip):
        # Hashed once, here (the ISO's digest is in the memo already): verify and doit's checker read the memo.
        digest, size = run.memo.sha256(out), out.stat().st_size
        log.info(f"Wrote {relpath_for_humans(out, ctx.root)} ({size} bytes, sha256={digest})")
    return manifest


def verify_guest_tools(run: Run) -> GuestToolsReport:
    """Read the ISO and the zip back; both must hold exactly the manifest's files, byte for byte."""
    spec, paths = run.spec, run.pending
    paths.guest_tools_report.unlink(missing_ok=True)
    manifest = GuestToolsManifest.read(paths.guest_tools_manifest)
    files: dict[str, tuple[FileRecord, str]] = {r.path: (r, "dist manifest.json") for r in manifest.files}
    # The manifest on the media must be the very one beside them.
    files[MANIFEST_NAME] = (media_record(MANIFEST_NAME, paths.guest_tools_manifest.read_bytes()), "dist/")
    required = [*REQUIRED_FILES, *(d.inf for d in manifest.drivers)]
    exp = Expectation(label=spec.guest_tools.volume_label, required_paths=required, files=files, epoch=run.epoch)
    with discard_on_failure([paths.guest_tools_dir]):
        iso = verify_iso(paths.guest_tools_iso, [a.value for a in spec.arches], exp, self_described=False,
                         memo=run.memo)
        zip_report = verify_zip(paths.guest_tools_zip, exp, run.memo)
    report = GuestToolsReport(iso=iso, zip=zip_report)
    write_bytes_atomic(paths.guest_tools_report, dump_json(report.to_json()))
    log.info(f"verified {paths.guest_tools_iso.name} and {paths.guest_tools_zip.name}: "
             f"{iso.files_checked} files each")
    return report
