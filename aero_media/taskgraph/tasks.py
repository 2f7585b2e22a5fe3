"""The doit task graph: one group per stage, one sub-task per spec (and arch).

Generators only wire stages together: from a :class:`Plan` (the project, its
loaded specs, the build epoch) they name inputs and outputs and point at stage
functions. They read no spec file and do no network, subprocess or write work:
the loader (:mod:`aero_media.taskgraph.main`) prepares all of that first. Each
sub-task reruns exactly when its ``file_dep`` manifests change, the slice of the
spec it reads (``Spec.fingerprint``) changes, or the code its stage function runs
changes (:func:`~aero_media.taskgraph.fingerprint.code_fingerprint`).
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed
from doit.tools import config_changed

from .. import log
from ..errors import PipelineError, disk_error
from ..fsutil import relpath_for_humans, remove_with_leftovers
from ..paths import Run
from ..sources.tree import DirTree, EntryKind
from ..spec.load import CONTRACT_FILE, BrokenSpec, data_file
from ..spec.model import Context, Spec
from ..spec.types import SourceKind, Stage
from .checker import ContentChecker, TargetsIntact
from .depfile import BACKEND_NAME
from .fingerprint import code_fingerprint
from .report import OneLineReporter

DOIT_CONFIG: dict[str, Any] = {
    "default_tasks": ["default"],
    # aero_media.taskgraph.depfile:AtomicJsonDB, registered as a doit.BACKEND entry point
    # (the loader checks it is there before doit looks it up).
    "backend": BACKEND_NAME,
    # Kept under build/ so nothing outside build/, dist/ and the cache is ever written.
    "dep_file": "build/.doit.db",
    "check_file_uptodate": ContentChecker,
    "reporter": OneLineReporter,
    "verbosity": 1,
}

Task = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """What every task generator reads: the project, the specs to build (loaded), the build epoch."""

    ctx: Context
    specs: tuple[Spec, ...]
    epoch: int
    code_memo: Path | None = None
    """The cache file of the code fingerprints' module analysis (None: none)."""
    failures: list[PipelineError] | None = None
    """Where an in-process caller collects the stages' errors (their exit codes); None: not collected."""
    broken: tuple[BrokenSpec, ...] = ()
    """The spec files left out because they do not load: the runs that would build them fail at their end."""
    named: frozenset[str] = frozenset()
    """The specs a task name asks for (``build:aero-in-tree``): a spec whose source needs an environment
    variable that is not set builds only when named, so a whole ``doit build`` leaves it out with a warning."""
    runs: tuple[Run, ...] = field(init=False, compare=False)
    left_out: frozenset[str] = field(init=False, compare=False)
    """The specs a whole ``doit build`` leaves out: their source needs an environment variable that is not
    set, and no task name asks for them (a default spec is never left out: a bare ``doit`` asks for it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(Run(s, self.ctx, self.epoch) for s in self.specs))
        object.__setattr__(self, "left_out", frozenset(
            s.name for s in self.specs
            if s.source.path_unset_env is not None and s.name not in self.named and not s.default))

    @property
    def built_runs(self) -> tuple[Run, ...]:
        """The runs a whole build builds (and the summary reports): all but :attr:`left_out`."""
        return tuple(r for r in self.runs if r.spec.name not in self.left_out)


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
    Stage.ARCH_DRIVERS_ISO: "aero_media.media.drivers_iso:build_arch_drivers_iso",
    Stage.VERIFY_ARCH_DRIVERS_ISO: "aero_media.media.drivers_iso:verify_arch_drivers_iso",
    Stage.FAT_DISK: "aero_media.media.fat_disk:build_fat_disk",
    Stage.VERIFY_FAT_DISK: "aero_media.media.fat_disk:verify_fat_disk",
    Stage.GUEST_TOOLS: "aero_media.media.guest_tools:build_guest_tools",
    Stage.SERVICE: "aero_media.servicing.service:service_media",
    Stage.VERIFY_GUEST_TOOLS: "aero_media.media.guest_tools:verify_guest_tools",
    Stage.PUBLISH: "aero_media.media.publish:publish_media",
}


def stage_function(stage: Stage) -> Callable[..., Any]:
    """Import and return the function a stage runs."""
    module, _, name = STAGES[stage].partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return fn


def run_stage(stage: Stage, *args: Any, writes: str | None = None,
              failures: list[PipelineError] | None = None) -> Callable[[], TaskFailed | None]:
    """Wrap a stage function as a doit action that fails with our one-line error.

    ``writes`` names the task's output for errors that name no file (a full disk
    during a write reports no path). ``failures`` collects the errors for a caller
    that runs doit in process and exits with the stage's own code.
    """

    def action() -> TaskFailed | None:
        try:
            stage_function(stage)(*args)
        except (PipelineError, OSError) as exc:
            err = exc if isinstance(exc, PipelineError) else disk_error(exc, writes)
            if failures is not None:
                failures.append(err)
            return TaskFailed(f"error: {err.render()}")
        return None

    action.__name__ = STAGES[stage].partition(":")[2]
    return action


def _service_outputs_current(run: Run, *_args: Any) -> bool:
    from ..servicing.service import outputs_current

    return outputs_current(run)


def _still_current(run: Run, *_args: Any) -> bool:
    from ..sources.fetch import still_current

    return still_current(run)


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


def _stage_inputs(run: Run) -> list[str] | None:
    spec, p = run.spec, run.paths
    if spec.source.is_iso:
        return [str(p.provenance)]
    if spec.source.stand_ins:
        return [str(p.expand_manifest)]
    if spec.source.kind is SourceKind.AERO_CHECKOUT:
        from ..sources.aero import input_files  # what ci-package.json names, not the whole checkout

        return input_files(spec)
    return _source_files(spec)


def _subtask(plan: Plan, run: Run, stage: Stage, doc: str, file_dep: list[Any] | None, targets: list[Any], *,
             arch: Any = None, clean: Any = True, uptodate: list[Any] | None = None,
             **fingerprint_extra: Any) -> Task:
    """One sub-task: reruns when a file_dep changes, a target is missing or not the bytes the task wrote, the spec
    slice or the stage's code changes.

    The action calls the stage function with the run (and ``arch``, for staging).
    ``file_dep`` None means the inputs could not be listed: the task always runs.
    """
    spec, root = run.spec, plan.ctx.root
    code = code_fingerprint((STAGES[stage].partition(":")[0],), memo=plan.code_memo)
    fingerprint = {"stage": stage, "spec": spec.fingerprint(stage), "code": code, **fingerprint_extra}
    args = (run,) if arch is None else (run, arch)
    target_names = [_in_project(t, root) for t in targets]
    return {
        "name": spec.name if arch is None else f"{spec.name}:{arch.value}",
        "doc": doc,
        "actions": [run_stage(stage, *args, writes=relpath_for_humans(targets[0]) if targets else None,
                              failures=plan.failures)],
        "file_dep": sorted({_in_project(f, root) for f in file_dep or ()}),
        "targets": target_names,
        "uptodate": [config_changed(fingerprint), TargetsIntact(target_names), *(uptodate or []),
                     *([False] if file_dep is None else [])],
        "clean": _removing(*map(Path, targets)) if clean is True else clean,
    }


def _in_project(path: Path | str, root: Path) -> str:
    """A file as doit's state names it: relative to the project (doit runs there), so the dep file holds
    no absolute path and a moved checkout stays up to date; a file outside the project keeps its path."""
    here = Path(os.path.abspath(path))
    base = Path(os.path.abspath(root))
    return here.relative_to(base).as_posix() if here.is_relative_to(base) else str(path)


def _removing(*paths: Path) -> list[Any]:
    """doit clean actions: each path, and the temp siblings a killed run left beside it."""
    return [(remove_with_leftovers, [p]) for p in paths]


def task_fetch(plan: Plan) -> Iterator[Task]:
    """Download or locate the virtio-win ISO and prove its bytes (ISO sources only)."""
    for run in plan.runs:
        if not run.spec.source.is_iso:
            continue
        p = run.paths
        # The ISO is neither a file_dep (doit would hash 600 MB to save its state) nor a
        # target (several specs share one download, and `doit clean` never deletes it):
        # fetch reruns when its record no longer describes the ISO on disk.
        yield _subtask(plan, run, Stage.FETCH, f"fetch the ISO of {run.spec.name}",
                       [], [p.fetch_record], clean=_removing(p.fetch_record),
                       uptodate=[functools.partial(_still_current, run)])


def task_extract(plan: Plan) -> Iterator[Task]:
    """Stream the Windows 7 driver folders and licence files out of the ISO, with provenance."""
    for run in plan.runs:
        if not run.spec.source.is_iso:
            continue
        p = run.paths
        yield _subtask(plan, run, Stage.EXTRACT, f"extract Windows 7 drivers for {run.spec.name}",
                       [p.fetch_record], [p.provenance], clean=_removing(p.extract_dir, p.provenance))


def task_prove(plan: Plan) -> Iterator[Task]:
    """Prove the ISO's sha256 against its pin; everything published waits for it (ISO sources only)."""
    for run in plan.runs:
        if not run.spec.source.is_iso:
            continue
        p = run.paths
        task = _subtask(plan, run, Stage.PROVE, f"prove the ISO of {run.spec.name}",
                        [p.fetch_record], [p.proof_record], clean=_removing(p.proof_record))
        # What waits for the proof loads first, while the ISO's hash still runs on its own thread: after it,
        # an unpinned ISO's media would cost the cold build their import time once more.
        task["actions"] = [functools.partial(import_ahead, waiting_on_proof(run)), *task["actions"]]
        # Scheduled after what does not wait for it, so the background hash fetch started overlaps with that:
        # staging, and a pinned ISO's media too (doit's queue would otherwise take prove as soon as staging is
        # done, and a serial run would wait for the hash before writing them).
        task["task_dep"] = (verify_goals(run.spec) if run.spec.source.pinned_iso
                            else [f"{Stage.STAGE}:{run.spec.name}:{a.value}" for a in run.spec.arches])
        yield task


@dataclass(frozen=True)
class Medium:
    """One kind of medium: the stage that writes it, the one that verifies it, and whether a spec makes it."""

    writer: Stage
    verifier: Stage
    made: Callable[[Spec], bool]
    per_arch: bool = False
    """One task per arch (``<stage>:<spec>:<arch>``)."""


# The media a spec can make, the one list the verify goals and the proof's waiters are read from.
MEDIA = (
    Medium(Stage.DRIVERS_ISO, Stage.VERIFY, lambda spec: True),
    Medium(Stage.ARCH_DRIVERS_ISO, Stage.VERIFY_ARCH_DRIVERS_ISO, lambda spec: spec.media.winpe_drivers.arch_media,
           per_arch=True),
    Medium(Stage.FAT_DISK, Stage.VERIFY_FAT_DISK, lambda spec: spec.fat_disk.enabled),
    Medium(Stage.GUEST_TOOLS, Stage.VERIFY_GUEST_TOOLS, lambda spec: True),
)


def waiting_on_proof(run: Run) -> tuple[Stage, ...]:
    """The stages of ``run`` that wait for the ISO's proof.

    Publishing and servicing always do; the notices and media only for an unpinned ISO, whose digest they
    record (:func:`~aero_media.sources.resolve.iso_sha256`).
    """
    spec = run.spec
    if not spec.source.is_iso:
        return ()
    media = () if spec.source.pinned_iso else (
        Stage.NOTICES, *(s for m in MEDIA if m.made(spec) for s in (m.writer, m.verifier)))
    return (*media, *((Stage.SERVICE,) if spec.install_media is not None else ()), Stage.PUBLISH)


def import_ahead(stages: Sequence[Stage]) -> None:
    """Import the modules the ``stages`` run (a doit action: it returns None, so it never fails the task).

    Python imports each module once, so the stages' own imports then cost nothing.
    """
    for stage in stages:
        importlib.import_module(STAGES[stage].partition(":")[0])


def task_expand(plan: Plan) -> Iterator[Task]:
    """Expand a pack's stand-in recipes into build/<spec>/pack/ (the repo's sample pack only)."""
    for run in plan.runs:
        if not run.spec.source.stand_ins:
            continue
        p = run.paths
        yield _subtask(plan, run, Stage.EXPAND, f"expand the stand-ins of {run.spec.name}",
                       _source_files(run.spec), [p.expand_manifest], clean=_removing(p.expand_dir, p.expand_manifest))


def task_stage(plan: Plan) -> Iterator[Task]:
    """Stage each arch's packages under build/<spec>/stage/win7/<arch>/ and validate them."""
    for run in plan.runs:
        spec, p = run.spec, run.paths
        inputs = _stage_inputs(run)
        # Test signing dates catalogs and signatures with the epoch and reads the certificate; else neither matters.
        cert = _signing_cert(run)
        for arch in spec.arches:
            yield _subtask(plan, run, Stage.STAGE, f"stage {spec.name} for {arch.value}",
                           None if inputs is None else [*inputs, *cert], [p.stage_manifest(arch)], arch=arch,
                           clean=_removing(p.stage_dir(arch), p.stage_manifest(arch)),
                           signed_at=run.epoch if spec.signing.signer is not None else None)


def _signing_cert(run: Run) -> list[Path]:
    """The certificate the build signs with, as a file_dep: made by signing_cert:<spec>, or the user's when it exists
    (when it does not, the stage says so in one line)."""
    cert = run.paths.signing_cert
    return [cert] if cert is not None and (run.spec.signing_generated or cert.is_file()) else []


def _shipped_certs(run: Run) -> list[Path]:
    """The certificate files a medium ships, as file_deps: the spec's (those that exist) and the signing one."""
    return [*(c for c in run.spec.signing.certs if c.is_file()), *_signing_cert(run)]


def task_signing_cert(plan: Plan) -> Iterator[Task]:
    """Make the throwaway test certificate and key of `signing: {generate: true}` specs (build/<spec>/signing/)."""
    for run in plan.runs:
        if not run.spec.signing_generated:
            continue
        p = run.paths
        cert = p.signing_cert
        assert cert is not None
        sig = run.spec.signing.signer
        # A PFX's certificate (or the pair made while its variable is unset): its thumbprint decides, never the key.
        extra: dict[str, Any] = {}
        if sig is not None and sig.from_pfx:
            from ..stage.pfx import pfx_thumbprint

            extra = {"pfx": pfx_thumbprint(run.spec, run.ctx.root)}
        yield _subtask(plan, run, Stage.SIGNING_CERT, f"throwaway test-signing pair of {run.spec.name}",
                       [], [cert], clean=_removing(p.signing_dir), epoch=run.epoch, **extra)


def _notice_inputs(run: Run) -> list[str] | None:
    """What notices read besides the stage manifests: provenance, or the source's own notice files."""
    spec = run.spec
    lic = spec.source.license_file
    extra = [str(lic)] if lic is not None and lic.is_file() else []
    if spec.source.is_iso or spec.source.stand_ins:
        return [*(_stage_inputs(run) or []), *extra]
    root = spec.source.path
    if root is None and spec.source.path_unset_env is not None:
        return extra  # source.path names a variable that is not set: reading the source says so
    assert root is not None
    if spec.source.kind is SourceKind.AERO_CHECKOUT:
        # Its licences are at its root; the rest of the checkout is no input of the notices.
        return extra + sorted(str(f) for f in root.iterdir() if f.is_file()) if root.is_dir() else extra
    files = _source_files(spec)
    if files is None:
        return None
    # Licence and notice files live outside the driver folders (win7/ or <Driver>/<os>/).
    return extra + [f for f in files if Path(f).parent == root or Path(f).relative_to(root).parts[0] == "licenses"]


def _stage_manifests(run: Run) -> list[Path]:
    return [run.paths.stage_manifest(a) for a in run.spec.arches]


def _recorded_inputs(run: Run, *, spec_file: bool = True) -> list[Path]:
    """Files whose sha256 a media manifest records (Aero's inputs/provenance): the contract, and the spec file
    for the Guest Tools alone (:func:`aero_media.media.contents.manifest_inputs`)."""
    files = [run.spec.contract.source or data_file(run.ctx, CONTRACT_FILE)]
    if spec_file and run.spec.file.is_file():
        files.append(run.spec.file)
    return files


def _proven(run: Run) -> list[Path]:
    """What publishing waits for: the ISO's proof (ISO sources)."""
    return [run.paths.proof_record] if run.spec.source.is_iso else []


def _iso_digest(run: Run) -> tuple[list[Path], dict[str, Any]]:
    """What a stage recording the ISO's sha256 depends on (:func:`~aero_media.sources.resolve.iso_sha256`): an
    unpinned ISO's proof, as a file_dep, or a pinned one's pin, in the task's fingerprint."""
    if run.spec.source.pinned_iso:
        return [], {"iso_sha256": run.spec.source.sha256}
    return _proven(run), {}


def task_notices(plan: Plan) -> Iterator[Task]:
    """Write THIRD_PARTY_NOTICES.md and licenses/ from the real source."""
    for run in plan.runs:
        p = run.paths
        digest_dep, digest = _iso_digest(run)
        yield _subtask(plan, run, Stage.NOTICES, f"notices for {run.spec.name}",
                       [*_stage_manifests(run), *(_notice_inputs(run) or []), *digest_dep],
                       [p.notices_manifest],
                       clean=_removing(p.notices_dir, p.notices_manifest), **digest)


def task_drivers_iso(plan: Plan) -> Iterator[Task]:
    """Write the drivers ISO under build/<spec>/media/ (reproducible, atomically renamed; published later)."""
    for run in plan.runs:
        p = run.pending
        digest_dep, digest = _iso_digest(run)
        yield _subtask(plan, run, Stage.DRIVERS_ISO, f"drivers ISO of {run.spec.name}",
                       [*_stage_manifests(run), p.notices_manifest, *digest_dep, *_shipped_certs(run),
                        *_recorded_inputs(run, spec_file=False)],
                       [p.drivers_iso], epoch=run.epoch, **digest)


def task_verify(plan: Plan) -> Iterator[Task]:
    """Re-open the drivers ISO with an independent reader and check it against the manifests."""
    for run in plan.runs:
        p = run.pending
        yield _subtask(plan, run, Stage.VERIFY, f"verify the drivers ISO of {run.spec.name}",
                       [p.drivers_iso, p.notices_manifest, *_stage_manifests(run)], [p.drivers_iso_report],
                       epoch=run.epoch)


def task_arch_drivers_iso(plan: Plan) -> Iterator[Task]:
    """Write <drivers ISO stem>-<arch>.iso, one arch with its $WinPEDriver$ (winpe_drivers: per-arch; unpublished)."""
    for run in plan.runs:
        if not run.spec.media.winpe_drivers.arch_media:
            continue
        p = run.pending
        digest_dep, digest = _iso_digest(run)
        for arch in run.spec.arches:
            yield _subtask(plan, run, Stage.ARCH_DRIVERS_ISO, f"{arch.value} drivers ISO of {run.spec.name}",
                           [p.stage_manifest(arch), p.notices_manifest, *digest_dep, *_shipped_certs(run),
                            *_recorded_inputs(run, spec_file=False)],
                           [p.arch_drivers_iso(arch)], arch=arch, epoch=run.epoch, **digest)


def task_verify_arch_drivers_iso(plan: Plan) -> Iterator[Task]:
    """Re-open each one-arch drivers ISO with the independent reader and check it against the manifests."""
    for run in plan.runs:
        if not run.spec.media.winpe_drivers.arch_media:
            continue
        p = run.pending
        for arch in run.spec.arches:
            yield _subtask(plan, run, Stage.VERIFY_ARCH_DRIVERS_ISO,
                           f"verify the {arch.value} drivers ISO of {run.spec.name}",
                           [p.arch_drivers_iso(arch), p.notices_manifest, p.stage_manifest(arch)],
                           [p.arch_drivers_iso_report(arch)], arch=arch, epoch=run.epoch)


def task_fat_disk(plan: Plan) -> Iterator[Task]:
    """Write aero-virtio-win7-drivers-fat.vhd: a FAT32 driver disk (fixed VHD, x86\\ and x64\\; unpublished)."""
    for run in plan.runs:
        if not run.spec.fat_disk.enabled:
            continue
        p = run.pending
        digest_dep, digest = _iso_digest(run)
        yield _subtask(plan, run, Stage.FAT_DISK, f"FAT driver disk of {run.spec.name}",
                       [*_stage_manifests(run), p.notices_manifest, *_shipped_certs(run), *digest_dep],
                       [p.fat_disk], epoch=run.epoch, **digest)


def task_verify_fat_disk(plan: Plan) -> Iterator[Task]:
    """Read the FAT driver disk back with an independent reader (and fsck.fat when installed)."""
    for run in plan.runs:
        if not run.spec.fat_disk.enabled:
            continue
        p = run.pending
        yield _subtask(plan, run, Stage.VERIFY_FAT_DISK, f"verify the FAT driver disk of {run.spec.name}",
                       [p.fat_disk, *_stage_manifests(run), p.notices_manifest], [p.fat_disk_report],
                       epoch=run.epoch)


def _secrets_fingerprint(plan: Plan, run: Run) -> dict[str, str | None]:
    """``{"secrets": keyed digest}`` for a full answer file (a changed password or key reruns the task), else {}."""
    media = run.spec.install_media
    if media is None or media.unattended is None:
        return {}
    from ..answer.answerfile import secrets_digest

    return {"secrets": secrets_digest(media.unattended, run.spec.display, plan.ctx.build_dir)}


def task_service(plan: Plan) -> Iterator[Task]:
    """Service a Windows 7 install ISO (install_media:): drivers, certificates, test mode inside its WIMs."""
    for run in plan.runs:
        media = run.spec.install_media
        if media is None:
            continue
        p = run.paths
        inputs = [f for f in (media.iso, media.boot_wim, media.install_wim) if f is not None and f.is_file()]
        secrets = _secrets_fingerprint(plan, run)
        yield _subtask(plan, run, Stage.SERVICE, f"serviced Windows 7 install media of {run.spec.name}",
                       [*_stage_manifests(run), *inputs, *_shipped_certs(run), *_proven(run)], p.serviced_outputs,
                       clean=_removing(p.install_media_dir, p.service_work), epoch=run.epoch,
                       uptodate=[functools.partial(_service_outputs_current, run),
                                 *([False] if secrets == {"secrets": None} else [])],
                       **secrets)


def task_guest_tools(plan: Plan) -> Iterator[Task]:
    """Write guest-tools/: aero-guest-tools.iso, .zip and manifest.json, one set (unpublished)."""
    for run in plan.runs:
        p = run.pending
        digest_dep, digest = _iso_digest(run)
        yield _subtask(plan, run, Stage.GUEST_TOOLS, f"Guest Tools media of {run.spec.name}",
                       [*_stage_manifests(run), p.notices_manifest, *_shipped_certs(run), *digest_dep,
                        *_recorded_inputs(run)],
                       [p.guest_tools_iso, p.guest_tools_zip, p.guest_tools_manifest], epoch=run.epoch, **digest)


def task_verify_guest_tools(plan: Plan) -> Iterator[Task]:
    """Read the Guest Tools ISO and zip back and check every file against manifest.json."""
    for run in plan.runs:
        p = run.pending
        yield _subtask(plan, run, Stage.VERIFY_GUEST_TOOLS, f"verify the Guest Tools media of {run.spec.name}",
                       [p.guest_tools_iso, p.guest_tools_zip, p.guest_tools_manifest], [p.guest_tools_report],
                       epoch=run.epoch)


def verify_goals(spec: Spec) -> list[str]:
    """The tasks that make and verify every medium of ``spec`` under build/<spec>/media/."""
    return [goal for m in MEDIA if m.made(spec)
            for goal in ([f"{m.verifier}:{spec.name}:{a.value}" for a in spec.arches] if m.per_arch
                         else [f"{m.verifier}:{spec.name}"])]


def task_publish(plan: Plan) -> Iterator[Task]:
    """Link the verified media into dist/<spec>/, together, once the ISO is proven."""
    for run in plan.runs:
        pending, published = run.pending, run.paths
        task = _subtask(plan, run, Stage.PUBLISH, f"publish the media of {run.spec.name}",
                        [*pending.media_files, *pending.guest_tools_files, *_proven(run)],
                        [*published.media_files, *published.guest_tools_files],
                        clean=_removing(*published.media_files, published.guest_tools_dir))
        # Every medium is made and verified, and the ISO proven (after them, when they do not wait for it).
        task["task_dep"] = [*verify_goals(run.spec), *([f"{Stage.PROVE}:{run.spec.name}"] if _proven(run) else [])]
        yield task


def build_goals(spec: Spec) -> list[str]:
    """The tasks that make, verify and publish every medium of ``spec``: what `doit build:<spec>` runs."""
    return [f"{Stage.PUBLISH}:{spec.name}",
            *([f"{Stage.SERVICE}:{spec.name}"] if spec.install_media is not None else [])]


def broken_specs_failure(broken: tuple[BrokenSpec, ...]) -> Callable[[], TaskFailed]:
    """The action that ends a whole run (a bare `doit`, `doit build`) non-zero when specs were left out broken.

    It is the last action of the run's goal task, so every healthy spec builds first.
    """

    def action() -> TaskFailed:
        files = ", ".join(b.file for b in broken)
        return TaskFailed(f"error: {len(broken)} broken spec(s) left out of this run: {files}; fix: correct them "
                          "(the warning at the start names the first problem of each), or move them out of specs/")

    action.__name__ = "broken_specs"
    return action


def _broken_actions(plan: Plan) -> list[Any] | None:
    return [broken_specs_failure(plan.broken)] if plan.broken else None


def _left_out(spec: Spec) -> Callable[[], None]:
    def say() -> None:
        # The source's own one-line error for the unset variable (imported when the action runs, as stages are).
        from ..sources.resolve import unset_root_error

        unset = unset_root_error(spec)
        assert unset is not None
        log.warn(f"{unset.message}: left out of this run; fix: {unset.hint}")
    return say


def task_build(plan: Plan) -> Iterator[Task]:
    """Build and verify all media of one spec: `doit build:<spec>`."""
    if plan.broken:
        # The group's own task (name None) runs after every `build:<spec>`: a whole `doit build` fails at its end.
        yield {"name": None, "doc": group_doc("build"), "actions": _broken_actions(plan)}
    for run in plan.runs:
        spec, p = run.spec, run.paths
        if spec.name in plan.left_out:
            # Not broken, only not set up on this machine (no Aero checkout): a whole `doit build` goes on.
            yield {"name": spec.name, "doc": spec.description or f"all media of {spec.name}",
                   "actions": [_left_out(spec)], "clean": _removing(p.build, p.dist)}
            continue
        yield {
            "name": spec.name,
            "doc": spec.description or f"all media of {spec.name}",
            "actions": None,
            "task_dep": build_goals(spec),
            # `doit clean build:<spec>` (and a bare `doit clean`, for the default specs) removes all the
            # pipeline owns for the spec, state files and a killed run's temps included. Never the cache.
            "clean": _removing(p.build, p.dist),
        }


def task_default(plan: Plan) -> Task:
    """Build the specs marked `default: true` (what a bare `doit` runs)."""
    return {"actions": _broken_actions(plan), "task_dep": [f"build:{s.name}" for s in plan.specs if s.default]}


PIN_PARAMS: list[dict[str, Any]] = [
    {"name": "yes", "long": "yes", "type": bool, "default": False, "help": "write the pins (else show the diff)"},
    {"name": "replace", "long": "replace", "type": bool, "default": False,
     "help": "replace pins that differ from the build"},
]


def pin_action(run: Run, failures: list[PipelineError] | None) -> Callable[..., TaskFailed | None]:
    """The action of `pin:<spec>`: the code of `aero-media pin`, once doit has made the build current."""

    def action(yes: bool, replace: bool) -> TaskFailed | None:
        from ..stage.pinfile import built_pins, pin_spec

        try:
            pin_spec(run, built_pins(run), yes=yes, replace=replace)
        except PipelineError as exc:
            if failures is not None:
                failures.append(exc)
            return TaskFailed(f"error: {exc.render()}")
        return None

    action.__name__ = "pin"
    return action


def task_pin(plan: Plan) -> Iterator[Task]:
    """Show the build's pins as a diff of the spec file: `doit pin:<spec>` (add --yes to write, --replace)."""
    for run in plan.runs:
        yield {
            "name": run.spec.name,
            "doc": f"write the build's pins into {run.spec.display} (--yes writes; --replace overrides)",
            "actions": [pin_action(run, plan.failures)],
            # Pinned from a build that ran to its end: every medium made and verified.
            "task_dep": [f"build:{run.spec.name}"],
            "params": PIN_PARAMS,
            "uptodate": [False],
            "verbosity": 2,  # the diff is the point of the task
        }


# One generator per stage, keyed by the stages' one list; `build` and `default` group them.
GENERATORS: dict[Stage, Callable[[Plan], Iterator[Task]]] = {
    Stage.FETCH: task_fetch,
    Stage.PROVE: task_prove,
    Stage.EXTRACT: task_extract,
    Stage.EXPAND: task_expand,
    Stage.STAGE: task_stage,
    Stage.SIGNING_CERT: task_signing_cert,
    Stage.NOTICES: task_notices,
    Stage.DRIVERS_ISO: task_drivers_iso,
    Stage.VERIFY: task_verify,
    Stage.ARCH_DRIVERS_ISO: task_arch_drivers_iso,
    Stage.VERIFY_ARCH_DRIVERS_ISO: task_verify_arch_drivers_iso,
    Stage.FAT_DISK: task_fat_disk,
    Stage.VERIFY_FAT_DISK: task_verify_fat_disk,
    Stage.GUEST_TOOLS: task_guest_tools,
    Stage.SERVICE: task_service,
    Stage.VERIFY_GUEST_TOOLS: task_verify_guest_tools,
    Stage.PUBLISH: task_publish,
}


# Every task group: each stage's, then the two that group them, then writing a build's pins.
GROUP_GENERATORS: dict[str, Callable[[Plan], Any]] = {
    **{s.value: g for s, g in GENERATORS.items()}, "build": task_build, "default": task_default, "pin": task_pin}


def group_doc(name: str) -> str:
    """What `doit list` says of a task group."""
    return (GROUP_GENERATORS[name].__doc__ or "").strip()
