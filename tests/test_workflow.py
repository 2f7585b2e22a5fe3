"""The CI workflow does what its comments and docs/user-guide.md ("CI") say; read from its YAML, no network."""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aero_media.cli import main
from aero_media.systools import DEBIAN_PACKAGES
from tests.lib.project import REPO, make_project, run_doit, write_spec

WORKFLOW = REPO / ".github" / "workflows" / "media.yml"
CI_RUN = REPO / ".ci" / "run"
CONSTRAINTS = ".ci/constraints.txt"


@pytest.fixture(scope="module")
def wf() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def triggers(wf: dict[Any, Any]) -> dict[str, Any]:
    return wf["on"] if "on" in wf else wf[True]  # YAML 1.1 reads a bare `on` as true


def steps(wf: dict[Any, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(job id, job, step) for every step."""
    for name, job in wf["jobs"].items():
        for step in job["steps"]:
            yield name, job, step


def commands(script: str) -> list[list[str]]:
    """The shell commands of a `run:` script or of .ci/run: continuations joined, comments dropped, split on
    ``&&``, ``;`` and ``|`` outside quotes; leading ``VAR=value`` assignments dropped."""
    out: list[list[str]] = []
    for line in re.sub(r"\\\n", " ", script).splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token in ("&&", ";", "|", "||"):
                while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                    words.pop(0)
                if words:
                    out.append(words)
                words = []
            else:
                words.append(token)
    return out


def apt_packages(cmds: list[list[str]]) -> set[str]:
    found: set[str] = set()
    for words in cmds:
        words = [w for w in words if w != "sudo"]
        if words[:2] == ["apt-get", "install"]:
            found |= {w for w in words[2:] if not w.startswith("-") and not w.startswith(">") and w != "/dev/null"}
    return found


def ci_run_commands() -> list[list[str]]:
    return commands(CI_RUN.read_text(encoding="utf-8"))


def job_env(wf: dict[Any, Any], job: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    return {**wf.get("env", {}), **job.get("env", {}), **step.get("env", {})}


def test_one_run_per_change_push_on_main_pull_requests_for_the_rest(wf: dict[Any, Any]) -> None:
    on = triggers(wf)
    assert on["push"] == {"branches": ["main"]}
    assert "pull_request" in on and not (on["pull_request"] or {}).get("branches")


def test_the_token_is_read_only(wf: dict[Any, Any]) -> None:
    assert wf["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in wf["jobs"].values())


def test_a_newer_run_cancels_the_one_it_supersedes(wf: dict[Any, Any]) -> None:
    group = wf["concurrency"]["group"]
    assert "github.ref" in group and "github.workflow" in group
    assert wf["concurrency"]["cancel-in-progress"] is True


def test_every_install_uses_the_lock_as_ci_run_does(wf: dict[Any, Any]) -> None:
    ci_installs = [w for w in ci_run_commands() if w[0].endswith("pip") and "install" in w]
    assert ci_installs
    want_target = ci_installs[0][-1]  # -e '.[test,certs,lint]'
    installs = 0
    for _name, job, step in steps(wf):
        for words in commands(step.get("run", "")):
            if words[:4] == ["python", "-m", "pip", "install"]:
                installs += 1
                assert words[-1] == want_target
                env = job_env(wf, job, step)
                for var in ("PIP_CONSTRAINT", "PIP_BUILD_CONSTRAINT"):
                    assert env[var].endswith("/" + CONSTRAINTS), var
    assert installs == len(wf["jobs"])
    assert re.search(r"PIP_CONSTRAINT=\"\$PWD/\.ci/constraints\.txt\"", CI_RUN.read_text())


def test_pip_downloads_are_cached_on_the_lock(wf: dict[Any, Any]) -> None:
    setups = [s for _n, _j, s in steps(wf) if s.get("uses", "").startswith("actions/setup-python@")]
    assert len(setups) == len(wf["jobs"])
    for s in setups:
        assert s["with"]["cache"] == "pip"
        assert s["with"]["cache-dependency-path"] == CONSTRAINTS


def test_ruff_and_mypy_run_as_in_ci_run(wf: dict[Any, Any]) -> None:
    linters = [[w.removeprefix(".venv/bin/") for w in c] for c in ci_run_commands()
               if c[0].endswith(("/ruff", "/mypy"))]
    assert [c[0] for c in linters] == ["ruff", "mypy"]
    ran = [c for _n, _j, s in steps(wf) for c in commands(s.get("run", ""))]
    for linter in linters:
        assert linter in ran


def test_python_matrix_is_the_oldest_supported_and_the_newest_release(wf: dict[Any, Any]) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    floor = project["requires-python"].removeprefix(">=")
    listed = sorted((c.rsplit(" :: ", 1)[1] for c in project["classifiers"]
                     if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)),
                    key=lambda v: tuple(map(int, v.split("."))))
    matrix = wf["jobs"]["media"]["strategy"]["matrix"]["python"]
    assert matrix == [floor, listed[-1]] and listed[0] == floor
    media_setup = next(s for n, _j, s in steps(wf) if n == "media" and s.get("uses", "").startswith(
        "actions/setup-python@"))
    assert media_setup["with"]["python-version"] == "${{ matrix.python }}"


def test_the_apt_packages_are_those_of_ci_run(wf: dict[Any, Any]) -> None:
    ours = apt_packages([c for _n, _j, s in steps(wf) for c in commands(s.get("run", ""))])
    # python3-venv: .ci/run makes its own venv, actions/setup-python brings the interpreter here.
    assert ours == apt_packages(ci_run_commands()) - {"python3-venv"}
    assert set(DEBIAN_PACKAGES.values()) <= ours


def test_every_installed_tool_is_required_by_the_tests(wf: dict[Any, Any]) -> None:
    tests = next(s for _n, _j, s in steps(wf) if s.get("name") == "Tests")
    assert set(tests["env"]["AERO_MEDIA_TEST_REQUIRE"].split(",")) == set(DEBIAN_PACKAGES) | {"regipy"}


def _step(wf: dict[Any, Any], name: str) -> dict[str, Any]:
    return next(s for _n, _j, s in steps(wf) if s.get("name") == name)


def test_the_download_cache_is_keyed_on_what_decides_the_download(wf: dict[Any, Any]) -> None:
    pins = _step(wf, "What decides the downloads")
    assert ["aero-media", "downloads"] in commands(pins["run"])
    cache = _step(wf, "Restore the download cache")
    assert cache["with"]["key"] == f"downloads-${{{{ steps.{pins['id']}.outputs.key }}}}"
    assert "restore-keys" not in cache["with"]  # an old entry's ISOs would be saved again beside the new one
    assert cache["with"]["path"] == ".cache/aero-virtio-media"
    media = wf["jobs"]["media"]
    assert media["env"]["AERO_MEDIA_CACHE"].endswith("/" + cache["with"]["path"])


def test_build_state_and_media_are_cached_per_python(wf: dict[Any, Any]) -> None:
    cache = _step(wf, "Restore build state (build/, dist/ and the doit dep file)")
    assert cache["with"]["path"].split() == ["build", "dist"]
    assert "matrix.python" in cache["with"]["key"] and "matrix.python" in cache["with"]["restore-keys"]


def test_every_spec_is_built_by_the_build_group_not_by_listing_names(wf: dict[Any, Any]) -> None:
    assert commands(_step(wf, "Build every spec")["run"]) == [["doit", "--continue", "build"]]
    assert commands(_step(wf, "Build the default media")["run"]) == [["doit"]]


SPEC_TEMPLATE = """\
schema_version: 1
description: {description}
source:
  kind: virtio-win-iso
  url: https://example.invalid/virtio-win-{version}.iso
{pin}drivers:
  - {{name: viostor, device: virtio-blk, required: true}}
"""


def _downloads(project: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["--root", str(project), "downloads"]) == 0
    return capsys.readouterr().out


def test_downloads_names_only_what_decides_a_download(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "proj")
    pin = "  sha256: " + "ab" * 32 + "\n"
    write_spec(project, "iso", SPEC_TEMPLATE.format(description="one", version="1", pin=pin))
    first = _downloads(project, capsys)
    assert first == f"sha256/{'ab' * 32}/virtio-win-1.iso  https://example.invalid/virtio-win-1.iso\n"
    # Anything else in the spec leaves the key alone; a second spec on the same ISO adds no line.
    write_spec(project, "iso", SPEC_TEMPLATE.format(description="two", version="1", pin=pin)
               + "# a note\n")
    write_spec(project, "iso2", SPEC_TEMPLATE.format(description="same ISO", version="1", pin=pin))
    assert _downloads(project, capsys) == first
    # A new pin or URL is a new download.
    expect = "  expect: {win7/x86/viostor/viostor.inf: " + "cd" * 32 + "}\n"
    write_spec(project, "iso2", SPEC_TEMPLATE.format(description="other", version="2", pin=expect))
    lines = _downloads(project, capsys).splitlines()
    assert len(lines) == 2 and lines[0] == first.strip() and lines[1].startswith("url/")
    write_spec(project, "broken", "schema_version: [\n")
    assert _downloads(project, capsys).splitlines() == lines  # a broken spec: a warning on stderr, exit 0


@pytest.mark.integration
def test_the_build_every_spec_step_survives_a_broken_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "proj")
    write_spec(project, "broken", "schema_version: [\n")
    # The healthy specs are built, then the run fails naming the broken one.
    assert run_doit(project, "--continue", "build") == 1
    assert (project / "dist" / "sample" / "aero-virtio-win7-drivers.iso").is_file()
    assert "specs/broken.yaml" in capsys.readouterr().err
