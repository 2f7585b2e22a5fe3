"""Which tree a spec's later stages read, and how the media name the source.

Directory sources are read in place. An ISO source is read from what the extract
stage copied out of it, and a pack of stand-in recipes from what the expand stage
made of it, both under ``build/<spec>/``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BuildStateError, SourceError
from ..fsutil import relpath_for_humans
from ..manifests import ProofRecord, Provenance, SourceRecord, read_manifest
from ..paths import Run
from ..spec.model import Spec
from ..spec.types import SourceKind
from .isocache import pin_sha256
from .tree import DirTree


def source_tree(run: Run) -> DirTree:
    """Return the tree staging (and notices) read from."""
    spec, ctx, paths = run.spec, run.ctx, run.paths
    if spec.source.kind is SourceKind.AERO_CHECKOUT:
        # Only its root (licences): its packages are assembled from ci-package.json (sources/aero.py).
        return DirTree(_checkout_root(run), relpath_for_humans(spec.source.path or ctx.root, ctx.root), top_only=True)
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
    v = spec.vocabulary
    display = relpath_for_humans(spec.source.path, ctx.root)
    if not spec.source.path.is_dir():
        if v.from_command_line:  # the whole path: the user typed it, and it is relative to nothing of ours
            raise SourceError(f"{v.name('source.path')} {spec.source.path}: not a directory", v.fix("source.path"))
        raise SourceError(f"{spec.display}: source.path {display!r} is not a directory",
                          "point source.path at the driver tree (relative to the repo root, or absolute)")
    return DirTree(spec.source.path, spec.source.path.name if v.from_command_line else display)


def unset_root_error(spec: Spec) -> SourceError | None:
    """The error for a ``source.path`` naming an environment variable that is not set (``${AERO_ROOT}``)."""
    name = spec.source.path_unset_env
    if name is None:
        return None
    return SourceError(f"{spec.display}: source.path is {spec.source.path_raw!r}, but {name} is not set",
                       f"export {name}=<the root of your Aero checkout> (e.g. `{name}=~/aero doit "
                       f"build:{spec.name}`), or set source.path in a copy of the spec")


def _checkout_root(run: Run) -> Path:
    if (unset := unset_root_error(run.spec)) is not None:
        raise unset
    path = run.spec.source.path
    if path is None or not path.is_dir():
        raise SourceError(f"{run.spec.display}: source.path {run.spec.source.path_raw!r} is not a directory",
                          "point source.path at the root of an Aero checkout")
    return path


def extraction(run: Run) -> Provenance | None:
    """The provenance extraction recorded (ISO sources), else None."""
    if not run.spec.source.is_iso:
        return None
    return read_manifest(run.paths.provenance, Provenance.from_json)


def iso_sha256(run: Run) -> str | None:
    """The ISO's sha256 as the media record it (ISO sources), else None.

    A pinned ISO's is its pin: its media are written and verified while the ISO is still being hashed, and
    the publish stage waits for the proof, which fails unless the ISO has that digest, so no published
    medium names a digest the ISO does not have. An unpinned ISO's media wait for its proof and record it.
    """
    src = run.spec.source
    if not src.is_iso:
        return None
    if src.pinned_iso:
        return pin_sha256(src.sha256)
    return read_manifest(run.paths.proof_record, ProofRecord.from_json).sha256


def source_record(run: Run) -> SourceRecord:
    """How the media name a directory source: its path relative to the repo or ``~``.

    A tree given on the command line is named by its folder name alone: the same tree
    built from two working directories gives the same bytes.
    """
    spec = run.spec
    if spec.source.path is None:
        return SourceRecord(kind=spec.source.kind, path=None)
    if spec.vocabulary.from_command_line:
        return SourceRecord(kind=spec.source.kind, path=spec.source.path.name)
    return SourceRecord(kind=spec.source.kind, path=relpath_for_humans(spec.source.path, run.ctx.root))
