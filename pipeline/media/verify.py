"""Re-open a written ISO and prove it holds what was staged.

The image is parsed back by :mod:`pipeline.isoscan`, which shares no code with
pycdlib (the writer): names from Joliet (what Windows reads), the labels, and the
sha256 of every file; Rock Ridge names are listed with pycdlib and must agree. All of
it is compared against the medium's own ``manifest.json`` and,
in the pipeline, against the stage and notices manifests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycdlib

from .errors import SourceError, VerifyError
from .fsutil import CHUNK, sha256_file, write_json_atomic
from .isofs import JOLIET_LABEL_MAX
from .isoscan import open_scan, read_file
from .log import Progress


@dataclass(frozen=True)
class IsoContent:
    """What a reader sees on an ISO: labels and files per name space, with hashes."""

    label: str
    joliet_label: str | None
    joliet: dict[str, tuple[str, int]]
    rock_ridge: set[str]


def read_iso(path: Path) -> IsoContent:
    """Hash every Joliet file with our own reader; list Rock Ridge names with pycdlib as a cross-check."""
    try:
        fp, scan = open_scan(path)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})", "check the path") from None
    files: dict[str, tuple[str, int]] = {}
    progress = Progress(f"verify {path.name}", path.stat().st_size)
    with fp:
        for f in scan.files:
            h = hashlib.sha256()
            for chunk in read_file(fp, scan, f):
                h.update(chunk)
                progress.advance(len(chunk))
            progress.advance(0, files=1)
            files[f.path] = (h.hexdigest(), f.size)
    progress.close()
    return IsoContent(scan.label, scan.joliet_label, files, _rock_ridge_names(path))


def _rock_ridge_names(path: Path) -> set[str]:
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(path))
    except (pycdlib.pycdlibexception.PyCdlibException, OSError, ValueError) as exc:
        raise SourceError(f"{path}: not a readable ISO 9660 image ({exc})", "rebuild it") from None
    try:
        rr: set[str] = set()
        if iso.has_rock_ridge():
            for root, _dirs, names in iso.walk(rr_path="/"):
                rr.update(f"{root.rstrip('/')}/{n}".lstrip("/") for n in names)
        return rr
    finally:
        iso.close()


@dataclass
class Expectation:
    """What a medium must hold."""

    label: str | None = None
    required_paths: list[str] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


def check_iso(content: IsoContent, exp: Expectation) -> list[str]:
    """Return every problem found comparing ``content`` with ``exp``."""
    problems: list[str] = []
    if exp.label is not None:
        if content.label != exp.label:
            problems.append(f"volume label is {content.label!r}, expected {exp.label!r}")
        if content.joliet_label is not None and content.joliet_label != exp.label[:JOLIET_LABEL_MAX]:
            problems.append(f"Joliet volume label is {content.joliet_label!r}, expected "
                            f"{exp.label[:JOLIET_LABEL_MAX]!r}")
    if content.joliet_label is None:
        problems.append("the ISO has no Joliet tree; Windows would show upper-case 8.3 names")
    for p in exp.required_paths:
        if p not in content.joliet:
            problems.append(f"missing required file {p}")
    for p, rec in sorted(exp.files.items()):
        got = content.joliet.get(p)
        if got is None:
            if p not in exp.required_paths:
                problems.append(f"missing {p} (listed in {rec.get('_from', 'the manifest')})")
        elif got != (rec["sha256"], rec["size"]):
            problems.append(f"{p}: sha256 {got[0]} size {got[1]} differs from {rec.get('_from', 'the manifest')} "
                            f"(sha256 {rec['sha256']} size {rec['size']})")
    extra = sorted(set(content.joliet) - set(exp.files) - set(exp.required_paths))
    problems += [f"unexpected file {p} (not in any manifest)" for p in extra]
    if content.rock_ridge and content.rock_ridge != set(content.joliet):
        diff = sorted(content.rock_ridge.symmetric_difference(content.joliet))
        problems.append(f"Rock Ridge and Joliet names differ: {', '.join(diff[:10])}")
    return problems


def expectation_from_media_manifest(content_manifest: dict[str, Any], require_arches: Iterable[str]) -> Expectation:
    """Build the expectation a medium states about itself in its ``manifest.json``."""
    files = {r["path"]: {**r, "_from": "manifest.json"} for r in content_manifest.get("files", [])}
    arches = set(require_arches)
    required = ["README.txt", "THIRD_PARTY_NOTICES.md", "manifest.json"]
    required += [p["inf"] for p in content_manifest.get("packages", []) if p["required"] and p["arch"] in arches]
    return Expectation(label=content_manifest.get("volume_label"), required_paths=required, files=files)


def _is_media_manifest(data: Any) -> bool:
    if not isinstance(data, dict) or not isinstance(data.get("files", []), list):
        return False
    recs = data.get("files", [])
    pkgs = data.get("packages", [])
    return (all(isinstance(r, dict) and isinstance(r.get("path"), str) and isinstance(r.get("sha256"), str)
                and isinstance(r.get("size"), int) for r in recs)
            and isinstance(pkgs, list)
            and all(isinstance(p, dict) and {"inf", "arch", "required"} <= set(p) for p in pkgs))


def read_media_manifest(path: Path) -> dict[str, Any]:
    """Read ``manifest.json`` from an ISO (our own reader), or {} when it has none."""
    try:
        fp, scan = open_scan(path)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})", "check the path") from None
    with fp:
        entry = next((f for f in scan.files if f.path == "manifest.json"), None)
        if entry is None:
            return {}
        if entry.size > 64 * 1024 * 1024:
            raise VerifyError(f"{path.name}: manifest.json is {entry.size} bytes, not a media manifest",
                              "rebuild the media")
        raw = b"".join(read_file(fp, scan, entry))
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerifyError(f"{path.name}: manifest.json is not valid JSON ({exc})", "rebuild the media") from None
    if not _is_media_manifest(data):
        raise VerifyError(f"{path.name}: manifest.json is not a media manifest (no files list of "
                          "{path, sha256, size})", "rebuild the media, or verify media built by this tool")
    result: dict[str, Any] = data
    return result


def verify_iso(path: Path, require_arches: Iterable[str], extra: Expectation | None = None,
               report: Path | None = None, default_required: Iterable[str] = ("viostor", "netkvm")) -> dict[str, Any]:
    """Verify an ISO against its own manifest (plus ``extra``); write ``report``; raise on problems."""
    arches = sorted(set(require_arches))
    content = read_iso(path)
    manifest = read_media_manifest(path)
    exp = expectation_from_media_manifest(manifest, arches)
    if not manifest:
        # Media from elsewhere: hold them to Aero's documented minimum.
        exp.required_paths = ["README.txt", "THIRD_PARTY_NOTICES.md"] + [
            f"win7/{a}/{d}/{d}.inf" for a in arches for d in default_required]
        exp.files = {}
        exp.label = None
    mismatched: list[str] = []
    if extra is not None:
        if extra.label is not None:
            exp.label = extra.label
        exp.required_paths += [p for p in extra.required_paths if p not in exp.required_paths]
        for p, rec in extra.files.items():
            mine = exp.files.get(p)
            if manifest and mine is None:
                mismatched.append(f"{p} is in {rec.get('_from')} but not in manifest.json")
            elif mine is not None and (mine["sha256"], mine["size"]) != (rec["sha256"], rec["size"]):
                mismatched.append(f"{p}: manifest.json and {rec.get('_from')} disagree on its sha256")
            exp.files[p] = rec
    problems = mismatched + check_iso(content, exp)
    if not manifest:
        # Media from elsewhere may carry more files than we know of.
        problems = [p for p in problems if not p.startswith("unexpected file")]
    digest, size = sha256_file(path)
    result = {
        "iso": path.name,
        "sha256": digest,
        "size": size,
        "label": content.label,
        "joliet_label": content.joliet_label,
        "require_arches": arches,
        "files_checked": len(content.joliet),
        "ok": not problems,
        "problems": problems,
    }
    if report is not None:
        write_json_atomic(report, result)
    if problems:
        raise VerifyError(f"{path.name}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems),
                          f"see {report.name if report else 'the list above'}; rebuild the media")
    return result


@contextlib.contextmanager
def discard_on_failure(media: list[Path]) -> Iterator[None]:
    """Remove media that failed verification, so the next run rebuilds them instead of trusting them."""
    try:
        yield
    except VerifyError as exc:
        for m in media:
            m.unlink(missing_ok=True)
        raise VerifyError(exc.message, "the failed media were removed (the report stays); run doit again to "
                                       "rebuild them, and report a bug if it fails again") from None


def verify_zip(path: Path, exp: Expectation, manifest_bytes: bytes | None = None) -> dict[str, Any]:
    """Check a zip holds exactly the expected files with the expected bytes (and the given manifest.json)."""
    import zipfile

    problems: list[str] = []
    seen: dict[str, tuple[str, int]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                h = hashlib.sha256()
                size = 0
                with zf.open(info) as fp:
                    while chunk := fp.read(CHUNK):
                        h.update(chunk)
                        size += len(chunk)
                seen[info.filename] = (h.hexdigest(), size)
                if info.filename == "manifest.json" and manifest_bytes is not None:
                    if (h.hexdigest(), size) != (hashlib.sha256(manifest_bytes).hexdigest(), len(manifest_bytes)):
                        problems.append("manifest.json in the zip differs from the one beside it")
    except (zipfile.BadZipFile, OSError) as exc:
        raise VerifyError(f"{path.name}: not a readable zip ({exc})", "rebuild it") from None
    for p in exp.required_paths:
        if p not in seen:
            problems.append(f"missing required file {p}")
    for p, rec in sorted(exp.files.items()):
        got = seen.get(p)
        if got is None:
            if p not in exp.required_paths:
                problems.append(f"missing {p}")
        elif got != (rec["sha256"], rec["size"]):
            problems.append(f"{p}: sha256 {got[0]} size {got[1]} differs from the manifest")
    problems += [f"unexpected file {p}" for p in sorted(set(seen) - set(exp.files) - set(exp.required_paths))]
    if problems:
        raise VerifyError(f"{path.name}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems),
                          "rebuild the media")
    digest, size = sha256_file(path)
    return {"zip": path.name, "sha256": digest, "size": size, "files_checked": len(seen), "ok": True}
