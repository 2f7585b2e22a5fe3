"""Pieces every medium shares: staged and notice files as media entries, records, templates, provenance."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib import resources
from string import Template
from typing import Any

from .fsutil import read_json, relpath_for_humans
from .isofs import MediaFile
from .paths import SpecPaths
from .spec import Context, Spec


def render_template(name: str, **values: str) -> str:
    """Fill a package-data template; a missing value is an error, not a blank."""
    text = resources.files("pipeline").joinpath("templates", name).read_text("ascii")
    return Template(text).substitute(values)


def crlf(text: str) -> bytes:
    """Encode text for Windows 7 tools (Notepad, cmd): ASCII with CRLF line ends."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("ascii")


def media_record(path: str, data: bytes) -> dict[str, Any]:
    """Return the {path, sha256, size} record of in-memory bytes."""
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def load_provenance(spec: Spec, ctx: Context, stage_manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine the source record (from extraction, or the spec) with what each stage took."""
    paths = SpecPaths(spec, ctx)
    if paths.provenance.exists():
        prov = read_json(paths.provenance)
    else:
        # Relative to the repo or ~, never another absolute path (media travel).
        shown = relpath_for_humans(spec.source.path, ctx.root) if spec.source.path else None
        prov = {"source": {"kind": spec.source.kind, "path": shown}}
    prov["staged"] = [
        {"arch": m["arch"], "driver": p["driver"], "os_dir": p["os_dir"], "source_dir": p["source_dir"],
         "files": [{k: f[k] for k in ("path", "sha256", "size", "source_path")} for f in p["files"]]}
        for m in stage_manifests for p in m["packages"]
    ]
    return prov


def staged_media(paths: SpecPaths, stages: list[dict[str, Any]], notices: dict[str, Any],
                 rename: Callable[[str], str] = lambda p: p) -> tuple[list[MediaFile], list[dict[str, Any]]]:
    """Media entries and {path, sha256, size} records for the staged files (renamed) and the notices."""
    files: list[MediaFile] = []
    records: list[dict[str, Any]] = []
    for m in stages:
        for f in m["files"]:
            files.append(MediaFile(rename(f["path"]), source=paths.stage_root / f["path"]))
            records.append({"path": rename(f["path"]), "sha256": f["sha256"], "size": f["size"]})
    for f in notices["files"]:
        files.append(MediaFile(f["path"], source=paths.notices_dir / f["path"]))
        records.append({k: f[k] for k in ("path", "sha256", "size")})
    return files, records
