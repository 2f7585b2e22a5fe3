"""What a build made, in one record per spec (``build/<spec>/report.json``) and one summary for people.

Everything here is read from the records the stages already wrote (the stage
manifests, the media's ``.verify.json`` reports, the proof and servicing records):
nothing is hashed or checked again, so the report of an up-to-date build is the
report of the build that made it. The record holds no clock and no absolute path,
and its keys are sorted (``fsutil.dump_json``), so the same build writes the same
bytes. Its JSON Schema is ``specs/report.schema.json``; every key is described
there and in the user guide.

Order is fixed whatever ran in parallel: specs by name, media in :class:`Medium`'s
order, arches in the spec's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from .fsutil import read_json, relpath_for_humans, write_json_atomic
from .manifests import ProofRecord, StageManifest, read_manifest
from .paths import Run, split_staged
from .spec.load import BrokenSpec

SCHEMA_VERSION = 1
"""Of the per-spec record and of the combined report; raised when a key changes meaning or goes."""

Json = dict[str, Any]


class Medium(StrEnum):
    """The media a spec can make, in the order a report lists them."""

    DRIVERS_ISO = "drivers-iso"
    FAT_DISK = "fat-disk"
    GUEST_TOOLS_ISO = "guest-tools-iso"
    GUEST_TOOLS_ZIP = "guest-tools-zip"
    SERVICED = "serviced"


VERIFIED_BY: dict[Medium, str] = {
    Medium.DRIVERS_ISO: "read back with pycdlib (ISO 9660, Joliet, Rock Ridge): every file's sha256 against "
                        "the stage and notices manifests",
    Medium.FAT_DISK: "read back by our FAT32 reader written from fatgen103: every file's sha256 against the "
                     "stage and notices manifests",
    Medium.GUEST_TOOLS_ISO: "read back with pycdlib: every file's sha256 against manifest.json",
    Medium.GUEST_TOOLS_ZIP: "read back with zipfile: every file's sha256 against manifest.json",
    Medium.SERVICED: "rebuilt ISO read back by our ISO reader (boot entries, file systems, the edited files)",
}
"""What proved each medium: one line per kind, as the summary and report.json say it."""

MEDIUM_TITLES: dict[Medium, str] = {
    Medium.DRIVERS_ISO: "drivers ISO", Medium.FAT_DISK: "FAT driver disk",
    Medium.GUEST_TOOLS_ISO: "Guest Tools ISO", Medium.GUEST_TOOLS_ZIP: "Guest Tools zip",
    Medium.SERVICED: "serviced media",
}


def _rel(path: Path, run: Run) -> str:
    return relpath_for_humans(path, run.ctx.root)


def _medium(kind: Medium, path: Path, run: Run, *, size: int, sha256: str, files: int | None, ok: bool,
            problems: Iterable[str] = (), note: str | None = None) -> Json:
    verified_by = VERIFIED_BY[kind] + (f"; {note}" if note else "")
    return {"medium": kind.value, "path": _rel(path, run), "size": size, "sha256": sha256, "files": files,
            "verified_by": verified_by, "result": "ok" if ok else "failed", "problems": list(problems)}


def _media(run: Run) -> list[Json]:
    """Each medium's entry, from its verify report (or the servicing record)."""
    spec, p = run.spec, run.paths
    out: list[Json] = []
    iso = read_json(p.drivers_iso_report)
    out.append(_medium(Medium.DRIVERS_ISO, p.drivers_iso, run, size=iso["size"], sha256=iso["sha256"],
                       files=iso["files_checked"], ok=iso["ok"], problems=iso["problems"]))
    if spec.fat_disk.enabled:
        fat = read_json(p.fat_disk_report)
        out.append(_medium(Medium.FAT_DISK, p.fat_disk, run, size=fat["size"], sha256=fat["sha256"],
                           files=fat["files_checked"], ok=fat["ok"], problems=fat["problems"],
                           note=f"fsck.fat -n: {fat['fsck']}"))
    gt = read_json(p.guest_tools_report)
    out.append(_medium(Medium.GUEST_TOOLS_ISO, p.guest_tools_iso, run, size=gt["iso"]["size"],
                       sha256=gt["iso"]["sha256"], files=gt["iso"]["files_checked"], ok=gt["iso"]["ok"],
                       problems=gt["iso"]["problems"]))
    out.append(_medium(Medium.GUEST_TOOLS_ZIP, p.guest_tools_zip, run, size=gt["zip"]["size"],
                       sha256=gt["zip"]["sha256"], files=gt["zip"]["files_checked"], ok=gt["zip"]["ok"]))
    if spec.install_media is not None:
        record = read_json(p.servicing_record)
        for o in sorted(record["outputs"], key=lambda o: str(o["path"])):
            out.append(_medium(Medium.SERVICED, p.install_media_dir / o["path"], run, size=o["size"],
                               sha256=o["sha256"], files=None, ok=True))
    return out


def _catalog_kind(catalog: Json | None) -> str:
    """How a package's catalog is signed: its digest algorithms ("sha1", "sha1+sha256"), or why there are none."""
    if not catalog:
        return "none"
    if catalog.get("placeholder"):
        return "placeholder"
    if not catalog.get("signed"):
        return "unsigned"
    return "+".join(sorted({str(a).lower() for a in catalog.get("digest_algorithms") or ()})) or "unknown"


def _arch(run: Run, manifest: StageManifest) -> Json:
    """One arch's packages by outcome, findings by severity, payload pins and catalog signing."""
    counts = {"total": 0, "ok": 0, "warning": 0, "error": 0}
    catalogs: dict[tuple[str, str | None], int] = {}
    for rep in manifest.validation.reports:
        counts["total"] += 1
        counts["error" if rep.errors else "warning" if rep.warnings else "ok"] += 1
        cat = rep.facts.get("catalog")
        key = (_catalog_kind(cat), cat.get("signer_subject") if cat else None)
        catalogs[key] = catalogs.get(key, 0) + 1
    summary = manifest.validation.summary
    staged = {f.path: f.sha256 for pkg in manifest.packages for f in pkg.files}
    pins = {path: want for path, want in run.spec.source.expect.items() if split_staged(path)[0] is manifest.arch}
    return {
        "arch": manifest.arch.value,
        "packages": counts,
        "findings": {"error": summary.error, "warning": summary.warning, "info": summary.info},
        # Staging fails on a mismatch, so a built arch matches them all; counted from the record, not assumed.
        "pins": ({"matched": sum(staged.get(path) == want.lower() for path, want in pins.items()),
                  "total": len(pins)} if pins else None),
        "catalogs": [{"digest": kind, "signer": signer, "packages": n}
                     for (kind, signer), n in sorted(catalogs.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))],
    }


def _skipped(run: Run, manifests: Sequence[StageManifest]) -> list[Json]:
    """Optional drivers the source lacked (per arch, or for all), and media the spec turned off."""
    drivers: dict[tuple[str, str | None], str] = {}
    for m in manifests:
        for miss in m.missing_optional:
            drivers[(miss.driver, miss.arch.value if miss.arch else None)] = miss.reason
    # A driver missing on every arch is one entry, as the warning says it.
    arches = {m.arch.value for m in manifests}
    for name in sorted({d for d, _ in drivers}):
        seen = {a for d, a in drivers if d == name and a is not None}
        if arches and seen == arches and len({drivers[(name, a)] for a in seen}) == 1:
            reason = drivers[(name, next(iter(seen)))]
            for a in seen:
                del drivers[(name, a)]
            drivers[(name, None)] = reason
    out = [{"kind": "driver", "name": d, "arch": a, "reason": r}
           for (d, a), r in sorted(drivers.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]
    if not run.spec.fat_disk.enabled:
        out.append({"kind": "medium", "name": Medium.FAT_DISK.value, "arch": None,
                    "reason": "fat_disk.enabled is false in the spec"})
    return out


def spec_report(run: Run) -> Json:
    """The report of one spec's finished build, read from its records (they must all exist)."""
    spec, p = run.spec, run.paths
    manifests = [read_manifest(p.stage_manifest(a), StageManifest.from_json) for a in spec.arches]
    arches = [_arch(run, m) for m in manifests]
    media = _media(run)
    source_pin = None
    if spec.source.is_iso and spec.source.sha256 is not None:
        proof = read_manifest(p.proof_record, ProofRecord.from_json)
        source_pin = {"sha256": spec.source.sha256.lower(), "matched": proof.sha256 == spec.source.sha256.lower()}
    errors = sum(a["findings"]["error"] for a in arches)
    return {
        "schema_version": SCHEMA_VERSION,
        "spec": spec.name,
        "ok": errors == 0 and all(m["result"] == "ok" for m in media),
        "warnings": sum(a["findings"]["warning"] for a in arches),
        "errors": errors,
        "media": media,
        "arches": arches,
        "source_pin": source_pin,
        "skipped": _skipped(run, manifests),
    }


def write_spec_report(run: Run) -> Json:
    """Write ``build/<spec>/report.json`` (atomically) and return it."""
    report = spec_report(run)
    write_json_atomic(run.paths.report, report)
    return report


def combined(reports: Iterable[Json], broken: Iterable[BrokenSpec] = ()) -> Json:
    """The report of a whole run: every built spec's record by name, and the spec files left out as broken."""
    specs = sorted(reports, key=lambda r: str(r["spec"]))
    left_out = sorted(broken, key=lambda b: b.name)
    return {
        "schema_version": SCHEMA_VERSION,
        "ok": not left_out and all(r["ok"] for r in specs),
        "warnings": sum(int(r["warnings"]) for r in specs),
        "specs": specs,
        "broken_specs": [{"spec": b.name, "reason": b.reason} for b in left_out],
    }


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _catalogs_text(catalogs: Sequence[Json]) -> str:
    parts = []
    for c in catalogs:
        who = f"signed by {c['signer']}" if c["signer"] else "no signer"
        parts.append(f"{c['digest']} ({who}, {c['packages']} package{'s' if c['packages'] != 1 else ''})")
    return "; ".join(parts) or "none"


def render(report: Json) -> str:
    """The summary people read at the end of a run: one block per spec, then the broken specs (text, LF lines)."""
    lines: list[str] = []
    for r in report["specs"]:
        state = "OK" if r["ok"] else "FAILED"
        lines.append(f"== {r['spec']}: {state}, {r['warnings']} warning(s), {r['errors']} error(s)")
        for m in r["media"]:
            files = f", {m['files']} files" if m["files"] is not None else ""
            lines.append(f"  {MEDIUM_TITLES[Medium(m['medium'])]}: {m['path']} ({_size(m['size'])}{files})")
            lines.append(f"    verified: {m['result']}: {m['verified_by']}")
            lines.extend(f"    problem: {problem}" for problem in m["problems"])
        for a in r["arches"]:
            pk, pins = a["packages"], a["pins"]
            pin_text = f"{pins['matched']} of {pins['total']} matched" if pins else "no pins"
            lines.append(f"  {a['arch']}: {pk['total']} packages: {pk['ok']} OK, {pk['warning']} with warnings, "
                         f"{pk['error']} with errors; pins: {pin_text}; catalogs: {_catalogs_text(a['catalogs'])}")
        if r["source_pin"] is not None:
            pin = r["source_pin"]
            lines.append(f"  source ISO: sha256 pin {'matched' if pin['matched'] else 'DIFFERS'}")
        for s in r["skipped"]:
            where = f" ({s['arch']})" if s["arch"] else ""
            lines.append(f"  skipped {s['kind']} {s['name']}{where}: {s['reason']}")
    if report["broken_specs"]:
        lines.append("== broken specs (left out):")
        lines.extend(f"  {b['spec']}: {b['reason']}" for b in report["broken_specs"])
    return "".join(line + "\n" for line in lines)
