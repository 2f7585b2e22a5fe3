"""Third-party notices and licence files for the media.

An Aero pack brings its own ``THIRD_PARTY_NOTICES.md``. For upstream virtio-win
input the notices are generated from the real source: project, version, ISO
hash, licence, and the list of redistributed files; the upstream licence files go
to ``licenses/virtio-win/``. Without a licence file there are no media: we may not
redistribute the drivers without it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .errors import SourceError
from .layout import notice_entries
from .fsutil import read_json, sha256_file, staging_dir, write_json_atomic
from .paths import SpecPaths
from .spec import Context, Spec
from .stage import load_stage_files, source_tree
from .tree import FILE
from .winnames import check_relpath

NOTICES_NAME = "THIRD_PARTY_NOTICES.md"
UPSTREAM_PROJECT = "virtio-win (kvm-guest-drivers-windows)"
UPSTREAM_URL = "https://github.com/virtio-win/kvm-guest-drivers-windows"
LICENSE_DIR = "licenses/virtio-win"


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


def _copy_pack_notices(spec: Spec, ctx: Context, out: Path) -> list[str]:
    assert spec.source.path is not None
    root = spec.source.path
    notices = root / NOTICES_NAME
    if not notices.is_file() or notices.is_symlink():
        raise SourceError(f"{spec.source.path_raw}: no {NOTICES_NAME} at the pack root",
                          f"add {NOTICES_NAME} describing the drivers' origin and licence to the pack")
    shutil.copyfile(notices, out / NOTICES_NAME)
    written = [NOTICES_NAME]
    lic = root / "licenses"
    if lic.is_dir():
        tree = source_tree(spec, ctx)[0]
        for e in tree.entries():
            if e.kind == FILE and e.path.startswith("licenses/"):
                check_relpath(e.path, tree.display)
                (out / e.path).parent.mkdir(parents=True, exist_ok=True)
                with tree.open(e) as src, open(out / e.path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                written.append(e.path)
    return written


def _upstream_notices(spec: Spec, ctx: Context, out: Path, stage_manifests: list[Path]) -> tuple[list[str], str]:
    paths = SpecPaths(spec, ctx)
    tree = source_tree(spec, ctx)[0]
    selection_notices = notice_entries(tree.entries())
    lic_dir = out / LICENSE_DIR
    lic_dir.mkdir(parents=True)
    copied: list[str] = []
    texts: list[str] = []
    for e in selection_notices:
        check_relpath(e.path, tree.display)
        with tree.open(e) as src, open(lic_dir / e.name, "wb") as dst:
            shutil.copyfileobj(src, dst)
        copied.append(f"{LICENSE_DIR}/{e.name}")
        texts.append((lic_dir / e.name).read_text("utf-8", errors="replace"))
    if spec.source.license_file is not None:
        lf = spec.source.license_file
        if not lf.is_file():
            raise SourceError(f"{spec.display}: source.license_file {spec.source.license_file_raw!r} does not exist",
                              "point it at the upstream licence text")
        shutil.copyfile(lf, lic_dir / lf.name)
        copied.append(f"{LICENSE_DIR}/{lf.name}")
        texts.append(lf.read_text("utf-8", errors="replace"))
    if not copied:
        raise SourceError(f"{tree.display}: no licence file at the root of the source (looked for "
                          "virtio-win_license.txt, LICENSE*, COPYING*, NOTICE*)",
                          "the drivers may not be redistributed without it: set source.license_file in "
                          f"{spec.display} to the upstream licence text")
    names = sorted({license_name(t) for t in texts})
    prov = read_json(paths.provenance) if paths.provenance.exists() else {}
    src = prov.get("source", {})
    files = load_stage_files(stage_manifests)
    lines = [
        "# Third-party notices",
        "",
        "These media redistribute Windows 7 drivers from an upstream project, unmodified.",
        "",
        f"- **Project:** {UPSTREAM_PROJECT}, <{UPSTREAM_URL}>",
        f"- **Version:** {src.get('version') or 'unknown'}",
        f"- **Source:** {src.get('url') or src.get('path') or spec.source.path_raw or 'local tree'}",
    ]
    if src.get("sha256"):
        lines.append(f"- **Source ISO sha256:** `{src['sha256']}`")
    if src.get("volume_label"):
        lines.append(f"- **ISO volume label:** `{src['volume_label']}`")
    lines += [
        f"- **Licence:** {', '.join(names)}; the full terms are in `{LICENSE_DIR}/` "
        f"({', '.join(Path(c).name for c in copied)})",
        "",
        "## Redistributed files",
        "",
        "| file | sha256 |",
        "|---|---|",
    ]
    lines += [f"| `{r['path']}` | `{r['sha256']}` |" for r in files]
    lines.append("")
    (out / NOTICES_NAME).write_text("\n".join(lines), encoding="utf-8")
    return [NOTICES_NAME, *copied], ", ".join(names)


def build_notices(spec: Spec, ctx: Context, stage_manifests: list[Path]) -> dict[str, Any]:
    """Write ``build/<spec>/notices/`` and its manifest; return the manifest."""
    paths = SpecPaths(spec, ctx)
    paths.notices_manifest.unlink(missing_ok=True)
    license = None
    with staging_dir(paths.notices_dir) as out:
        if spec.source.kind == "pack-dir":
            written = _copy_pack_notices(spec, ctx, out)
        else:
            written, license = _upstream_notices(spec, ctx, out, stage_manifests)
        records = []
        for rel in sorted(written):
            digest, size = sha256_file(out / rel)
            records.append({"path": rel, "sha256": digest, "size": size})
    manifest = {"schema_version": 1, "spec": spec.name, "license": license, "files": records}
    write_json_atomic(paths.notices_manifest, manifest)
    return manifest
