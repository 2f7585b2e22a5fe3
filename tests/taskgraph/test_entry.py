"""One orchestration: the doit entry sees the task names it is handed, the ad-hoc commands run the same task
graph, the generators write nothing, and nothing in the package reads the process's command line."""

from __future__ import annotations

import ast
import hashlib
import os
import re
from pathlib import Path

import pytest

from aero_media.cli import main
from aero_media.errors import SpecError, UsageError
from aero_media.spec.load import load_each
from aero_media.spec.model import Context
from aero_media.taskgraph.fingerprint import PACKAGE_ROOT
from aero_media.taskgraph.main import make_plan, select_specs
from aero_media.taskgraph.tasks import GROUP_GENERATORS
from tests.lib.project import expanded_sample, make_project, write_spec

BROKEN = "schema_version: 1\nsource: {kind: pack-dir}\ndrivers: []\n"


def test_no_module_reads_the_command_line() -> None:
    """Arguments reach the loader from doit (or argparse, from main's argv), never from sys.argv."""
    readers = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "argv" and \
                    isinstance(node.value, ast.Name) and node.value.id == "sys":
                readers.append(f"{path.relative_to(PACKAGE_ROOT)}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module == "sys" and any(a.name == "argv" for a in node.names):
                readers.append(f"{path.relative_to(PACKAGE_ROOT)}:{node.lineno}")
    assert readers == []


@pytest.mark.parametrize("task_args", [["build:sample"], ["stage:sample:x86", "verify:sample"], [], ["build"],
                                       ["stage"], ["default"]])
def test_healthy_specs_load_beside_a_broken_one(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                task_args: list[str]) -> None:
    project = make_project(tmp_path)
    write_spec(project, "broken", BROKEN)
    specs, broken = select_specs(load_each(Context(root=project)), task_args, project)
    assert {s.name for s in specs} == {"sample"}
    assert [(b.file, b.name, b.more) for b in broken] == [("specs/broken.yaml", "broken", 1)]
    assert broken[0].reason.startswith("specs/broken.yaml:3:10: ") and "; fix: " in broken[0].reason
    warnings = [line for line in capsys.readouterr().err.splitlines() if "broken" in line]
    assert warnings == [f"warning: {broken[0].line()}"]


@pytest.mark.parametrize("task_args", [["build:broken"], ["build:sample", "build:broken"], ["stage:broken:x86"]])
def test_a_run_that_names_the_broken_spec_is_refused(tmp_path: Path, task_args: list[str]) -> None:
    project = make_project(tmp_path)
    write_spec(project, "broken", BROKEN)
    with pytest.raises(SpecError, match=r"specs/broken\.yaml:3:10"):
        select_specs(load_each(Context(root=project)), task_args)


def test_whole_runs_fail_at_their_end_when_a_spec_is_broken(tmp_path: Path) -> None:
    """The goal tasks of a whole run (`default`, the `build` group) carry the failing action; no broken spec, none."""
    project = make_project(tmp_path)
    ctx = Context(root=project, remember_valid_specs=True)
    healthy = make_plan(ctx, [])
    assert GROUP_GENERATORS["default"](healthy)["actions"] is None
    assert all(t["name"] is not None for t in GROUP_GENERATORS["build"](healthy))
    write_spec(project, "broken", BROKEN)
    plan = make_plan(ctx, [])
    default = GROUP_GENERATORS["default"](plan)
    assert default["task_dep"] == ["build:sample"]
    (action,) = default["actions"]
    failed = action()
    assert "specs/broken.yaml" in str(failed.message) and str(failed.message).startswith("error: ")
    group = next(t for t in GROUP_GENERATORS["build"](plan) if t["name"] is None)
    assert len(group["actions"]) == 1


def test_an_unknown_spec_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    with pytest.raises(UsageError, match="no spec named 'nosuch'") as err:
        select_specs(load_each(Context(root=project)), ["build:nosuch"])
    assert "sample" in err.value.render()


def _tree(*roots: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                st = os.stat(os.path.join(dirpath, name))
                out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


def test_task_generators_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_MEDIA_CACHE", str(tmp_path / "cache"))
    project = make_project(tmp_path / "proj")
    plan = make_plan(Context(root=project, remember_valid_specs=True), [])  # the loader prepares build/ and caches
    before = _tree(tmp_path)
    for generator in GROUP_GENERATORS.values():
        made = generator(plan)
        if not isinstance(made, dict):
            list(made)  # run the generator to its end
    assert _tree(tmp_path) == before


def test_adhoc_build_iso_runs_the_task_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = expanded_sample(tmp_path / "pack")
    out = tmp_path / "out" / "d.iso"
    assert main(["build-iso", "--drivers-root", str(sample), "--output", str(out),
                 "--allow-placeholder-catalogs"]) == 0
    printed = capsys.readouterr()
    # doit's task lines are progress, on stderr; stdout is the command's result alone.
    ran = set(re.findall(r"^\.  (\S+)", printed.err, re.M))
    # The drivers ISO and what it is made from, verified; no other medium.
    assert ran == {"stage:adhoc:x86", "stage:adhoc:amd64", "notices:adhoc", "drivers_iso:adhoc", "verify:adhoc"}
    assert printed.out.splitlines() == [f"Wrote {out} ({out.stat().st_size} bytes, sha256="
                                        f"{hashlib.sha256(out.read_bytes()).hexdigest()})"]
    assert "verified d.iso" in printed.err
    assert sorted(p.name for p in out.parent.iterdir()) == ["d.iso"]


def test_adhoc_build_fat_runs_the_task_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = expanded_sample(tmp_path / "pack")
    out = tmp_path / "disk.vhd"
    assert main(["build-fat", "--drivers-root", str(sample), "--output", str(out),
                 "--allow-placeholder-catalogs"]) == 0
    ran = set(re.findall(r"^\.  (\S+)", capsys.readouterr().err, re.M))
    assert ran == {"stage:adhoc:x86", "stage:adhoc:amd64", "notices:adhoc", "fat_disk:adhoc",
                   "verify_fat_disk:adhoc"}
    # Built beside --output and renamed into place: the disk keeps its holes.
    assert out.stat().st_blocks * 512 < out.stat().st_size // 2


def test_adhoc_extract_runs_the_task_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.lib.upstream import make_iso, make_upstream_tree

    make_upstream_tree(tmp_path / "src")
    iso = make_iso(tmp_path / "src", tmp_path / "virtio-win.iso", style="rr")
    assert main(["extract", "--virtio-win-iso", str(iso), "--out-root", str(tmp_path / "pack")]) == 0
    ran = set(re.findall(r"^\.  (\S+)", capsys.readouterr().err, re.M))
    assert ran == {"fetch:extract", "extract:extract"}
    # Only the tree asked for is left: the scratch project beside it is gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack", "src", "virtio-win.iso"]


def test_adhoc_work_folders_of_dead_runs_are_swept_and_only_ours(tmp_path: Path) -> None:
    """A killed command's scratch project is removed by the next one; a user's folder of a like name never is."""
    from aero_media.cli import WORK_MARKER

    sample = expanded_sample(tmp_path / "pack")
    out = tmp_path / "out"
    dead = 2**22 + 12345  # above the kernel's pid_max: no such process
    ours = out / f".aero-build-{dead}-x1"
    users = out / f".aero-build-{dead}-notes"
    for folder in (ours, users):
        folder.mkdir(parents=True)
        (folder / "keep.txt").write_text("data")
    (ours / WORK_MARKER).write_bytes(b"")
    assert main(["build-iso", "--drivers-root", str(sample), "--output", str(out / "d.iso"),
                 "--allow-placeholder-catalogs"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [users.name, "d.iso"]
    assert (users / "keep.txt").read_text() == "data"


def test_adhoc_stage_error_is_printed_whole_with_its_exit_code(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Every problem on its own line (not one squashed line), the stage's exit code, nothing published."""
    sample = expanded_sample(tmp_path / "pack")
    out = tmp_path / "out" / "d.iso"
    rc = main(["build-iso", "--drivers-root", str(sample), "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "--allow-placeholder-catalogs" in err
    assert all(len(line) < 400 for line in err.splitlines())


def test_build_keeps_ctrl_c_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """doit's 130 (Ctrl-C) reaches the shell from `aero-media build` as it does from `doit`."""
    from aero_media.taskgraph import main as taskmain

    project = make_project(tmp_path)
    monkeypatch.setattr(taskmain.AeroDoitMain, "run", lambda self, args: 130)
    assert main(["--root", str(project), "build", "sample"]) == 130
