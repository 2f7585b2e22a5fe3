"""Per-stage code fingerprints: a stage reruns exactly when the code it runs changes.

The end-to-end tests copy the package into a throwaway project, build the sample
there with `python -m doit` (the copy first on sys.path), edit one module of the
copy, and count which tasks run again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aero_media.taskgraph import fingerprint as fp
from tests.lib.project import REPO, make_project

STAGE_MODULES = {
    "fetch": "aero_media.sources.fetch",
    "extract": "aero_media.sources.extract",
    "expand": "aero_media.devtools.standins",
    "stage": "aero_media.stage.staging",
    "notices": "aero_media.media.notices",
    "drivers_iso": "aero_media.media.drivers_iso",
    "guest_tools": "aero_media.media.guest_tools",
}


def copy_package(dest: Path) -> Path:
    shutil.copytree(REPO / "aero_media", dest / "aero_media", ignore=shutil.ignore_patterns("__pycache__"))
    return dest / "aero_media"


def prints(root: Path) -> dict[str, str]:
    fp._index.cache_clear()
    fp._templates.cache_clear()
    return {stage: fp.code_fingerprint((mod,), root) for stage, mod in STAGE_MODULES.items()}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_closure_follows_imports_inside_the_package_only() -> None:
    mods = fp.closure(("aero_media.media.drivers_iso",))
    assert {"aero_media.media.isowriter", "aero_media.media.verify", "aero_media.manifests", "aero_media.errors",
            "aero_media", "aero_media.media"} <= set(mods)
    assert "aero_media.cli" not in mods and "aero_media.taskgraph.tasks" not in mods
    assert not any(m.startswith(("pycdlib", "doit")) for m in mods)
    # The stage's code, not the sources': staging a tree never runs the ISO writer.
    assert "aero_media.media.isowriter" not in fp.closure(("aero_media.stage.staging",))
    assert "aero_media.win7.inf" not in fp.closure(("aero_media.sources.fetch",))


def test_docstrings_comments_and_unrelated_modules_change_nothing(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    before = prints(root)
    edit(root / "cli.py", '"""Run the CLI; return the exit code."""', '"""Run the command line."""')
    edit(root / "cli.py", "ARCH_CHOICES = {", "ARCH_CHOICES_UNUSED = 1\nARCH_CHOICES = {")  # code, but no stage runs it
    edit(root / "win7" / "inf.py", "import re\n", "import re  # a comment\n")
    edit(root / "media" / "isowriter.py", '    """Map a name to the primary (ISO 9660 level 3) name space."""',
         '    """Map a name (a reworded docstring)."""')
    assert prints(root) == before


def test_writer_edit_changes_media_stages_only(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    before = prints(root)
    edit(root / "media" / "isowriter.py", "JOLIET_LABEL_MAX = 16", "JOLIET_LABEL_MAX = 16 + 0")
    after = prints(root)
    changed = {s for s in before if before[s] != after[s]}
    assert changed == {"drivers_iso", "guest_tools"}


def test_inf_parser_edit_changes_extract_stage_and_later(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    before = prints(root)
    edit(root / "win7" / "inf.py", "WIN7_BUILD = 7601", "WIN7_BUILD = 7601 + 0")
    after = prints(root)
    changed = {s for s in before if before[s] != after[s]}
    # extract reads DriverVer from the INFs it copies; fetch only proves the ISO's bytes; the drivers
    # ISO proves Setup's $WinPEDriver$ scan from the INFs. The Guest Tools run no INF code: they
    # rerun when the stage manifests they read change (see below).
    assert changed == {"extract", "stage", "drivers_iso"}


def test_template_edit_changes_only_the_stage_that_renders_it(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    before = prints(root)
    readme = root / "media" / "templates" / "drivers-README.txt"
    readme.write_text(readme.read_text() + "\n")
    after = prints(root)
    assert {s for s in before if before[s] != after[s]} == {"drivers_iso"}
    setup = root / "media" / "templates" / "setup.cmd"
    before = prints(root)
    setup.write_bytes(setup.read_bytes() + b"rem\r\n")
    after = prints(root)
    assert {s for s in before if before[s] != after[s]} == {"guest_tools"}


# --- end to end, through doit ------------------------------------------------------------------


def doit_in(project: Path, code: Path) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-m", "doit"], cwd=project, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return set(re.findall(r"^\.  (\S+)", proc.stderr, re.M))  # doit's task lines are progress, on stderr


@pytest.mark.integration
def test_doit_reruns_only_what_the_edited_code_runs(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    shutil.copyfile(REPO / "dodo.py", project / "dodo.py")
    code = tmp_path / "code"
    root = copy_package(code)
    assert len(doit_in(project, code)) == 11
    edit(root / "cli.py", "ARCH_CHOICES = {", "ARCH_CHOICES_UNUSED = 1\nARCH_CHOICES = {")
    edit(root / "spec" / "yamldoc.py", '"""Append one JSON-pointer segment."""', '"""Add a segment."""')
    assert doit_in(project, code) == set()
    edit(root / "media" / "isowriter.py", "JOLIET_LABEL_MAX = 16", "JOLIET_LABEL_MAX = 16 + 0")
    assert doit_in(project, code) == {"drivers_iso:sample", "guest_tools:sample", "verify:sample",
                                      "verify_guest_tools:sample"}
    # A parser edit that changes nothing it produces reruns the stages that run the parser (staging, and
    # the drivers ISO's $WinPEDriver$ scan), and what reads their unchanged manifests does not.
    edit(root / "win7" / "inf.py", "WIN7_BUILD = 7601", "WIN7_BUILD = 7601 + 0")
    assert doit_in(project, code) == {"stage:sample:x86", "stage:sample:amd64", "drivers_iso:sample",
                                      "verify:sample", "fat_disk:sample", "verify_fat_disk:sample"}
    # One that changes what it reports reruns staging and everything after it.
    edit(root / "win7" / "inf.py", '    return data.decode("cp1252", errors="replace"), "cp1252"',
         '    problems.append(InfProblem(Severity.INFO, "inf-test-note", None, "a note", "none"))\n'
         '    return data.decode("cp1252", errors="replace"), "cp1252"')
    assert doit_in(project, code) == {"stage:sample:x86", "stage:sample:amd64", "notices:sample",
                                      "drivers_iso:sample", "guest_tools:sample", "verify:sample",
                                      "verify_guest_tools:sample", "fat_disk:sample", "verify_fat_disk:sample",
                                      "publish:sample"}
