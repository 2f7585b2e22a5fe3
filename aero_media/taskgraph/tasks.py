"""The doit task graph: one group per stage, one sub-task per spec (and arch).

Generators only wire stages together: they read the specs, name inputs and
outputs, and point at stage functions. They do no network, subprocess or write
work. Each sub-task reruns exactly when its ``file_dep`` manifests change, the
slice of the spec it reads (``Spec.fingerprint``) changes, or the code its stage
function runs changes (:func:`~aero_media.taskgraph.fingerprint.code_fingerprint`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed
from doit.tools import config_changed

from ..errors import PipelineError, SpecError, UsageError, disk_error
from ..fsutil import relpath_for_humans, remove_with_leftovers
from ..log import warn
from ..media.epoch import source_date_epoch
from ..paths import SpecPaths
from ..sources.tree import DirTree, EntryKind
from ..spec.load import CONTRACT_FILE, data_file, load_each
from ..spec.model import Context, Spec
from ..spec.types import Stage
from ..spec.yamldoc import raise_problems
from .checker import ContentChecker
from .depfile import BACKEND_NAME
from .fingerprint import MEMO_NAME, code_fingerprint
from .refuse import refuse
from .report import OneLineReporter

__all__ = ["DOIT_CONFIG", "task_build", "task_default", "task_drivers_iso", "task_expand", "task_extract",
           "task_fat_disk", "task_fetch", "task_guest_tools", "task_notices", "task_prove", "task_service",
           "task_signing_cert", "task_stage", "task_verify", "task_verify_fat_disk", "task_verify_guest_tools"]


def _backend() -> str:
    """The dep-file backend's name, once it is known to be registered (a stale install lacks it)."""
    from importlib.metadata import entry_points

    if not entry_points(group="doit.BACKEND", name=BACKEND_NAME):
        refuse(UsageError(f"doit cannot find the {BACKEND_NAME!r} dep-file backend: the aero-virtio-media "
                          "package is not installed, or its install is stale",
                          "run python -m pip install -e '.[test]' in the checkout"))
    return BACKEND_NAME


DOIT_CONFIG: dict[str, Any] = {
    "default_tasks": ["default"],
    # aero_media.taskgraph.depfile:AtomicJsonDB, registered as a doit.BACKEND entry point.
    "backend": _backend(),
    # Kept under build/ so nothing outside build/, dist/ and the cache is ever written.
    "dep_file": "build/.doit.db",
    "check_file_uptodate": ContentChecker,
    "reporter": OneLineReporter,
    "verbosity": 1,
}

Task = dict[str, Any]


def _ctx() -> Context:
    # doit runs from the dodo file's folder (the project root); tests chdir there too.
    ctx = Context(root=Path.cwd(), remember_valid_specs=True)
    ctx.build_dir.mkdir(exist_ok=True)  # doit writes its dep file there at the end of the run
    return ctx


@functools.cache
def _specs_at(root: Path) -> tuple[Spec, ...]:
    try:
        results = load_each(Context(root=root, remember_valid_specs=True))
        loaded = tuple(r for _, r in results if isinstance(r, Spec))
        broken = [(path, r) for path, r in results if isinstance(r, SpecError)]
        argv = _doit_arguments()
        if broken and not _only_other_specs(argv, {path.stem for path, _ in broken}):
            raise_problems([r.message for _, r in broken])
        for path, err in broken:
            # Asked for other specs by name: a half-edited spec should not stop them.
            first, *more = err.message.splitlines()
            also = f"; and {len(more)} more problem(s)" if more else ""
            warn(f"{first}{also} (spec {path.stem!r} is left out until it is fixed)")
        _check_requested(loaded, argv)
    except PipelineError as exc:
        refuse(exc)
    return loaded


def _only_other_specs(argv: list[str], broken: set[str]) -> bool:
    """Whether doit was asked only for tasks of named specs, none of them broken (``doit build:sample``)."""
    positional = [a for a in argv if not a.startswith("-")]
    if any(a in STAGES or a in ("build", "default") for a in positional):
        return False  # a whole group: every spec's tasks
    # Other positionals are doit's command or option values (`-f dodo.py`): they name no spec.
    named = [_spec_named(a) for a in positional if ":" in a]
    return bool(named) and all(n is not None and n not in broken for n in named)


def _spec_named(arg: str) -> str | None:
    """The spec a doit task argument names (``build:sample``, ``stage:sample:x86``), or None."""
    group, sep, rest = arg.partition(":")
    name = rest.split(":", 1)[0]
    return name if sep and (group == "build" or group in STAGES) and name and "*" not in name else None


REQUESTED: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("requested", default=None)
"""The task arguments a caller that runs doit in-process (``aero-media build``) passes it."""


def _doit_arguments() -> list[str]:
    """doit's task arguments: from its command line when doit is the program, else from :data:`REQUESTED`."""
    requested = REQUESTED.get()
    if requested is not None:
        return list(requested)
    main = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    if main.name == "doit" or (main.name == "__main__.py" and main.parent.name == "doit"):
        return sys.argv[1:]
    return []


def _check_requested(loaded: tuple[Spec, ...], argv: list[str]) -> None:
    """``doit build:nosuch`` lists the specs there are; doit itself would only say no such task exists."""
    names = {s.name for s in loaded}
    for arg in argv:
        name = _spec_named(arg)
        if name is not None and name not in names:
            raise UsageError(f"no spec named {name!r} (doit {arg}) in specs/",
                             f"use one of: {', '.join(sorted(names)) or '(none: add specs/<name>.yaml)'}")


def specs() -> tuple[Spec, ...]:
    """All specs of the project in the current folder."""
    return _specs_at(Path.cwd())


def _epoch() -> int:
    try:
        return source_date_epoch()
    except PipelineError as exc:
        refuse(exc)


# The stage function each task runs, as "module:function". Modules are imported when the
# action runs, not when tasks are generated: a no-op run loads only the specs, and in a
# cold build the imports overlap with the ISO's background hash.
STAGES: dict[Stage, str] = {
    Stage.FETCH: "aero_media.sources.fetch:fetch_stage",
    Stage.PROVE: "aero_media.sources.fetch:prove_stage",
    Stage.EXTRACT: "aero_media.sources.extract:extract_stage",
    Stage.EXPAND: "aero_media.devtools.standins:expand_stage",
    Stage.STAGE: "aero_media.stage.staging:stage_arch",
    Stage.SIGNING_CERT: "aero_media.devtools.testcert:generate_signing_pair",
    Stage.NOTICES: "aero_media.media.notices:build_notices",
    Stage.DRIVERS_ISO: "aero_media.media.drivers_iso:build_drivers_iso",
    Stage.VERIFY: "aero_media.media.drivers_iso:verify_drivers_iso",
    Stage.FAT_DISK: "aero_media.media.fat_disk:build_fat_disk",
    Stage.VERIFY_FAT_DISK: "aero_media.media.fat_disk:verify_fat_disk",
    Stage.GUEST_TOOLS: "aero_media.media.guest_tools:build_guest_tools",
    Stage.SERVICE: "aero_media.servicing.service:service_media",
    Stage.VERIFY_GUEST_TOOLS: "aero_media.media.guest_tools:verify_guest_tools",
}


def stage_function(stage: Stage) -> Callable[..., Any]:
    """Import and return the function a stage runs."""
    module, _, name = STAGES[stage].partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return fn


def run_stage(stage: Stage, *args: Any, writes: str | None = None) -> Callable[[], TaskFailed | None]:
    """Wrap a stage function as a doit action that fails with our one-line error.

    ``writes`` names the task's output for errors that name no file (a full disk
    during a write reports no path).
    """

    def action() -> TaskFailed | None:
        try:
            stage_function(stage)(*args)
        except PipelineError as exc:
            return TaskFailed(f"error: {exc.render()}")
        except OSError as exc:
            return TaskFailed(f"error: {disk_error(exc, writes).render()}")
        return None

    action.__name__ = STAGES[stage].partition(":")[2]
    return action


@functools.cache
def _code_memo() -> Path:
    # The tool's own cache folder: keyed by source content, it serves every checkout, and
    # a clean build/ does not cost the fifth of a second that analysing the code takes.
    cache = Context(root=Path.cwd()).cache_dir()
    with contextlib.suppress(OSError):
        cache.mkdir(parents=True, exist_ok=True)
    return cache / MEMO_NAME


def _service_outputs_current(spec: Spec, ctx: Context, *_args: Any) -> bool:
    from ..servicing.service import outputs_current

    return outputs_current(spec, ctx)


def _still_current(spec: Spec, ctx: Context, *_args: Any) -> bool:
    from ..sources.fetch import still_current

    return still_current(spec, ctx)


def _source_files(spec: Spec) -> list[str] | None:
    """Files of a directory source, as file_dep: additions and removals rerun staging.

    None when the folder cannot be listed: the stage then runs and says why in one
    line, and the other specs' tasks are generated as usual.
    """
    path = spec.source.path
    if path is None or not path.is_dir():
        return []
    try:
        return sorted(str(e.ref) for e in DirTree(path).entries() if e.kind is EntryKind.FILE)
    except PipelineError:
        return None


def _stage_inputs(spec: Spec, ctx: Context) -> list[str] | None:
    p = SpecPaths(spec, ctx)
    if spec.source.is_iso:
        return [str(p.provenance)]
    if spec.source.stand_ins:
        return [str(p.expand_manifest)]
    return _source_files(spec)


def _group(fn: Callable[..., Any]) -> Task:
    """The group task a stage's sub-tasks hang under; `doit list` shows its docstring."""
    return {"basename": fn.__name__.removeprefix("task_"), "name": None, "doc": (fn.__doc__ or "").strip()}


def _subtask(spec: Spec, stage: Stage, doc: str, args: tuple[Any, ...], file_dep: list[Any] | None,
             targets: list[Any], *,
             name: str | None = None, clean: Any = True, uptodate: list[Any] | None = None,
             **fingerprint_extra: Any) -> Task:
    """One sub-task: reruns when a file_dep changes, a target is missing, the spec slice or the stage's code changes.

    ``file_dep`` None means the inputs could not be listed: the task always runs.
    """
    code = code_fingerprint((STAGES[stage].partition(":")[0],), memo=_code_memo())
    fingerprint = {"stage": stage, "spec": spec.fingerprint(stage), "code": code, **fingerprint_extra}
    return {
        "name": name or spec.name,
        "doc": doc,
        "actions": [run_stage(stage, *args, writes=relpath_for_humans(targets[0]) if targets else None)],
        "file_dep": sorted({_in_project(f) for f in file_dep or ()}),
        "targets": [_in_project(t) for t in targets],
        "uptodate": [config_changed(fingerprint), *(uptodate or []), *([False] if file_dep is None else [])],
        "clean": _removing(*map(Path, targets)) if clean is True else clean,
    }


def _in_project(path: Path | str) -> str:
    """A file as doit's state names it: relative to the project (doit runs there), so the dep file holds
    no absolute path and a moved checkout stays up to date; a file outside the project keeps its path."""
    here = Path(os.path.abspath(path))
    root = Path.cwd()
    return here.relative_to(root).as_posix() if here.is_relative_to(root) else str(path)


def _removing(*paths: Path) -> list[Any]:
    """doit clean actions: each path, and the temp siblings a killed run left beside it."""
    return [(remove_with_leftovers, [p]) for p in paths]


def task_fetch() -> Iterator[Task]:
    """Download or locate the virtio-win ISO and prove its bytes (ISO sources only)."""
    yield _group(task_fetch)
    ctx = _ctx()
    for spec in specs():
        if not spec.source.is_iso:
            continue
        p = SpecPaths(spec, ctx)
        # The ISO is neither a file_dep (doit would hash 600 MB to save its state) nor a
        # target (several specs share one download, and `doit clean` never deletes it):
        # fetch reruns when its record no longer describes the ISO on disk.
        yield _subtask(spec, Stage.FETCH, f"fetch the ISO of {spec.name}", (spec, ctx),
                       [], [p.fetch_record], clean=_removing(p.fetch_record),
                       uptodate=[functools.partial(_still_current, spec, ctx)])


def task_extract() -> Iterator[Task]:
    """Stream the Windows 7 driver folders and licence files out of the ISO, with provenance."""
    yield _group(task_extract)
    ctx = _ctx()
    for spec in specs():
        if not spec.source.is_iso:
            continue
        p = SpecPaths(spec, ctx)
        yield _subtask(spec, Stage.EXTRACT, f"extract Windows 7 drivers for {spec.name}", (spec, ctx),
                       [p.fetch_record], [p.provenance], clean=_removing(p.extract_dir, p.provenance))


def task_prove() -> Iterator[Task]:
    """Prove the ISO's sha256 against its pin; everything published waits for it (ISO sources only)."""
    yield _group(task_prove)
    ctx = _ctx()
    for spec in specs():
        if not spec.source.is_iso:
            continue
        p = SpecPaths(spec, ctx)
        task = _subtask(spec, Stage.PROVE, f"prove the ISO of {spec.name}", (spec, ctx),
                        [p.fetch_record], [p.proof_record], clean=_removing(p.proof_record))
        # Scheduled after staging, so the background hash fetch started overlaps with it.
        task["task_dep"] = [f"stage:{spec.name}:{a.value}" for a in spec.arches]
        yield task


def task_expand() -> Iterator[Task]:
    """Expand a pack's stand-in recipes into build/<spec>/pack/ (the repo's sample pack only)."""
    yield _group(task_expand)
    ctx = _ctx()
    for spec in specs():
        if not spec.source.stand_ins:
            continue
        p = SpecPaths(spec, ctx)
        yield _subtask(spec, Stage.EXPAND, f"expand the stand-ins of {spec.name}", (spec, ctx),
                       _source_files(spec), [p.expand_manifest], clean=_removing(p.expand_dir, p.expand_manifest))


def task_stage() -> Iterator[Task]:
    """Stage each arch's packages under build/<spec>/stage/win7/<arch>/ and validate them."""
    yield _group(task_stage)
    ctx = _ctx()
    epoch = _epoch()
    for spec in specs():
        p = SpecPaths(spec, ctx)
        inputs = _stage_inputs(spec, ctx)
        # Test signing dates catalogs and signatures with the epoch and reads the certificate; else neither matters.
        cert = _signing_cert(spec, p)
        for arch in spec.arches:
            yield _subtask(spec, Stage.STAGE, f"stage {spec.name} for {arch.value}", (spec, ctx, arch, epoch),
                           None if inputs is None else [*inputs, *cert], [p.stage_manifest(arch)],
                           name=f"{spec.name}:{arch.value}",
                           clean=_removing(p.stage_dir(arch), p.stage_manifest(arch)),
                           signed_at=epoch if spec.signing.signer is not None else None)


def _signing_cert(spec: Spec, p: SpecPaths) -> list[Path]:
    """The certificate the build signs with, as a file_dep: made by signing_cert:<spec>, or the user's when it exists
    (when it does not, the stage says so in one line)."""
    cert = p.signing_cert
    return [cert] if cert is not None and (spec.signing_generated or cert.is_file()) else []


def _shipped_certs(spec: Spec, p: SpecPaths) -> list[Path]:
    """The certificate files a medium ships, as file_deps: the spec's (those that exist) and the signing one."""
    return [*(c for c in spec.signing.certs if c.is_file()), *_signing_cert(spec, p)]


def task_signing_cert() -> Iterator[Task]:
    """Make the throwaway test certificate and key of `signing: {generate: true}` specs (build/<spec>/signing/)."""
    yield _group(task_signing_cert)
    ctx = _ctx()
    epoch = _epoch()
    for spec in specs():
        if not spec.signing_generated:
            continue
        p = SpecPaths(spec, ctx)
        cert = p.signing_cert
        assert cert is not None
        yield _subtask(spec, Stage.SIGNING_CERT, f"throwaway test-signing pair of {spec.name}", (spec, ctx, epoch),
                       [], [cert], clean=_removing(p.signing_dir), epoch=epoch)


def _notice_inputs(spec: Spec, ctx: Context) -> list[str] | None:
    """What notices read besides the stage manifests: provenance, or the source's own notice files."""
    lic = spec.source.license_file
    extra = [str(lic)] if lic is not None and lic.is_file() else []
    if spec.source.is_iso or spec.source.stand_ins:
        return [*(_stage_inputs(spec, ctx) or []), *extra]
    root = spec.source.path
    assert root is not None
    files = _source_files(spec)
    if files is None:
        return None
    # Licence and notice files live outside the driver folders (win7/ or <Driver>/<os>/).
    return extra + [f for f in files if Path(f).parent == root or Path(f).relative_to(root).parts[0] == "licenses"]


def _stage_manifests(spec: Spec, ctx: Context) -> list[Path]:
    p = SpecPaths(spec, ctx)
    return [p.stage_manifest(a) for a in spec.arches]


def _recorded_inputs(spec: Spec, ctx: Context) -> list[Path]:
    """Files whose sha256 the media manifests record (Aero's inputs/provenance): the spec and the contract."""
    files = [data_file(ctx, CONTRACT_FILE)]
    if spec.file.is_file():
        files.append(spec.file)
    return files


def _proven(spec: Spec, ctx: Context) -> list[Path]:
    """What publishing waits for: the ISO's proof (ISO sources)."""
    return [SpecPaths(spec, ctx).proof_record] if spec.source.is_iso else []


def task_notices() -> Iterator[Task]:
    """Write THIRD_PARTY_NOTICES.md and licenses/ from the real source."""
    yield _group(task_notices)
    ctx = _ctx()
    for spec in specs():
        p = SpecPaths(spec, ctx)
        yield _subtask(spec, Stage.NOTICES, f"notices for {spec.name}", (spec, ctx),
                       [*_stage_manifests(spec, ctx), *(_notice_inputs(spec, ctx) or []), *_proven(spec, ctx)],
                       [p.notices_manifest],
                       clean=_removing(p.notices_dir, p.notices_manifest))


def task_drivers_iso() -> Iterator[Task]:
    """Write dist/<spec>/aero-virtio-win7-drivers.iso (reproducible, atomically renamed)."""
    yield _group(task_drivers_iso)
    ctx = _ctx()
    epoch = _epoch()
    for spec in specs():
        p = SpecPaths(spec, ctx)
        yield _subtask(spec, Stage.DRIVERS_ISO, f"drivers ISO of {spec.name}", (spec, ctx, epoch),
                       [*_stage_manifests(spec, ctx), p.notices_manifest, *_proven(spec, ctx),
                        *_recorded_inputs(spec, ctx)], [p.drivers_iso],
                       epoch=epoch)


def task_verify() -> Iterator[Task]:
    """Re-open the drivers ISO with an independent reader and check it against the manifests."""
    yield _group(task_verify)
    ctx = _ctx()
    epoch = _epoch()
    for spec in specs():
        p = SpecPaths(spec, ctx)
        yield _subtask(spec, Stage.VERIFY, f"verify the drivers ISO of {spec.name}", (spec, ctx, epoch),
                       [p.drivers_iso, p.notices_manifest, *_stage_manifests(spec, ctx)], [p.drivers_iso_report],
                       epoch=epoch)


def task_fat_disk() -> Iterator[Task]:
    """Write dist/<spec>/aero-virtio-win7-drivers-fat.vhd: a FAT32 driver disk (fixed VHD, x86\\ and x64\\)."""
    yield _group(task_fat_disk)
    ctx = _ctx()
    epoch = _epoch()
    for spec in specs():
        if not spec.fat_disk.enabled:
            continue
        p = SpecPaths(spec, ctx)
        certs = _shipped_certs(spec, p)
        yield _subtask(spec, Stage.FAT_DISK, f"FAT driver disk of {spec.name}", (spec, ctx, epoch),
                       [*_stage_manifests(spec, ctx), p.notices_manifest, *certs, *_proven(spec, ctx)],
                       [p.fat_disk], epoch=epoch)


def task_verify_fat_disk() -> Iterator[Task]:
    """Read the FAT driver disk back with an independent reader (and fsck.fat when installed)."""
    yield _group(task_verify_fat_disk)
    ctx = _ctx()
    epoch = _epoch()
    for spec in specs():
        if not spec.fat_disk.enabled:
            continue
        p = SpecPaths(spec, ctx)
        yield _subtask(spec, Stage.VERIFY_FAT_DISK, f"verify the FAT driver disk of {spec.name}", (spec, ctx, epoch),
                       [p.fat_disk, *_stage_manifests(spec, ctx), p.notices_manifest], [p.fat_disk_report],
                       epoch=epoch)


def task_service() -> Iterator[Task]:
    """Service a Windows 7 install ISO (install_media:): drivers, certificates, test mode inside its WIMs."""
    yield _group(task_service)
    ctx = _ctx()
    epoch = _epoch()
    for spec in specs():
        media = spec.install_media
        if media is None:
            continue
        p = SpecPaths(spec, ctx)
        inputs = [f for f in (media.iso, media.boot_wim, media.install_wim) if f is not None and f.is_file()]
        certs = _shipped_certs(spec, p)
        targets = [p.servicing_record, *p.serviced_wims, *([p.serviced_iso] if media.iso is not None else [])]
        yield _subtask(spec, Stage.SERVICE, f"serviced Windows 7 install media of {spec.name}", (spec, ctx, epoch),
                       [*_stage_manifests(spec, ctx), *inputs, *certs, *_proven(spec, ctx)], targets,
                       clean=_removing(p.install_media_dir, p.service_work), epoch=epoch,
                       uptodate=[functools.partial(_service_outputs_current, spec, ctx)])


def task_guest_tools() -> Iterator[Task]:
    """Write dist/<spec>/guest-tools/: aero-guest-tools.iso, .zip and manifest.json, published as one set."""
    yield _group(task_guest_tools)
    ctx = _ctx()
    epoch = _epoch()
    for spec in specs():
        p = SpecPaths(spec, ctx)
        certs = _shipped_certs(spec, p)
        yield _subtask(spec, Stage.GUEST_TOOLS, f"Guest Tools media of {spec.name}", (spec, ctx, epoch),
                       [*_stage_manifests(spec, ctx), p.notices_manifest, *certs, *_proven(spec, ctx),
                        *_recorded_inputs(spec, ctx)],
                       [p.guest_tools_iso, p.guest_tools_zip, p.guest_tools_manifest], epoch=epoch)


def task_verify_guest_tools() -> Iterator[Task]:
    """Read the Guest Tools ISO and zip back and check every file against manifest.json."""
    yield _group(task_verify_guest_tools)
    ctx = _ctx()
    epoch = _epoch()
    for spec in specs():
        p = SpecPaths(spec, ctx)
        yield _subtask(spec, Stage.VERIFY_GUEST_TOOLS, f"verify the Guest Tools media of {spec.name}", (spec, ctx, epoch),
                       [p.guest_tools_iso, p.guest_tools_zip, p.guest_tools_manifest], [p.guest_tools_report],
                       epoch=epoch)


def task_build() -> Iterator[Task]:
    """Build and verify all media of one spec: `doit build:<spec>`."""
    yield _group(task_build)
    ctx = _ctx()
    for spec in specs():
        p = SpecPaths(spec, ctx)
        yield {
            "name": spec.name,
            "doc": spec.description or f"all media of {spec.name}",
            "actions": None,
            "task_dep": [f"verify:{spec.name}", f"verify_guest_tools:{spec.name}",
                         *([f"verify_fat_disk:{spec.name}"] if spec.fat_disk.enabled else []),
                         *([f"service:{spec.name}"] if spec.install_media is not None else [])],
            # `doit clean build:<spec>` (and a bare `doit clean`, for the default specs) removes all the
            # pipeline owns for the spec, state files and a killed run's temps included. Never the cache.
            "clean": _removing(p.build, p.dist),
        }


def task_default() -> Task:
    """Build the specs marked `default: true` (what a bare `doit` runs)."""
    return {
        "actions": None,
        "task_dep": [f"build:{s.name}" for s in specs() if s.default],
    }
