"""One orchestration: the doit entry sees the task names it is handed, the ad-hoc commands run the same task
graph, the generators write nothing, and nothing in the package reads the process's command line."""

from __future__ import annotations

import ast
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


@pytest.mark.parametrize(("task_args", "builds"), [
    (["build:sample"], {"sample"}),
    (["stage:sample:x86", "verify:sample"], {"sample"}),
])
def test_named_specs_build_beside_a_broken_one(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               task_args: list[str], builds: set[str]) -> None:
    project = make_project(tmp_path)
    write_spec(project, "broken", BROKEN)
    specs = select_specs(load_each(Context(root=project)), task_args)
    assert {s.name for s in specs} == builds
    assert "spec 'broken' is left out until it is fixed" in capsys.readouterr().err


@pytest.mark.parametrize("task_args", [[], ["build"], ["build:broken"], ["stage"], ["build:sample", "build:broken"]])
def test_a_run_that_may_need_the_broken_spec_is_refused(tmp_path: Path, task_args: list[str]) -> None:
    project = make_project(tmp_path)
    write_spec(project, "broken", BROKEN)
    with pytest.raises(SpecError, match=r"specs/broken\.yaml:3:10"):
        select_specs(load_each(Context(root=project)), task_args)


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
    ran = set(re.findall(r"^\.  (\S+)", printed.out, re.M))
    # The drivers ISO and what it is made from, verified; no other medium.
    assert ran == {"stage:adhoc:x86", "stage:adhoc:amd64", "notices:adhoc", "drivers_iso:adhoc", "verify:adhoc"}
    assert f"Wrote {out}" in printed.out and "verified d.iso" in printed.err
    assert sorted(p.name for p in out.parent.iterdir()) == ["d.iso"]


def test_adhoc_build_fat_runs_the_task_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = expanded_sample(tmp_path / "pack")
    out = tmp_path / "disk.vhd"
    assert main(["build-fat", "--drivers-root", str(sample), "--output", str(out),
                 "--allow-placeholder-catalogs"]) == 0
    ran = set(re.findall(r"^\.  (\S+)", capsys.readouterr().out, re.M))
    assert ran == {"stage:adhoc:x86", "stage:adhoc:amd64", "notices:adhoc", "fat_disk:adhoc",
                   "verify_fat_disk:adhoc"}


def test_adhoc_extract_runs_the_task_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.lib.upstream import make_iso, make_upstream_tree

    make_upstream_tree(tmp_path / "src")
    iso = make_iso(tmp_path / "src", tmp_path / "virtio-win.iso", style="rr")
    assert main(["extract", "--virtio-win-iso", str(iso), "--out-root", str(tmp_path / "pack")]) == 0
    ran = set(re.findall(r"^\.  (\S+)", capsys.readouterr().out, re.M))
    assert ran == {"fetch:extract", "extract:extract"}
    # Only the tree asked for is left: the scratch project beside it is gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack", "src", "virtio-win.iso"]
