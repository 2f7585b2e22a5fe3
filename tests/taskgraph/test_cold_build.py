"""What a cold build does while the ISO's background hash runs (behaviour, never timings)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from aero_media.spec.model import Context
from aero_media.spec.types import Stage
from aero_media.taskgraph import tasks
from aero_media.taskgraph.main import make_plan
from tests.lib.project import make_project, write_spec


def _iso_project(root: Path, **outputs: Any) -> Path:
    project = make_project(root, with_sample=False)
    (project / "virtio-win.iso").write_bytes(b"not read by these tests")
    write_spec(project, "vw", {
        "schema_version": 1, "name": "vw", "default": True,
        "drivers": [{"name": "viostor", "device": "virtio-blk", "required": True}],
        "source": {"kind": "virtio-win-iso", "path": "virtio-win.iso"},
        **({"outputs": outputs} if outputs else {})})
    return project


def test_prove_imports_the_media_modules_before_it_waits_for_the_hash(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_MEDIA_CACHE", str(tmp_path / "cache"))
    plan = make_plan(Context(root=_iso_project(tmp_path / "proj")), [])
    task = next(tasks.task_prove(plan))
    events: list[str] = []
    real_import = importlib.import_module

    def recording_import(name: str, package: str | None = None) -> Any:
        events.append(name)
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", recording_import)
    monkeypatch.setattr(tasks, "stage_function", lambda stage: lambda *_a: events.append(f"run {stage}"))
    for action in task["actions"]:
        action()
    assert events[-1] == f"run {Stage.PROVE}"
    assert {"aero_media.media.notices", "aero_media.media.drivers_iso", "aero_media.media.fat_disk",
            "aero_media.media.guest_tools"} <= set(events[:-1])


def test_the_modules_imported_ahead_are_those_of_the_tasks_that_wait_for_the_proof(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch
                                                                                   ) -> None:
    monkeypatch.setenv("AERO_MEDIA_CACHE", str(tmp_path / "cache"))
    plan = make_plan(Context(root=_iso_project(tmp_path / "proj", fat_disk={"enabled": False})), [])
    run = plan.runs[0]
    proof = str(run.paths.proof_record.relative_to(plan.ctx.root))
    waiting = {name for name, generator in tasks.GROUP_GENERATORS.items() if not isinstance(made := generator(plan),
               dict) for t in made if proof in t.get("file_dep", ())}
    ahead = tasks.waiting_on_proof(run)
    assert waiting and waiting <= {str(s) for s in ahead}
    assert Stage.FAT_DISK not in ahead and Stage.VERIFY_FAT_DISK not in ahead


@pytest.mark.integration
def test_the_media_isos_are_hashed_as_written_never_read_again(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from aero_media import hashmemo
    from aero_media.fsutil import sha256_file
    from aero_media.paths import Run
    from aero_media.spec.load import load_spec
    from tests.lib.project import run_doit

    monkeypatch.setenv("AERO_MEDIA_CACHE", str(tmp_path / "cache"))
    project = make_project(tmp_path / "proj")
    hashed: list[Path] = []
    real = hashmemo.sha256_file

    def recording(path: Path, progress: Any = None) -> tuple[str, int]:
        hashed.append(Path(path).resolve())
        return real(path, progress)

    monkeypatch.setattr(hashmemo, "sha256_file", recording)
    assert run_doit(project) == 0
    ctx = Context(root=project)
    run = Run(load_spec(project / "specs/sample.yaml", ctx), ctx, 0)
    for iso in (run.paths.drivers_iso, run.paths.guest_tools_iso):
        assert iso.resolve() not in hashed
        # The writer's digest is the file's.
        assert run.memo.lookup(iso, iso.stat()) == sha256_file(iso)[0]
