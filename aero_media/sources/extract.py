"""The extract stage: stream the Windows 7 drivers out of the upstream virtio-win ISO.

Extraction walks the ISO once, applies the same selection rules as directory
sources, and copies out only the Windows 7 driver folders, the root licence files
and ``data/info.json``. ``build/<spec>/provenance.json`` records where every byte
came from; it never holds an absolute path outside the repo or ``~``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .. import log
from ..errors import SourceError
from ..fsutil import copy_fp_hashed, staging_dir, write_json_atomic
from ..manifests import ExtractedFile, ExtractedPackage, FetchRecord, IsoFile, Provenance, SourceRecord, read_manifest
from ..paths import Run
from ..spec.model import Spec
from ..win7.inf import parse_inf
from .fetch import check_unchanged, iso_input, vouched
from .isoread import IsoTree
from .selection import Package, Selection, select
from .tree import Entry, Tree

_LABEL_VERSION = re.compile(r"^virtio-win-(\d[\w.\-]*)$", re.IGNORECASE)


def version_from_label(label: str) -> str | None:
    """Return ``X`` of a ``virtio-win-X`` volume label (RPM release is never in it)."""
    m = _LABEL_VERSION.match(label.strip())
    return m.group(1) if m else None


def _copy(tree: Tree, entry: Entry, dest: Path, progress: log.Progress) -> IsoFile:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tree.open(entry) as src, open(dest, "wb") as out:
        digest, size = copy_fp_hashed(src, out, lambda n: progress.advance(n))
    progress.advance(0, files=1)
    dest.chmod(0o644)  # upstream files are 0444; ours must be removable
    return IsoFile(entry.path, digest, size)


def _info_versions(info_path: Path) -> dict[str, str]:
    """Map lower-cased INF paths in data/info.json to their driver_version."""
    try:
        data = json.loads(info_path.read_text("utf-8"))
        return {d["inf_path"].lower(): d["driver_version"] for d in data.get("drivers", [])
                if isinstance(d, dict) and "inf_path" in d and "driver_version" in d}
    except (OSError, ValueError, AttributeError, TypeError):
        log.warn(f"{info_path.name}: not the JSON shape upstream writes; DriverVer not cross-checked")
        return {}


def _driver_ver(path: Path) -> str | None:
    line = parse_inf(path.read_bytes(), path.name).version_value("DriverVer")
    return ",".join(v.strip() for v in line.values) if line is not None else None


def _extracted_package(p: Package, out: Path, copied: dict[str, IsoFile], infos: dict[str, str],
                       warnings: list[str]) -> ExtractedPackage:
    infs = [f for f in p.files if f.rel.lower().endswith(".inf") and "/" not in f.rel]
    ver = _driver_ver(out / infs[0].entry.path) if infs else None
    listed = infs and infs[0].entry.path.lower() in infos
    if listed and ver is not None and infos[infs[0].entry.path.lower()].replace(" ", "") != ver:
        warnings.append(f"{infs[0].entry.path}: DriverVer {ver} differs from data/info.json "
                        f"({infos[infs[0].entry.path.lower()]})")
    return ExtractedPackage(driver=p.driver.name, arch=p.arch, os_dir=p.os_dir, iso_dir=p.source_dir,
                            driver_ver=ver, files=tuple(ExtractedFile(f.rel, copied[f.entry.path]) for f in p.files))


def extract_iso(spec: Spec, iso_path: Path, out_dir: Path, fetched: FetchRecord) -> Provenance:
    """Copy the spec's Windows 7 packages and licence files from ``iso_path`` into ``out_dir``.

    ``out_dir`` is replaced as a whole, only on success. ``fetched`` describes the
    ISO (path for humans, size, and the sha256 when it is already known; the prove
    stage supplies it otherwise). Returns the provenance record.
    """
    with IsoTree.open_path(iso_path, iso_path.name) as tree:
        selection: Selection = select(tree.entries(), spec, tree.display, "virtio-win", skip_links=True)
        for w in selection.warnings:
            log.warn(w)
        wanted = [f.entry for p in selection.packages for f in p.files] + [*selection.notices, *selection.metadata]
        if selection.info_json is not None:
            wanted.append(selection.info_json)
        progress = log.Progress(f"extract {iso_path.name}", sum(e.size for e in wanted))
        copied: dict[str, IsoFile] = {}
        with staging_dir(out_dir) as out:
            for entry in wanted:
                if entry.path not in copied:
                    copied[entry.path] = _copy(tree, entry, out / entry.path, progress)
            progress.close()
            infos = _info_versions(out / selection.info_json.path) if selection.info_json else {}
            warnings = list(selection.warnings)
            packages = [_extracted_package(p, out, copied, infos, warnings) for p in selection.packages]
            if not packages:
                raise SourceError(f"{iso_path.name}: no Windows 7 driver package selected",
                                  "check the spec's drivers")
        label = tree.volume_label
        reader = tree.reader
    for w in warnings[len(selection.warnings):]:
        log.warn(w)
    log.info(f"extracted {len(copied)} files from {iso_path.name} ({reader} names, label {label!r})")
    source = SourceRecord(kind=spec.source.kind, url=spec.source.url, path=fetched.path, sha256=fetched.sha256,
                          size=fetched.size, volume_label=label, version=version_from_label(label), reader=reader)
    return Provenance(
        source=source,
        packages=tuple(packages),
        notice_files=tuple(copied[e.path] for e in selection.notices),
        info_json=copied.get(selection.info_json.path) if selection.info_json else None,
        missing_optional=selection.missing_optional,
        warnings=tuple(warnings),
        metadata_files=tuple(copied[e.path] for e in selection.metadata),
    )


PROVENANCE_NAME = "virtio-win-provenance.json"


def aero_extract_provenance(provenance: Provenance) -> dict[str, object]:
    """``virtio-win-provenance.json`` of ``aero-media extract``: our record plus the fields Aero's scripts read."""
    ours = provenance.to_json()
    return {**ours, **provenance.aero_fields()}


def extract_stage(run: Run) -> Provenance:
    """The extract task: stream the selected files into build/<spec>/extract/ and write provenance.json."""
    spec, paths = run.spec, run.paths
    paths.provenance.unlink(missing_ok=True)
    fetched = read_manifest(paths.fetch_record, FetchRecord.from_json)
    iso = iso_input(spec, run.ctx)
    # Not proven yet, perhaps: the prove stage hashes it meanwhile, and nothing is published before.
    check_unchanged(iso, fetched, run.memo, vouched(run, iso))
    provenance = extract_iso(spec, iso, paths.extract_dir, fetched)
    write_json_atomic(paths.provenance, provenance.to_json())
    return provenance
