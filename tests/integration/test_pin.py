"""`aero-media pin` and `doit pin:<spec>`: a build's pins written into its spec file, comments and all."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from aero_media.cli import main
from aero_media.manifests import StageManifest
from aero_media.spec.load import load_spec
from aero_media.spec.model import Context
from aero_media.spec.types import Arch
from tests.lib.doitproc import child_env, doit_argv, run
from tests.lib.project import REPO, make_project, run_doit
from tests.lib.upstream import make_iso, make_upstream_tree

pytestmark = pytest.mark.integration

SPEC = """\
# yaml-language-server: $schema=schema.json
# The user's own notes: kept as written.
schema_version: 1
description: pins test   # a trailing comment
source:
  kind: {kind}
  # a local copy
  path: "{path}"
drivers:
  - {{name: viostor,  device: virtio-blk,   required: true}}
  - {{name: netkvm,   device: virtio-net,   required: false}}
checks:
  placeholder_catalogs: allow   # the synthetic tree's catalogs are placeholders
"""


def _project(tmp_path: Path, kind: str = "virtio-win-iso") -> tuple[Path, Path]:
    project = make_project(tmp_path / "proj", with_sample=False)
    tree = tmp_path / "virtio-win"
    make_upstream_tree(tree)
    path = make_iso(tree, tmp_path / "virtio-win.iso") if kind == "virtio-win-iso" else tree
    spec = project / "specs" / "t.yaml"
    spec.write_text(SPEC.format(kind=kind, path=path))
    return project, spec


def _pin(project: Path, *args: str) -> int:
    return main(["--root", str(project), "pin", "t", *args])


def _built(project: Path) -> dict[str, str]:
    out = {}
    for arch in Arch:
        out.update((f.path, f.sha256) for f in StageManifest.read(project / f"build/t/stage/{arch.value}.json").files)
    return out


def test_pin_shows_the_diff_then_writes_and_the_next_build_checks_the_pins(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project, spec = _project(tmp_path)
    assert _pin(project) == 2  # nothing built yet
    assert "no build to pin from" in capsys.readouterr().err
    assert run_doit(project, "build:t") == 0
    os.chmod(spec, 0o640)
    before = spec.read_bytes()
    capsys.readouterr()
    assert _pin(project) == 0
    shown = capsys.readouterr().out
    assert "--- a/specs/t.yaml\n+++ b/specs/t.yaml\n" in shown and "+  expect:\n" in shown and "+  sha256: " in shown
    assert spec.read_bytes() == before  # shown, not written
    assert _pin(project, "--yes") == 0
    after = spec.read_text()
    assert stat.S_IMODE(spec.stat().st_mode) == 0o640
    # Every line of the user's file is still there, in order and byte for byte; only pins were added.
    old = before.decode().splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    it = iter(new)
    assert all(line in it for line in old)
    added = [line for line in new if line not in old]
    assert added[:2] == [f"  sha256: {hashlib.sha256((tmp_path / 'virtio-win.iso').read_bytes()).hexdigest()}\n",
                         "  expect:\n"]
    assert all(line.startswith("    win7/") for line in added[2:])
    loaded = load_spec(spec, Context(root=project))
    assert loaded.source.expect == _built(project) and len(loaded.source.expect) == len(added) - 2
    # The next build checks the pins (staging reruns) and passes; pinning again changes nothing.
    assert run_doit(project, "build:t") == 0
    assert "stage:t:x86" in capsys.readouterr().err  # doit's task lines go to stderr
    written = spec.read_bytes()
    assert _pin(project, "--yes") == 0
    assert spec.read_bytes() == written and capsys.readouterr().out == ""


def test_pins_that_differ_are_one_line_each_and_replaced_only_when_asked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project, spec = _project(tmp_path, "virtio-win-dir")
    assert run_doit(project, "build:t") == 0
    assert _pin(project, "--yes") == 0
    pinned = spec.read_text()
    built = _built(project)
    wrong = sorted(built)[:2]
    edited = pinned
    for path in wrong:
        edited = edited.replace(f"{path}: {built[path]}", f"{path}: {'0' * 63}f")
    spec.write_text(edited)
    capsys.readouterr()
    assert _pin(project, "--yes") != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    per_file = [line for line in errors if "source.expect" in line]
    assert len(per_file) == 2
    for line, path in zip(per_file, wrong, strict=True):
        assert path in line and "0" * 63 + "f" in line and built[path] in line
    assert spec.read_text() == edited
    assert _pin(project, "--yes", "--replace") == 0
    assert spec.read_text() == pinned


def test_a_stale_build_or_a_source_without_pins_is_refused(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    project, spec = _project(tmp_path, "virtio-win-dir")
    assert run_doit(project, "build:t") == 0
    inf = next((tmp_path / "virtio-win" / "viostor").rglob("*.inf"))
    for candidate in (tmp_path / "virtio-win" / "viostor").rglob("*.inf"):
        if "w7" in candidate.parts and "x86" in candidate.parts:
            inf = candidate
    inf.write_bytes(inf.read_bytes() + b"; changed\r\n")
    before = spec.read_bytes()
    capsys.readouterr()
    assert _pin(project, "--yes") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "older than the spec or its inputs" in err[0] and "stage:t:x86" in err[0]
    assert spec.read_bytes() == before
    sample = make_project(tmp_path / "sample")
    assert run_doit(sample, "build:sample") == 0
    capsys.readouterr()
    assert main(["--root", str(sample), "pin", "sample"]) == 2
    assert "takes no pins" in capsys.readouterr().err


def test_the_doit_task_does_the_same(tmp_path: Path) -> None:
    project, spec = _project(tmp_path)
    before = spec.read_bytes()
    env = child_env(PYTHONPATH=str(REPO))
    proc = run(doit_argv(project, "pin:t"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "+  expect:" in proc.stdout and spec.read_bytes() == before
    assert (project / "dist/t/aero-virtio-win7-drivers.iso").is_file()  # pinned from a whole, verified build
    proc = run(doit_argv(project, "pin:t", "--yes"), env=env)
    assert proc.returncode == 0, proc.stderr
    loaded = load_spec(spec, Context(root=project))
    assert loaded.source.expect == _built(project) and loaded.source.sha256 is not None
    assert spec.read_text().startswith(before.decode().split("drivers:")[0].rstrip("\n"))
    proc = run(doit_argv(project, "pin:t", "--yes"), env=env)  # the build reruns staging, then nothing to write
    assert proc.returncode == 0 and "+  " not in proc.stdout, proc.stderr
