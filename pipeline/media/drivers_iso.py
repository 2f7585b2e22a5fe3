"""Assemble and write the drivers ISO (``win7/<arch>/<driver>/`` for Windows Setup's "Load Driver")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import log
from .fsutil import dump_json, read_json, relpath_for_humans, sha256_file
from .isofs import MediaFile, write_iso
from .media import crlf, load_provenance, media_record, render_template, staged_media
from .paths import SpecPaths
from .spec import Context, Spec
from .verify import discard_on_failure

MANIFEST_NAME = "manifest.json"
README_NAME = "README.txt"
MEDIA_SCHEMA = 1


def _readme(spec: Spec, packages: list[dict[str, Any]], prov: dict[str, Any]) -> bytes:
    src = prov.get("source", {})
    source_line = src.get("url") or src.get("path") or spec.source.kind
    if src.get("version"):
        source_line += f" (virtio-win {src['version']})"
    rows = ["  driver     arch    required  folder"]
    for p in packages:
        rows.append(f"  {p['driver']:<10} {p['arch']:<7} {'yes' if p['required'] else 'no':<9} "
                    f"\\{p['dir'].replace('/', chr(92))}\\")
    pnputil: list[str] = []
    for arch, title in (("x86", "32-bit Windows 7"), ("amd64", "64-bit Windows 7")):
        infs = [p["inf"] for p in packages if p["arch"] == arch]
        if infs:
            pnputil.append(f"  {title}:")
            pnputil += [f"    pnputil -i -a D:\\{inf.replace('/', chr(92))}" for inf in infs]
    text = render_template(
        "drivers-README.txt",
        label=spec.drivers_iso.volume_label,
        description=spec.description or spec.name,
        source_line=source_line,
        spec=spec.name,
        drivers=", ".join(sorted({p["driver"] for p in packages})),
        driver_table="\n".join(rows) + "\n",
        pnputil_lines="\n".join(pnputil),
    )
    return crlf(text)


def staged_packages(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each staged package with its media folder and INF path, as staged (original case)."""
    packages: list[dict[str, Any]] = []
    for m in stages:
        for p in m["packages"]:
            infs = [f["path"] for f in p["files"] if f["path"].lower().endswith(".inf")]
            inf = next((i for i in infs if i.lower().endswith(f"/{p['driver']}.inf")), infs[0])
            packages.append({"driver": p["driver"], "device": p["device"], "arch": m["arch"],
                             "required": p["required"], "dir": f"win7/{m['arch']}/{p['driver']}", "inf": inf})
    return packages


def build_drivers_iso(spec: Spec, ctx: Context, stage_manifest_paths: list[Path], epoch: int) -> dict[str, Any]:
    """Write ``dist/<spec>/<filename>.iso`` from the staged trees and notices; return its manifest."""
    paths = SpecPaths(spec, ctx)
    # A report beside a new ISO must be about that ISO: drop the old one first.
    paths.drivers_iso_report.unlink(missing_ok=True)
    stages = [read_json(p) for p in stage_manifest_paths]
    notices = read_json(paths.notices_manifest)
    files, records = staged_media(paths, stages, notices)
    packages = staged_packages(stages)
    prov = load_provenance(spec, ctx, stages)
    readme = _readme(spec, packages, prov)
    files.append(MediaFile(README_NAME, data=readme))
    records.append(media_record(README_NAME, readme))
    manifest = {
        "schema_version": MEDIA_SCHEMA,
        "media": "aero-virtio-win7-drivers",
        "spec": spec.name,
        "description": spec.description,
        "volume_label": spec.drivers_iso.volume_label,
        "source_date_epoch": epoch,
        "contract": {"name": spec.contract.name, "version": spec.contract.version},
        "target": {"os": "win7", "arches": [a.value for a in spec.arches]},
        "packages": packages,
        "missing_optional": [mo for m in stages for mo in m["missing_optional"]],
        "validation": {m["arch"]: m.get("validation", {}).get("summary") for m in stages},
        "provenance": prov,
        "files": sorted(records, key=lambda r: r["path"]),
    }
    files.append(MediaFile(MANIFEST_NAME, data=dump_json(manifest)))
    write_iso(files, paths.drivers_iso, spec.drivers_iso.volume_label, epoch)
    digest, size = sha256_file(paths.drivers_iso)
    log.info(f"Wrote {relpath_for_humans(paths.drivers_iso, ctx.root)} ({size} bytes, sha256={digest})")
    return {"sha256": digest, "size": size}


def verify_drivers_iso(spec: Spec, ctx: Context) -> dict[str, Any]:
    """Verify the spec's drivers ISO against its stage and notices manifests; write the report."""
    from .verify import Expectation, verify_iso

    paths = SpecPaths(spec, ctx)
    paths.drivers_iso_report.unlink(missing_ok=True)
    files: dict[str, dict[str, Any]] = {}
    stages = [read_json(paths.stage_manifest(a)) for a in spec.arches]
    for m in stages:
        for rec in m["files"]:
            files[rec["path"]] = {**rec, "_from": f"stage manifest {m['arch']}"}
    for rec in read_json(paths.notices_manifest)["files"]:
        files[rec["path"]] = {**rec, "_from": "notices manifest"}
    required = [p["inf"] for p in staged_packages(stages) if p["required"]]
    exp = Expectation(label=spec.drivers_iso.volume_label, required_paths=required, files=files)
    with discard_on_failure([paths.drivers_iso]):
        result = verify_iso(paths.drivers_iso, [a.value for a in spec.arches], exp, report=paths.drivers_iso_report)
    log.info(f"verified {paths.drivers_iso.name}: {result['files_checked']} files OK")
    return result
