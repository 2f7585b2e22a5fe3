"""The end of a build: the summary on stdout, build/<spec>/report.json and `--json` against their schema, the
stdout/stderr rule, the same order under `-n 2`, and a reader that goes away (closed stdout or stderr)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.lib.doitproc import child_env, doit_argv, hidden_leftovers
from tests.lib.project import REPO, make_project, run_doit

pytestmark = pytest.mark.integration

SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text(encoding="utf-8"))
TABLE_HEADER = "severity  package"
"""The validation table's header row: a diagnostic, on stderr."""


def spec_schema() -> dict[str, Any]:
    """The schema of one spec's record (build/<spec>/report.json): the combined schema's $defs/spec."""
    return {**SCHEMA, "$ref": "#/$defs/spec", "required": [], "properties": {}, "additionalProperties": True}


def validate_combined(report: Any) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(report)


def validate_spec(report: Any) -> None:
    jsonschema.Draft202012Validator(spec_schema()).validate(report)


def guide_jq_line() -> str:
    """The jq line the user guide shows for failing a CI job on warnings."""
    guide = (REPO / "docs" / "user-guide.md").read_text(encoding="utf-8")
    lines = [line.strip() for line in guide.splitlines() if line.strip().startswith("aero-media build --json | jq")]
    assert len(lines) == 1, lines
    return lines[0]


def test_summary_on_stdout_and_report_json_from_the_records(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "proj")
    assert run_doit(project) == 0
    first = capsys.readouterr()
    # Results on stdout, everything else (task lines, the validation table, warnings) on stderr.
    assert first.out.startswith("== sample: OK, 12 warning(s), 0 error(s)\n"), first.out
    assert TABLE_HEADER in first.err and TABLE_HEADER not in first.out
    assert ".  verify:sample" in first.err and ".  " not in first.out and "warning:" not in first.out
    lines = first.out.splitlines()
    media = [line.split(":")[0].strip() for line in lines if line.startswith("  ") and not line.startswith("    ")]
    assert media[:4] == ["drivers ISO", "FAT driver disk", "Guest Tools ISO", "Guest Tools zip"]
    assert "  drivers ISO: dist/sample/aero-virtio-win7-drivers.iso (180.0 KiB, 39 files)" in lines
    assert any(line.startswith("    verified: ok: ") and "fsck.fat -n: " in line for line in lines)
    assert ("  x86: 3 packages: 0 OK, 3 with warnings, 0 with errors; pins: no pins; "
            "catalogs: placeholder (no signer, 3 packages)") in lines
    assert "  skipped driver viosnd: not found in source" in lines

    record = project / "build" / "sample" / "report.json"
    report = json.loads(record.read_text(encoding="utf-8"))
    validate_spec(report)
    assert report["warnings"] == 12 and report["ok"] and [a["arch"] for a in report["arches"]] == ["x86", "amd64"]
    iso = project / "dist/sample/aero-virtio-win7-drivers.iso"
    assert report["media"][0]["sha256"] == json.loads(
        (project / "dist/sample/aero-virtio-win7-drivers.iso.verify.json").read_text())["sha256"]
    assert report["media"][0]["size"] == iso.stat().st_size
    assert str(tmp_path) not in record.read_text() and os.sep + "tmp" not in record.read_text()

    # Up to date: nothing runs, and the summary and the record are the same, byte for byte.
    before = record.read_bytes()
    assert run_doit(project) == 0
    again = capsys.readouterr()
    assert ".  " not in again.err
    assert again.out == first.out
    assert record.read_bytes() == before


def _doit(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(doit_argv(project, *args), capture_output=True, text=True, timeout=300, env=child_env(),
                          cwd=REPO)


def _second_spec(project: Path) -> None:
    """A second default spec, so the summary has two blocks whose tasks interleave under -n 2."""
    import yaml

    data = yaml.safe_load((project / "specs" / "sample.yaml").read_text())
    data["name"] = "another"
    data["target"]["arches"] = ["amd64"]
    (project / "specs" / "another.yaml").write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("parallel", [("-n", "2"), ("-n", "2", "-P", "thread")], ids=["processes", "threads"])
def test_the_summary_is_the_same_in_the_same_order_under_n_2(tmp_path: Path, parallel: tuple[str, ...]) -> None:
    serial, both = make_project(tmp_path / "serial"), make_project(tmp_path / "parallel")
    for project in (serial, both):
        _second_spec(project)
    # doit > out 2> err, literally: files, not pipes.
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.run(doit_argv(serial), stdout=out, stderr=err, text=True, timeout=300, env=child_env(),
                              cwd=REPO)
    assert proc.returncode == 0, (tmp_path / "err").read_text()
    out_text, err_text = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert [line for line in out_text.splitlines() if line.startswith("== ")] == [
        "== another: OK, 6 warning(s), 0 error(s)", "== sample: OK, 12 warning(s), 0 error(s)"]
    assert TABLE_HEADER in err_text and TABLE_HEADER not in out_text
    par = _doit(both, *parallel)
    assert par.returncode == 0, par.stderr
    assert par.stdout == out_text  # nothing normalised: the summary carries no timing
    for name in ("sample", "another"):
        assert ((serial / "build" / name / "report.json").read_bytes()
                == (both / "build" / name / "report.json").read_bytes())


def test_build_json_validates_and_the_guides_jq_line_fails_on_warnings(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    proc = subprocess.run([sys.executable, "-m", "aero_media", "--root", str(project), "build", "--json"],
                          capture_output=True, text=True, timeout=300, env=child_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # stdout is the JSON alone
    validate_combined(report)
    assert [s["spec"] for s in report["specs"]] == ["sample"] and report["broken_specs"] == []
    assert report["specs"][0] == json.loads((project / "build/sample/report.json").read_text())
    assert report["warnings"] == 12 and TABLE_HEADER in proc.stderr
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed: the CI line itself is not run")
    jq = guide_jq_line().split("|", 1)[1].strip()
    warned = subprocess.run(jq, shell=True, input=proc.stdout, capture_output=True, text=True, timeout=30)
    assert warned.returncode != 0
    clean = dict(report, warnings=0, specs=[dict(report["specs"][0], warnings=0)])
    passed = subprocess.run(jq, shell=True, input=json.dumps(clean), capture_output=True, text=True, timeout=30)
    assert passed.returncode == 0, passed.stderr


def _with_closed(stream: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with stdout or stderr a pipe whose reader has already gone (as `| head -1` ends up)."""
    r, w = os.pipe()
    os.close(r)
    try:
        if stream == "stdout":
            return subprocess.run(argv, stdout=w, stderr=subprocess.PIPE, text=True, timeout=300, env=child_env(),
                                  cwd=REPO)
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=w, text=True, timeout=300, env=child_env(),
                              cwd=REPO)
    finally:
        os.close(w)


@pytest.mark.parametrize(("command", "stream"), [("doit", "stdout"), ("doit -n 2", "stderr"),
                                                  ("aero-media build", "stdout")])
def test_a_reader_that_goes_away_ends_the_build_quietly(tmp_path: Path, command: str, stream: str) -> None:
    project = make_project(tmp_path / "proj")
    argv = (doit_argv(project, *command.split()[1:]) if command.startswith("doit")
            else [sys.executable, "-m", "aero_media", "--root", str(project), "build"])
    proc = _with_closed(stream, argv)
    said = (proc.stdout or "") + (proc.stderr or "")  # the closed stream's side captured nothing
    assert proc.returncode == 141, said
    assert "Traceback" not in said and "BrokenPipeError" not in said
    # Every output complete: verified, recorded, nothing half-written; the next run has nothing to do.
    assert json.loads((project / "build/sample/report.json").read_text())["ok"]
    assert hidden_leftovers(project) == []
    again = _doit(project)
    assert again.returncode == 0 and ".  " not in again.stderr, again.stderr
