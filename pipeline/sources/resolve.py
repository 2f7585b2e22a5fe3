"""Which tree a spec's later stages read, and how the media name the source.

Directory sources are read in place. An ISO source is read from what the extract
stage copied out of it, and a pack of stand-in recipes from what the expand stage
made of it, both under ``build/<spec>/``.
"""

from __future__ import annotations

from ..errors import BuildStateError, SourceError
from ..fsutil import relpath_for_humans
from ..manifests import ProofRecord, Provenance, SourceRecord, read_manifest
from ..paths import SpecPaths
from ..spec.model import Context, Spec
from .tree import DirTree


def source_tree(spec: Spec, ctx: Context) -> DirTree:
    """Return the tree staging (and notices) read from."""
    paths = SpecPaths(spec, ctx)
    if spec.source.is_iso or spec.source.stand_ins:
        root = paths.extract_dir if spec.source.is_iso else paths.expand_dir
        stage = "extract" if spec.source.is_iso else "expand"
        if not root.is_dir():
            raise BuildStateError(f"{relpath_for_humans(root, ctx.root)}: nothing there yet",
                                  f"run `doit {stage}:{spec.name}` first (doit build:{spec.name} does)")
        if spec.source.stand_ins:
            # The same pack, its recipes expanded: name it as the user knows it.
            assert spec.source.path is not None
            return DirTree(root, relpath_for_humans(spec.source.path, ctx.root))
        return DirTree(root, relpath_for_humans(root, ctx.root))
    assert spec.source.path is not None
    display = relpath_for_humans(spec.source.path, ctx.root)
    if not spec.source.path.is_dir():
        raise SourceError(f"{spec.display}: source.path {display!r} is not a directory",
                          "point source.path at the driver tree (relative to the repo root, or absolute)")
    return DirTree(spec.source.path, display)


def extraction(spec: Spec, ctx: Context) -> Provenance | None:
    """The provenance extraction recorded (ISO sources), else None."""
    if not spec.source.is_iso:
        return None
    return read_manifest(SpecPaths(spec, ctx).provenance, Provenance.from_json)


def proof(spec: Spec, ctx: Context) -> ProofRecord | None:
    """The ISO's proven sha256 (ISO sources), else None."""
    if not spec.source.is_iso:
        return None
    return read_manifest(SpecPaths(spec, ctx).proof_record, ProofRecord.from_json)


def source_record(spec: Spec, ctx: Context) -> SourceRecord:
    """How the media name a directory source: its kind and its path relative to the repo or ``~``."""
    shown = relpath_for_humans(spec.source.path, ctx.root) if spec.source.path else None
    return SourceRecord(kind=spec.source.kind, path=shown)
