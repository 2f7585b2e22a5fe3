"""The doit task graph: one group per stage, one sub-task per spec (and arch).

Generators only wire stages together: they read the specs, name inputs and
outputs, and point at stage functions. They do no network, subprocess or write
work. Each sub-task reruns exactly when its ``file_dep`` manifests change or the
slice of the spec it reads (``Spec.fingerprint``) changes.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from doit.exceptions import InvalidDodoFile, TaskFailed
from doit.tools import config_changed

from .depcheck import ContentChecker
from .errors import PipelineError
from .fsutil import remove_tree
from .isofs import source_date_epoch
from .paths import SpecPaths
from .spec import Context, Spec, load_specs
from .tree import FILE, DirTree

DOIT_CONFIG: dict[str, Any] = {
    "default_tasks": ["default"],
    "backend": "json",
    # Kept under build/ so nothing outside build/, dist/ and the cache is ever written.
    "dep_file": "build/.doit.db",
    "check_file_uptodate": ContentChecker,
    "verbosity": 1,
}

Task = dict[str, Any]


@functools.cache
def _code_version() -> str:
    """Hash of the pipeline's own code and templates: new code rebuilds what it made."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".txt", ".cmd", ".json", ".md") and "__pycache__" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _ctx() -> Context:
    # doit runs from the dodo file's folder (the project root); tests chdir there too.
    ctx = Context(root=Path.cwd())
    ctx.build_dir.mkdir(exist_ok=True)  # doit writes its dep file there at the end of the run
    return ctx


@functools.cache
def _specs_at(root: Path) -> tuple[Spec, ...]:
    try:
        return tuple(load_specs(Context(root=root)))
    except PipelineError as exc:
        # InvalidDodoFile is doit's 'user error': one message, no traceback.
        raise InvalidDodoFile(exc.render()) from None


def specs() -> tuple[Spec, ...]:
    """All specs of the project in the current folder."""
    return _specs_at(Path.cwd())


def _epoch() -> int:
    try:
        return source_date_epoch()
    except PipelineError as exc:
        raise InvalidDodoFile(exc.render()) from None


def run_stage(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """Wrap a stage function as a doit action that fails with our one-line error."""

    def action() -> Any:
        try:
            fn(*args)
        except PipelineError as exc:
            return TaskFailed(f"error: {exc.render()}")
        return None

    action.__name__ = getattr(fn, "__name__", "stage")
    return action


def _uptodate(spec: Spec, stage: str, **extra: Any) -> list[Any]:
    return [config_changed({"stage": stage, "spec": spec.fingerprint(stage), "code": _code_version(), **extra})]


def _exists(path: Path, *_args: Any) -> bool:
    return path.is_file()


def _source_files(spec: Spec) -> list[str]:
    """Files of a directory source, as file_dep: additions and removals rerun staging."""
    path = spec.source.path
    if path is None or not path.is_dir():
        return []
    return sorted(str(path / e.path) for e in DirTree(path).entries() if e.kind == FILE)


def _stage_inputs(spec: Spec, ctx: Context) -> list[str]:
    if spec.source.is_iso:
        return [str(SpecPaths(spec, ctx).provenance)]
    return _source_files(spec)


def task_fetch() -> Iterator[Task]:
    """Download or locate the virtio-win ISO and prove its bytes (ISO sources only)."""
    from . import upstream

    yield {"basename": "fetch", "name": None, "doc": task_fetch.__doc__}
    ctx = _ctx()
    for spec in specs():
        if not spec.source.is_iso:
            continue
        p = SpecPaths(spec, ctx)
        iso = upstream.iso_input(spec, ctx)
        local = spec.source.path is not None and iso == spec.source.path
        yield {
            "name": spec.name,
            "doc": f"fetch the ISO of {spec.name}",
            "actions": [run_stage(upstream.fetch_stage, spec, ctx)],
            "file_dep": [str(iso)] if local else [],
            # The cached ISO is not a target: several specs may share one download.
            # Its disappearance (a cleared cache) makes the task stale instead.
            "targets": [str(p.fetch_record)],
            "uptodate": _uptodate(spec, "fetch") + [functools.partial(_exists, iso)],
            # Never delete the download cache on `doit clean`: only our record of it.
            "clean": [(remove_tree, [p.fetch_record])],
        }


def task_extract() -> Iterator[Task]:
    """Stream the Windows 7 driver folders and licence files out of the ISO, with provenance."""
    from . import upstream

    yield {"basename": "extract", "name": None, "doc": task_extract.__doc__}
    ctx = _ctx()
    for spec in specs():
        if not spec.source.is_iso:
            continue
        p = SpecPaths(spec, ctx)
        yield {
            "name": spec.name,
            "doc": f"extract Windows 7 drivers for {spec.name}",
            "actions": [run_stage(upstream.extract_stage, spec, ctx)],
            "file_dep": [str(upstream.iso_input(spec, ctx)), str(p.fetch_record)],
            "targets": [str(p.provenance)],
            "uptodate": _uptodate(spec, "extract"),
            "clean": [(remove_tree, [p.extract_dir]), (remove_tree, [p.provenance])],
        }


def task_stage() -> Iterator[Task]:
    """Stage each arch's packages under build/<spec>/stage/win7/<arch>/ and validate them."""
    from .stage import stage_arch

    yield {"basename": "stage", "name": None, "doc": task_stage.__doc__}
    ctx = _ctx()
    for spec in specs():
        p = SpecPaths(spec, ctx)
        inputs = _stage_inputs(spec, ctx)
        for arch in spec.arches:
            yield {
                "name": f"{spec.name}:{arch.value}",
                "doc": f"stage {spec.name} for {arch.value}",
                "actions": [run_stage(stage_arch, spec, ctx, arch)],
                "file_dep": inputs,
                "targets": [str(p.stage_manifest(arch))],
                "uptodate": _uptodate(spec, "stage"),
                "clean": [(remove_tree, [p.stage_dir(arch)]), (remove_tree, [p.stage_manifest(arch)])],
            }


def _notice_inputs(spec: Spec, ctx: Context) -> list[str]:
    """What notices read besides the stage manifests: provenance, or the source's own notice files."""
    lic = spec.source.license_file
    extra = [str(lic)] if lic is not None and lic.is_file() else []
    if spec.source.is_iso:
        return [str(SpecPaths(spec, ctx).provenance), *extra]
    root = spec.source.path
    assert root is not None
    # Licence and notice files live outside the driver folders (win7/ or <Driver>/<os>/).
    return extra + [f for f in _source_files(spec)
                    if Path(f).parent == root or Path(f).relative_to(root).parts[0] == "licenses"]


def _stage_manifests(spec: Spec, ctx: Context) -> list[Path]:
    p = SpecPaths(spec, ctx)
    return [p.stage_manifest(a) for a in spec.arches]


def task_notices() -> Iterator[Task]:
    """Write THIRD_PARTY_NOTICES.md and licenses/ from the real source."""
    from .notices import build_notices

    yield {"basename": "notices", "name": None, "doc": task_notices.__doc__}
    ctx = _ctx()
    for spec in specs():
        p = SpecPaths(spec, ctx)
        manifests = _stage_manifests(spec, ctx)
        yield {
            "name": spec.name,
            "doc": f"notices for {spec.name}",
            "actions": [run_stage(build_notices, spec, ctx, manifests)],
            "file_dep": [str(m) for m in manifests] + _notice_inputs(spec, ctx),
            "targets": [str(p.notices_manifest)],
            "uptodate": _uptodate(spec, "notices"),
            "clean": [(remove_tree, [p.notices_dir]), (remove_tree, [p.notices_manifest])],
        }


def task_drivers_iso() -> Iterator[Task]:
    """Write dist/<spec>/aero-virtio-win7-drivers.iso (reproducible, atomically renamed)."""
    from .drivers_iso import build_drivers_iso

    yield {"basename": "drivers_iso", "name": None, "doc": task_drivers_iso.__doc__}
    ctx = _ctx()
    epoch = _epoch()
    for spec in specs():
        p = SpecPaths(spec, ctx)
        manifests = _stage_manifests(spec, ctx)
        yield {
            "name": spec.name,
            "doc": f"drivers ISO of {spec.name}",
            "actions": [run_stage(build_drivers_iso, spec, ctx, manifests, epoch)],
            "file_dep": [str(m) for m in manifests] + [str(p.notices_manifest)],
            "targets": [str(p.drivers_iso)],
            "uptodate": _uptodate(spec, "drivers_iso", epoch=epoch),
            "clean": True,
        }


def task_verify() -> Iterator[Task]:
    """Re-open the drivers ISO with an independent reader and check it against the manifests."""
    from .drivers_iso import verify_drivers_iso

    yield {"basename": "verify", "name": None, "doc": task_verify.__doc__}
    ctx = _ctx()
    for spec in specs():
        p = SpecPaths(spec, ctx)
        manifests = _stage_manifests(spec, ctx)
        yield {
            "name": spec.name,
            "doc": f"verify the drivers ISO of {spec.name}",
            "actions": [run_stage(verify_drivers_iso, spec, ctx)],
            "file_dep": [str(p.drivers_iso), str(p.notices_manifest)] + [str(m) for m in manifests],
            "targets": [str(p.drivers_iso_report)],
            "uptodate": _uptodate(spec, "verify"),
            "clean": True,
        }


def task_guest_tools() -> Iterator[Task]:
    """Write dist/<spec>/aero-guest-tools.iso, .zip and manifest.json (scripts, drivers, certs, notices)."""
    from .guest_tools import build_guest_tools

    yield {"basename": "guest_tools", "name": None, "doc": task_guest_tools.__doc__}
    ctx = _ctx()
    epoch = _epoch()
    for spec in specs():
        p = SpecPaths(spec, ctx)
        manifests = _stage_manifests(spec, ctx)
        certs = [str(c) for c in spec.guest_tools.certs if c.is_file()]
        yield {
            "name": spec.name,
            "doc": f"Guest Tools media of {spec.name}",
            "actions": [run_stage(build_guest_tools, spec, ctx, manifests, epoch)],
            "file_dep": [str(m) for m in manifests] + [str(p.notices_manifest)] + certs,
            "targets": [str(p.guest_tools_iso), str(p.guest_tools_zip), str(p.guest_tools_manifest)],
            "uptodate": _uptodate(spec, "guest_tools", epoch=epoch),
            "clean": True,
        }


def task_verify_guest_tools() -> Iterator[Task]:
    """Read the Guest Tools ISO and zip back and check every file against manifest.json."""
    from .guest_tools import verify_guest_tools

    yield {"basename": "verify_guest_tools", "name": None, "doc": task_verify_guest_tools.__doc__}
    ctx = _ctx()
    for spec in specs():
        p = SpecPaths(spec, ctx)
        yield {
            "name": spec.name,
            "doc": f"verify the Guest Tools media of {spec.name}",
            "actions": [run_stage(verify_guest_tools, spec, ctx)],
            "file_dep": [str(p.guest_tools_iso), str(p.guest_tools_zip), str(p.guest_tools_manifest)],
            "targets": [str(p.guest_tools_report)],
            "uptodate": _uptodate(spec, "guest_tools"),
            "clean": True,
        }


def task_build() -> Iterator[Task]:
    """Build and verify all media of one spec: `doit build:<spec>`."""
    yield {"basename": "build", "name": None, "doc": task_build.__doc__}
    for spec in specs():
        yield {
            "name": spec.name,
            "doc": spec.description or f"all media of {spec.name}",
            "actions": None,
            "task_dep": [f"verify:{spec.name}", f"verify_guest_tools:{spec.name}"],
        }


def task_default() -> Task:
    """Build the specs marked `default: true` (what a bare `doit` runs)."""
    return {
        "actions": None,
        "task_dep": [f"build:{s.name}" for s in specs() if s.default],
    }
