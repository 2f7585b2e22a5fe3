"""Third-party notices and licence files for the media.

An Aero pack brings its own ``THIRD_PARTY_NOTICES.md``. For upstream virtio-win
input the notices are generated from the real source: project, version, ISO
hash, licence, and the list of redistributed files; the upstream licence files go
to ``licenses/virtio-win/``. Without a licence file there are no media: we may not
redistribute the drivers without it.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from ..errors import SourceError
from ..fsutil import sha256_file, staging_dir, write_json_atomic
from ..manifests import FileRecord, NoticesManifest, StageManifest, staged_files
from ..paths import Run
from ..sources.resolve import extraction, iso_sha256, source_record, source_tree
from ..sources.selection import NOTICE_PATTERNS, notice_entries
from ..sources.tree import DirTree, EntryKind
from ..spec.model import Spec
from ..spec.types import SourceKind
from ..winnames import check_relpath
from .contents import stage_manifests

NOTICES_NAME = "THIRD_PARTY_NOTICES.md"
UPSTREAM_PROJECT = "virtio-win (kvm-guest-drivers-windows)"
UPSTREAM_URL = "https://github.com/virtio-win/kvm-guest-drivers-windows"
LICENSES = "licenses"
"""The folder of licence texts, in an Aero pack and on the media."""
LICENSE_DIR = f"{LICENSES}/virtio-win"
AERO_PROJECT = ("Aero", "https://github.com/wilsonzlin/aero", f"{LICENSES}/aero")
"""An Aero checkout's drivers: Aero's own (LICENSE-MIT and LICENSE-APACHE at the checkout's root)."""


def _upstream(spec: Spec) -> tuple[str, str, str]:
    """Project, URL and media licence folder of an upstream source."""
    if spec.source.kind is SourceKind.AERO_CHECKOUT:
        return AERO_PROJECT
    return UPSTREAM_PROJECT, UPSTREAM_URL, LICENSE_DIR


def license_name(text: str) -> str:
    """Name the licence a text carries, from the phrases that identify the common ones."""
    t = " ".join(text.split()).lower()
    if "redistribution and use in source and binary forms" in t:
        clauses = "3-Clause" if "neither the name" in t else "2-Clause"
        return f"BSD-{clauses}"
    if "gnu general public license" in t:
        return "GPL-2.0" if "version 2" in t else "GPL"
    if "apache license" in t:
        return "Apache-2.0"
    if "permission is hereby granted, free of charge" in t:
        return "MIT"
    return "see the licence file"


def _copy_pack_notices(tree: DirTree, spec: Spec, out: Path) -> list[str]:
    root = tree.root
    notices = root / NOTICES_NAME
    if not notices.is_file() or notices.is_symlink():
        where = (f"{spec.vocabulary.name('source.path')} {spec.source.path}" if spec.vocabulary.from_command_line
                 else spec.source.path_raw)
        raise SourceError(f"{where}: no {NOTICES_NAME} at the pack root",
                          f"add {NOTICES_NAME} describing the drivers' origin and licence to the pack")
    shutil.copyfile(notices, out / NOTICES_NAME)
    written = [NOTICES_NAME]
    if (root / LICENSES).is_dir():
        for e in tree.entries():
            if e.kind is EntryKind.FILE and e.path.startswith(f"{LICENSES}/"):
                check_relpath(e.path, tree.display)
                (out / e.path).parent.mkdir(parents=True, exist_ok=True)
                with tree.open(e) as src, open(out / e.path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                written.append(e.path)
    return written


def _licence_files(tree: DirTree, spec: Spec, lic_dir: Path) -> tuple[list[str], list[str]]:
    """Copy the source's licence files; return (media paths, their texts)."""
    copied: list[str] = []
    texts: list[str] = []
    for e in notice_entries(tree.entries()):
        check_relpath(e.path, tree.display)
        with tree.open(e) as src, open(lic_dir / e.name, "wb") as dst:
            shutil.copyfileobj(src, dst)
        copied.append(f"{_upstream(spec)[2]}/{e.name}")
        texts.append((lic_dir / e.name).read_text("utf-8", errors="replace"))
    lf = spec.source.license_file
    if lf is not None:
        if not lf.is_file():
            raise SourceError(f"{spec.display}: source.license_file {spec.source.license_file_raw!r} does not exist",
                              "point it at the upstream licence text")
        shutil.copyfile(lf, lic_dir / lf.name)
        copied.append(f"{_upstream(spec)[2]}/{lf.name}")
        texts.append(lf.read_text("utf-8", errors="replace"))
    if not copied:
        raise SourceError(f"{tree.display}: no licence file at the root of the source (looked for "
                          f"{', '.join(NOTICE_PATTERNS)}, ignoring case)",
                          "the drivers may not be redistributed without it: "
                          f"{spec.vocabulary.fix('source.license_file')} to the upstream licence text "
                          f"(in {spec.display})")
    return copied, texts


def _upstream_notices(tree: DirTree, run: Run, out: Path, stages: list[StageManifest]) -> tuple[list[str], str]:
    spec = run.spec
    project, url, lic_rel = _upstream(spec)
    lic_dir = out / lic_rel
    lic_dir.mkdir(parents=True)
    copied, texts = _licence_files(tree, spec, lic_dir)
    names = sorted({license_name(t) for t in texts})
    prov = extraction(run)
    src = replace(prov.source, sha256=iso_sha256(run)) if prov else None
    lines = [
        "# Third-party notices",
        "",
        "These media redistribute Windows 7 drivers from an upstream project, unmodified.",
        "",
        f"- **Project:** {project}, <{url}>",
        f"- **Version:** {(src and src.version) or 'unknown'}",
        # A directory source is named relative to the repo or ~: never an absolute path on the media.
        f"- **Source:** {(src and (src.url or src.path)) or source_record(run).path or 'local tree'}",
    ]
    if src and src.sha256:
        lines.append(f"- **Source ISO sha256:** `{src.sha256}`")
    if src and src.volume_label:
        lines.append(f"- **ISO volume label:** `{src.volume_label}`")
    lines += [
        f"- **Licence:** {', '.join(names)}; the full terms are in `{lic_rel}/` "
        f"({', '.join(Path(c).name for c in copied)})",
        "",
        "## Redistributed files",
        "",
        "| file | sha256 |",
        "|---|---|",
    ]
    lines += [f"| `{f.path}` | `{f.sha256}` |" for f in staged_files(stages)]
    lines.append("")
    (out / NOTICES_NAME).write_text("\n".join(lines), encoding="utf-8")
    return [NOTICES_NAME, *copied], ", ".join(names)


def build_notices(run: Run) -> NoticesManifest:
    """Write ``build/<spec>/notices/`` and its manifest; return the manifest."""
    spec, paths = run.spec, run.paths
    paths.notices_manifest.unlink(missing_ok=True)
    stages = stage_manifests(spec, paths)
    tree = source_tree(run)
    license = None
    with staging_dir(paths.notices_dir) as out:
        if spec.source.kind.is_upstream:
            written, license = _upstream_notices(tree, run, out, stages)
        else:
            written = _copy_pack_notices(tree, spec, out)
        records = []
        for rel in sorted(written):
            digest, size = sha256_file(out / rel)
            records.append(FileRecord(rel, digest, size))
    manifest = NoticesManifest(spec=spec.name, license=license, files=tuple(records))
    write_json_atomic(paths.notices_manifest, manifest.to_json())
    return manifest
