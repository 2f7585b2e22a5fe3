"""Assemble the Guest Tools media: scripts, drivers per arch, certificates, notices; ISO, zip, manifest.

The ISO and the zip carry the same tree. ``manifest.json`` lists every other file
on the media with sha256 and size, with the package identity, the signing policy,
provenance (no absolute paths) and the validation summary; ``config/files.sha256``
is the same list in a form ``setup.cmd /verify-media`` can read with ``certutil``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import log
from .catalog import load_catalog
from .certs import Cert, load_cert_file, publisher_cert, refuse_private_keys
from .media import load_provenance, media_record, staged_media
from .errors import SourceError, ValidationError
from .fsutil import dump_json, read_json, relpath_for_humans, sha256_file, write_bytes_atomic
from .isofs import MediaFile, write_iso
from .paths import SpecPaths
from .scripts import MEDIA_HASHES_PATH, DriverEntry, render_guest_tools_scripts, render_media_hashes
from .spec import Context, Spec
from .zipfs import write_zip

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
PACKAGE_NAME = "aero-guest-tools"


def _media_driver_path(staged: str) -> str:
    """``win7/<arch>/<driver>/<file>`` on the drivers ISO is ``drivers/<arch>/<driver>/<file>`` here."""
    parts = staged.split("/")
    return "/".join(["drivers", *parts[1:]])


def _driver_entries(spec: Spec, stages: list[dict[str, Any]]) -> list[DriverEntry]:
    out = []
    for m in stages:
        facts = {p["driver"]: p.get("facts", {}) for p in m.get("validation", {}).get("packages", [])}
        for p in m["packages"]:
            f = facts.get(p["driver"], {})
            dev = spec.driver(p["driver"]).device
            inf = f.get("inf") or next(x["path"].rsplit("/", 1)[-1] for x in p["files"]
                                       if x["path"].lower().endswith(".inf"))
            out.append(DriverEntry(arch=m["arch"], name=p["driver"], inf=inf, service=f.get("service") or dev.service,
                                   device=dev.name, sys_file=f.get("service_binary")))
    return out


def _publisher_certs(paths: SpecPaths, stages: list[dict[str, Any]]) -> tuple[list[Cert], bool]:
    """Signer certificates of the staged catalogs (deduplicated), and whether any catalog is SHA-256-only."""
    certs: dict[str, Cert] = {}
    sha256_only = False
    for m in stages:
        for rec in m["files"]:
            if not rec["path"].lower().endswith(".cat"):
                continue
            try:
                cat = load_catalog(paths.stage_root / rec["path"])
            except ValidationError:
                continue  # validation already judged it; nothing to trust
            if cat.placeholder or not cat.signed:
                continue
            algos = set(cat.digest_algorithms)
            sha256_only |= "sha256" in algos and "sha1" not in algos
            primary = cat.primary
            if primary is not None and primary.certificate:
                c = publisher_cert(primary.certificate)
                certs.setdefault(c.thumbprint, c)
    return sorted(certs.values(), key=lambda c: c.name), sha256_only


def _spec_certs(spec: Spec) -> list[Cert]:
    gt = spec.guest_tools
    out = []
    for raw, path in zip(gt.certs_raw, gt.certs, strict=True):
        if not path.is_file():
            raise SourceError(f"{spec.display}: outputs.guest_tools.certs: {raw!r} does not exist",
                              "create one with `aero-media make-test-cert`, or fix the path")
        out.append(load_cert_file(path, f"{spec.display}: outputs.guest_tools.certs: {raw}"))
    if gt.signing_policy == "testsigning" and not out:
        raise SourceError(f"{spec.display}: outputs.guest_tools.signing_policy is testsigning but certs is empty",
                          "add the test certificate (.cer) the drivers are signed with to outputs.guest_tools.certs")
    if gt.signing_policy != "testsigning" and out:
        raise SourceError(f"{spec.display}: outputs.guest_tools.certs is only used with signing_policy testsigning "
                          f"(this spec says {gt.signing_policy})", "remove certs, or set signing_policy: testsigning")
    return out


def _render_scripts(spec: Spec, drivers: list[DriverEntry], test_certs: list[Cert], trust: list[Cert],
                    shipped: dict[str, Cert], sha256_only: bool) -> dict[str, bytes]:
    gt = spec.guest_tools
    test_names = {c.name for c in test_certs}
    return render_guest_tools_scripts(
        spec.contract, drivers, signing_policy=gt.signing_policy,
        certs=[c.name for c in test_certs], trust_certs=[c.name for c in trust if c.name not in test_names],
        sha256_only=sha256_only, version=gt.version, build_id=gt.build_id, label=gt.volume_label,
        # Thumbprints from here, so setup never parses certutil's (localised) output.
        cert_thumbprints={c.name: c.thumbprint for c in shipped.values()})


def guest_tools_files(spec: Spec, ctx: Context, stage_paths: list[Path], epoch: int) -> tuple[list[MediaFile],
                                                                                              dict[str, Any]]:
    """Return the media files and the manifest (without writing anything)."""
    paths = SpecPaths(spec, ctx)
    gt = spec.guest_tools
    stages = [read_json(p) for p in stage_paths]
    notices = read_json(paths.notices_manifest)
    files, records = staged_media(paths, stages, notices, rename=_media_driver_path)
    refuse_private_keys([(f.path, f.source) for f in files if f.source is not None], spec.name)

    test_certs = _spec_certs(spec)
    publisher, sha256_only = _publisher_certs(paths, stages)
    trust = publisher if (gt.trust_publisher and gt.signing_policy != "production") else []
    shipped: dict[str, Cert] = {}
    for c in [*test_certs, *trust]:
        shipped.setdefault(c.name, c)
    for c in shipped.values():
        data = c.der
        files.append(MediaFile(f"certs/{c.name}", data=data))
        records.append(media_record(f"certs/{c.name}", data))

    drivers = _driver_entries(spec, stages)
    try:
        scripts = _render_scripts(spec, drivers, test_certs, trust, shipped, sha256_only)
    except ValueError as exc:  # names or INF values the batch scripts cannot carry
        raise SourceError(f"{spec.display}: cannot write the Guest Tools scripts: {exc}",
                          "rename the offending file or fix the INF value in the source") from None
    for path, data in scripts.items():
        files.append(MediaFile(path, data=data))
        records.append(media_record(path, data))
    hashes = render_media_hashes([(r["path"], r["sha256"], r["size"]) for r in records])
    files.append(MediaFile(MEDIA_HASHES_PATH, data=hashes))
    records.append(media_record(MEDIA_HASHES_PATH, hashes))

    summary: dict[str, Any] = {}
    for m in stages:
        summary[m["arch"]] = m.get("validation", {}).get("summary")
    manifest = {
        "schema_version": MANIFEST_SCHEMA,
        "package": {"name": PACKAGE_NAME, "version": gt.version, "build_id": gt.build_id,
                    "source_date_epoch": epoch},
        "spec": spec.name,
        "volume_label": gt.volume_label,
        "signing_policy": gt.signing_policy,
        "certs_required": gt.signing_policy == "testsigning",
        "certs": [{"path": f"certs/{c.name}", "subject": c.subject, "sha1_thumbprint": c.thumbprint,
                   "stores": ["Root", "TrustedPublisher"] if c in test_certs else ["TrustedPublisher"]}
                  for c in shipped.values()],
        "sha256_only_catalogs": sha256_only,
        "contract": {"name": spec.contract.name, "version": spec.contract.version},
        "drivers": [{"arch": d.arch, "name": d.name, "device": d.device, "service": d.service,
                     "inf": f"drivers/{d.arch}/{d.name}/{d.inf}"} for d in drivers],
        "missing_optional": [mo for m in stages for mo in m["missing_optional"]],
        "validation": summary,
        "provenance": load_provenance(spec, ctx, stages),
        "files": sorted(records, key=lambda r: r["path"]),
    }
    files.append(MediaFile(MANIFEST_NAME, data=dump_json(manifest)))
    return files, manifest


def build_guest_tools(spec: Spec, ctx: Context, stage_paths: list[Path], epoch: int) -> dict[str, Any]:
    """Write the Guest Tools ISO, zip and manifest.json under ``dist/<spec>/``."""
    paths = SpecPaths(spec, ctx)
    paths.guest_tools_manifest.unlink(missing_ok=True)
    paths.guest_tools_report.unlink(missing_ok=True)
    files, manifest = guest_tools_files(spec, ctx, stage_paths, epoch)
    write_iso(files, paths.guest_tools_iso, spec.guest_tools.volume_label, epoch)
    write_zip(files, paths.guest_tools_zip, epoch)
    write_bytes_atomic(paths.guest_tools_manifest, dump_json(manifest))
    for out in (paths.guest_tools_iso, paths.guest_tools_zip):
        digest, size = sha256_file(out)
        log.info(f"Wrote {relpath_for_humans(out, ctx.root)} ({size} bytes, sha256={digest})")
    return manifest


def verify_guest_tools(spec: Spec, ctx: Context) -> dict[str, Any]:
    """Read the ISO and the zip back; both must hold exactly the manifest's files, byte for byte."""
    from .verify import Expectation, discard_on_failure, verify_iso, verify_zip

    paths = SpecPaths(spec, ctx)
    paths.guest_tools_report.unlink(missing_ok=True)
    manifest = read_json(paths.guest_tools_manifest)
    files = {r["path"]: {**r, "_from": "dist manifest.json"} for r in manifest["files"]}
    required = ["setup.cmd", "uninstall.cmd", "verify.cmd", "README.txt", "THIRD_PARTY_NOTICES.md",
                "config/devices.cmd", MANIFEST_NAME] + [d["inf"] for d in manifest["drivers"]]
    exp = Expectation(label=spec.guest_tools.volume_label, required_paths=required, files=files)
    with discard_on_failure([paths.guest_tools_iso, paths.guest_tools_zip, paths.guest_tools_manifest]):
        iso = verify_iso(paths.guest_tools_iso, [a.value for a in spec.arches], exp)
        zip_result = verify_zip(paths.guest_tools_zip, exp, manifest_bytes=paths.guest_tools_manifest.read_bytes())
    report = {"iso": iso, "zip": zip_result, "ok": True}
    write_bytes_atomic(paths.guest_tools_report, dump_json(report))
    log.info(f"verified {paths.guest_tools_iso.name} and {paths.guest_tools_zip.name}: "
             f"{iso['files_checked']} files each")
    return report
