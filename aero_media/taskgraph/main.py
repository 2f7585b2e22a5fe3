"""The doit entry of the project: a task loader that sees what was asked for, and the DoitMain that uses it.

doit hands :meth:`SpecTaskLoader.load_tasks` the command and the task names on the
command line. The loader loads every spec, decides from those names what a broken
spec means (asked for other specs by name: it is left out with a warning; asked
for it, or for everything: the run is refused), checks that every named spec
exists, and only then builds the :class:`~aero_media.taskgraph.tasks.Plan` the
task generators read. `aero-media build` runs doit in process through
:class:`AeroDoitMain`; a plain `doit` in the checkout gets the same loader from
``pyproject.toml`` (``[tool.doit] loader``), and ``dodo.py`` is the thin wiring
doit's own default loader reads elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from doit import loader as doit_loader
from doit.cmd_base import TaskLoader2, opt_cwd, opt_dodo, opt_seek_file
from doit.doit_cmd import DoitMain

from .. import lifetime, scratch
from ..errors import PipelineError, SpecError, UsageError
from ..log import warn
from ..media.epoch import source_date_epoch
from ..sources.fetch import settle_background_hashes
from ..spec.load import BrokenSpec, broken_specs, load_each
from ..spec.model import Context, Spec
from ..spec.types import Stage
from ..spec.yamldoc import raise_problems
from . import fingerprint, interrupt
from .depfile import BACKEND_NAME
from .refuse import refuse
from .report import command_reporter, summary_reporter
from .tasks import DOIT_CONFIG, GROUP_GENERATORS, Plan, group_doc

_WHOLE_GROUPS = ("build", "default")
_PER_SPEC_GROUPS = ("pin",)  # groups that are no stage, whose sub-tasks are named by spec


def spec_named(arg: str) -> str | None:
    """The spec a doit task argument names (``build:sample``, ``stage:sample:x86``), or None."""
    group, sep, rest = arg.partition(":")
    name = rest.split(":", 1)[0]
    known = group in _WHOLE_GROUPS or group in _PER_SPEC_GROUPS or group in {s.value for s in Stage}
    return name if sep and known and name and "*" not in name else None


def named_broken(task_args: Sequence[str], broken: set[str]) -> set[str]:
    """The broken specs the task names ask for by name (``doit build:broken``); a whole group names none."""
    return {n for n in (spec_named(a) for a in task_args if ":" in a) if n is not None and n in broken}


def select_specs(results: Sequence[tuple[Path, Spec | SpecError]], task_args: Sequence[str],
                 root: Path | None = None) -> tuple[tuple[Spec, ...], tuple[BrokenSpec, ...]]:
    """The specs to wire for ``task_args`` (the task names doit was given), and the broken ones left out.

    One broken spec stops no other: each is named in one warning line now, and the run
    that would have built it (a bare ``doit``, a whole group) fails at its end. Asked for a
    broken spec by name, the run is refused with every problem of that file. A task name
    for a spec that does not exist is refused, naming the ones that do.
    """
    loaded = tuple(r for _, r in results if isinstance(r, Spec))
    broken = broken_specs(results, Path.cwd() if root is None else root)
    asked = named_broken(task_args, {b.name for b in broken})
    if asked:
        raise_problems([r.message for path, r in results if isinstance(r, SpecError) and path.stem in asked])
    for b in broken:
        warn(b.line())
    names = {s.name for s in loaded}
    for arg in task_args:
        name = spec_named(arg)
        if name is not None and name not in names:
            raise UsageError(f"no spec named {name!r} (doit {arg}) in specs/",
                             f"use one of: {', '.join(sorted(names)) or '(none: add specs/<name>.yaml)'}")
    return loaded, broken


def doit_config() -> dict[str, Any]:
    """doit's configuration, once the dep-file backend is known to be registered (a stale install lacks it)."""
    if not entry_points(group="doit.BACKEND", name=BACKEND_NAME):
        raise UsageError(f"doit cannot find the {BACKEND_NAME!r} dep-file backend: the aero-virtio-media "
                         "package is not installed, or its install is stale",
                         "reinstall it (in a checkout: .venv/bin/pip install -e '.[test]')")
    return dict(DOIT_CONFIG)


def code_memo(ctx: Context) -> Path | None:
    """The code fingerprints' memo in the tool's cache, its folder made now (the generators write nothing).

    Keyed by source content, it serves every checkout, and a clean build/ does not cost
    the fifth of a second that analysing the code takes.
    """
    cache = ctx.cache_dir()
    with contextlib.suppress(OSError):
        cache.mkdir(parents=True, exist_ok=True)
    memo = cache / fingerprint.MEMO_NAME
    fingerprint.prepare(memo)
    return memo


def make_plan(ctx: Context, task_args: Sequence[str], epoch: int | None = None) -> Plan:
    """Load the project's specs, apply the broken-spec policy for ``task_args``, and prepare build/."""
    specs, broken = select_specs(load_each(ctx), task_args, ctx.root)
    ctx.build_dir.mkdir(exist_ok=True)  # doit writes its dep file there at the end of the run
    named = frozenset(n for n in (spec_named(a) for a in task_args) if n is not None)
    return Plan(ctx, specs, source_date_epoch() if epoch is None else epoch, code_memo(ctx), broken=broken,
                named=named)


@dataclass(frozen=True)
class Prepared:
    """Specs a command made itself (an ad-hoc build), wired as they are; the stages' errors are collected."""

    specs: tuple[Spec, ...]
    epoch: int
    error_log: Path
    """Where a bug's traceback goes: outside the scratch project, which the command deletes."""
    failures: list[PipelineError] = field(default_factory=list)


class SpecTaskLoader(TaskLoader2):  # type: ignore[misc]  # doit ships no type information
    """Tasks from the specs of the project doit runs in, by the policy the task names ask for.

    ``root`` fixes the project (``aero-media build``); without it the project is
    doit's folder: ``--dir``, else the folder of ``-f`` (``dodo.py``), as doit's own
    loader has it. ``prepared`` wires specs a command made (an ad-hoc build) instead
    of loading ``specs/``.
    """

    cmd_options = (opt_dodo, opt_cwd, opt_seek_file)

    def __init__(self, root: Path | None = None, prepared: Prepared | None = None,
                 sink: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.root = root
        self.prepared = prepared
        self.sink = sink
        """Where the run's combined report goes instead of the text summary on stdout (``--json``)."""
        self.plan: Plan | None = None
        self.restore_sigint: Callable[[], None] = lambda: None
        self.broken: tuple[BrokenSpec, ...] = ()
        """The spec files this run left out because they do not load (for the caller's summary)."""

    @interrupt.unwinding
    def setup(self, opt_values: dict[str, Any]) -> None:
        """Go to the project folder (doit keeps its dep file relative to it)."""
        before_doit()
        # A Ctrl-C while the specs load is one line, not a traceback. A command's scratch project
        # is deleted when it ends: there is nothing for doit to resume.
        self.restore_sigint = interrupt.install("run the command again" if self.prepared else interrupt.RESUME)
        if self.root is not None:
            os.chdir(self.root)
            return
        # doit's own rules for -f, --dir and --seek-file, and its one-line errors for a missing dodo.py.
        doit_loader.get_module(opt_values["dodoFile"], opt_values["cwdPath"], opt_values["seek_file"])
        self.root = Path.cwd()

    def load_doit_config(self) -> dict[str, Any]:
        """doit's configuration (refused in one line when the install is stale)."""
        try:
            # doit binds its report stream when it is imported: report where stderr is now. Stdout
            # is for results alone (the summary, a command's output): task lines go with the progress.
            if self.prepared is not None:
                return {**doit_config(), "outfile": sys.stderr,
                        "reporter": command_reporter(self.prepared.error_log)}
            return {**doit_config(), "outfile": sys.stderr,
                    "reporter": summary_reporter(lambda: self.plan.built_runs if self.plan else (), self.sink,
                                                 lambda: self.broken)}
        except PipelineError as exc:
            refuse(exc)

    @interrupt.unwinding
    def load_tasks(self, cmd: Any, pos_args: list[str]) -> list[Any]:
        """The tasks of the graph, for the task names doit was given (``pos_args``)."""
        assert self.root is not None
        try:
            if self.prepared is not None:
                ctx = Context(root=self.root, scratch=True)
                ctx.build_dir.mkdir(exist_ok=True)
                plan = Plan(ctx, self.prepared.specs, self.prepared.epoch, code_memo(ctx), self.prepared.failures)
            else:
                plan = make_plan(Context(root=self.root, remember_valid_specs=True),
                                 [a for a in pos_args if not a.startswith("-")])
        except PipelineError as exc:
            refuse(exc)
        self.broken = plan.broken
        self.plan = plan
        tasks: list[Any] = []
        for name, generator in GROUP_GENERATORS.items():
            tasks.extend(_keeping_group_actions(name, generator(plan)))
        return tasks


def _keeping_group_actions(name: str, made: Any) -> list[Any]:
    """doit's tasks from a generator's output, with the actions of its group task (``name: None``) kept.

    doit's loader drops a group task's actions; the `build` group's is what fails a whole
    `doit build` at its end when a spec was left out broken, after every subtask ran.
    """
    from doit.task import Task

    if isinstance(made, dict):  # a single task: no group
        return list(doit_loader.generate_tasks(name, made, group_doc(name)))
    made = list(made)
    # Taken before doit's loader sets them to None in the very dict.
    actions = next((d.get("actions") for d in made if d.get("name", "") is None), None)
    tasks = doit_loader.generate_tasks(name, (d for d in made), group_doc(name))  # doit wants a generator
    if not actions:
        return list(tasks)
    return [Task(name, actions, task_dep=t.task_dep, doc=t.doc, has_subtask=True) if t.name == name else t
            for t in tasks]


class AeroDoitMain(DoitMain):  # type: ignore[misc]  # doit ships no type information
    """doit, in process, on :class:`SpecTaskLoader`; no config file is read."""

    def __init__(self, task_loader: SpecTaskLoader) -> None:
        super().__init__(task_loader, config_filenames=())
        self.spec_loader = task_loader

    def run(self, all_args: Sequence[str]) -> int:
        """Run doit; a refusal while loading (bad spec, lock held) is its exit code, as for a doit process."""
        try:
            return int(super().run(list(all_args)) or 0)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 3
        finally:
            settle_background_hashes()  # nothing of this run writes into the project once it returns
            self.spec_loader.restore_sigint()


def before_doit() -> None:
    """Before doit starts: its ``-n`` workers will die with this process, and old versions' temps go."""
    lifetime.workers_die_with_parent()
    scratch.sweep_old_temp_folders()


def dodo_namespace() -> dict[str, Any]:
    """What ``dodo.py`` gives doit's own loader: the configuration and one creator per task group.

    That loader hands the creators no task names, so they apply the strict policy (any
    broken spec refuses the run); the specs load when doit first asks for tasks.
    """
    plan: list[Plan] = []

    def the_plan() -> Plan:
        if not plan:
            try:
                doit_config()
                plan.append(make_plan(Context(root=Path.cwd(), remember_valid_specs=True), ()))
            except PipelineError as exc:
                refuse(exc)
        return plan[0]

    before_doit()
    namespace: dict[str, Any] = {"DOIT_CONFIG": {
        **DOIT_CONFIG, "outfile": sys.stderr,  # task lines with the progress; stdout is the summary's
        "reporter": summary_reporter(lambda: plan[0].built_runs if plan else (),
                                     broken_of=lambda: plan[0].broken if plan else ())}}
    for name in GROUP_GENERATORS:
        def creator(name: str = name) -> Any:
            return GROUP_GENERATORS[name](the_plan())
        creator.__doc__ = group_doc(name)
        namespace[f"task_{name}"] = creator
    return namespace
