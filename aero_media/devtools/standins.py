"""Expand a pack of stand-in recipes (the repo's sample pack) into a real pack under ``build/``.

Only specs that say ``source.stand_ins: true`` go through here: a user's driver
tree is always read in place, byte for byte. Every regular file is copied; each
``<name>.pestub`` recipe becomes ``<name>``, the stand-in PE it describes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import SourceError, UnsafePathError
from ..fsutil import relpath_for_humans, sha256_file, staging_dir, write_json_atomic
from ..manifests import FileRecord, PackManifest
from ..paths import Run
from ..sources.tree import DirTree, EntryKind
from ..winnames import split_relpath
from .pestub import RECIPE_SUFFIX, build_from_recipe

MAX_RECIPE = 4096


def is_recipe(name: str) -> bool:
    """Whether a file name is a stand-in recipe (matched case-insensitively, as on Windows)."""
    return name.lower().endswith(RECIPE_SUFFIX)


def expand_tree(src: DirTree, dest: Path) -> list[FileRecord]:
    """Copy ``src`` into ``dest`` (replaced as a whole), expanding recipes; return the files written."""
    records = []
    with staging_dir(dest) as out:
        for e in src.entries():
            split_relpath(e.path, src.display)
            if e.kind is EntryKind.DIR:
                continue
            if e.kind is not EntryKind.FILE:
                raise UnsafePathError(f"{src.display}: {e.path!r} is a {e.kind.value}, not a file",
                                      "replace it with a regular file")
            rel = e.path[: -len(RECIPE_SUFFIX)] if is_recipe(e.name) else e.path
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with src.open(e) as fp:
                if is_recipe(e.name):
                    try:
                        target.write_bytes(build_from_recipe(fp.read(MAX_RECIPE), f"{src.display}/{e.path}"))
                    except ValueError as exc:
                        raise SourceError(str(exc), "fix the recipe or replace it with the real file") from None
                else:
                    with open(target, "wb") as dst:
                        shutil.copyfileobj(fp, dst)
            digest, size = sha256_file(target)
            records.append(FileRecord(rel, digest, size))
    return sorted(records, key=lambda r: r.path)


def expand_stage(run: Run) -> PackManifest:
    """The expand task: ``build/<spec>/pack/`` from the spec's pack of recipes, and its manifest."""
    spec, ctx, paths = run.spec, run.ctx, run.paths
    paths.expand_manifest.unlink(missing_ok=True)
    assert spec.source.path is not None
    shown = relpath_for_humans(spec.source.path, ctx.root)
    if not spec.source.path.is_dir():
        raise SourceError(f"{spec.display}: source.path {shown!r} is not a directory",
                          "point source.path at the pack (relative to the repo root, or absolute)")
    manifest = PackManifest(shown, tuple(expand_tree(DirTree(spec.source.path, shown), paths.expand_dir)))
    write_json_atomic(paths.expand_manifest, manifest.to_json())
    return manifest
