"""Whether a build is current enough to pin from (`aero-media pin`), asked of doit's state.

What is written and how lives in :mod:`aero_media.stage.pinfile`; this module only asks doit's
dep file whether the tasks that made the pinned bytes (fetch, prove, extract or expand, and each
arch's stage) would run again. The `pin:<spec>` task (``tasks.task_pin``) needs no such check:
it depends on the spec's build.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from doit import loader as doit_loader
from doit.dependency import Dependency, JsonDB

from .. import buildlock
from ..errors import BuildStateError
from ..spec.model import Context, Spec
from ..spec.types import Stage
from ..stage.pinfile import Pins
from .checker import ContentChecker
from .tasks import DOIT_CONFIG, GENERATORS, Plan

# What makes the bytes a pin records: nothing after staging changes them.
_PINNED_BY = (Stage.FETCH, Stage.PROVE, Stage.EXTRACT, Stage.EXPAND, Stage.STAGE)

def _with_pins(spec: Spec, sha256: str | None, expect: dict[str, str]) -> Spec:
    return dataclasses.replace(spec, source=dataclasses.replace(spec.source, sha256=sha256, expect=expect))


def _variants(spec: Spec, pins: Pins) -> list[Spec]:
    """The spec with each set of pins its build may have been made with: as written, none, or the build's own.

    The pins are part of what staging reads (it checks them), so writing them makes the
    build look out of date to doit; the bytes they pin are the same whichever set it was.
    """
    built_sha = pins.sha256 if pins.sha256 is not None else spec.source.sha256
    return [spec, _with_pins(spec, None, {}), _with_pins(spec, built_sha, dict(pins.expect))]


def stale_tasks(ctx: Context, spec: Spec, pins: Pins, epoch: int) -> list[str]:
    """The tasks behind ``spec``'s staged files that doit would run again (empty: the build is current).

    Read under the checkout's build lock, as a run reads the dep file; nothing is written.
    """
    dep_file = ctx.root / DOIT_CONFIG["dep_file"]
    if not dep_file.is_file():
        return [f"every task (no {DOIT_CONFIG['dep_file']})"]
    buildlock.acquire(ctx.build_dir)
    try:
        # doit's state names files relative to the project, as in a run (which goes there first).
        with contextlib.chdir(ctx.root):
            dep = Dependency(JsonDB, str(dep_file), checker_cls=ContentChecker)
            stale = [_stale_in(dep, Plan(ctx, (variant,), epoch)) for variant in _variants(spec, pins)]
        return min(stale, key=len)
    finally:
        buildlock.release(ctx.build_dir)


def _stale_in(dep: Dependency, plan: Plan) -> list[str]:
    tasks: dict[str, Any] = {}
    for stage in _PINNED_BY:
        for t in doit_loader.generate_tasks(stage.value, GENERATORS[stage](plan), ""):
            tasks[t.name] = t
    stale = []
    for t in tasks.values():
        if t.subtask_of is None and t.name in {s.value for s in _PINNED_BY}:
            continue  # a group: it runs nothing itself
        t.init_options()
        if dep.get_status(t, tasks).status != "up-to-date":
            stale.append(t.name)
    return sorted(stale)


def check_current(ctx: Context, spec: Spec, pins: Pins, epoch: int) -> None:
    """Refuse to pin from a build older than the spec or its inputs."""
    stale = stale_tasks(ctx, spec, pins, epoch)
    if stale:
        raise BuildStateError(f"{spec.display}: the build is older than the spec or its inputs "
                              f"({', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''} would run again)",
                              f"run doit build:{spec.name}, check its media, then pin")
