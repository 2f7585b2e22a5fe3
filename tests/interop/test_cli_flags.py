"""The command line speaks in flags, prints real paths, and refuses what it cannot do."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from aero_media.cli import main
from aero_media.errors import SpecError
from aero_media.spec.load import load_each
from aero_media.spec.model import Context
from tests.lib.doitproc import child_env, doit_argv, run
from tests.lib.project import REPO, expanded_sample, make_project, run_doit, write_spec
from tests.lib.trees import make_pack
from tests.lib.upstream import make_iso, make_upstream_tree

pytestmark = pytest.mark.integration

SPEC_WORDS = re.compile(r"checks\.|source\.path|required: false|signing_policy|optional: strict|spec field")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return expanded_sample(tmp_path_factory.mktemp("sample") / "pack")


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The error as printed: from its first line (``error: ...``) to the last (``...; fix: ...``)."""
    err = capsys.readouterr().err
    assert "error:" in err, err
    return err[err.index("error:"):].strip()


def test_build_iso_errors_name_flags(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build-iso", "--drivers-root", str(sample), "--output", str(tmp_path / "x.iso")]) == 1
    text = error_line(capsys) + capsys.readouterr().err
    assert "--allow-placeholder-catalogs" in text and not SPEC_WORDS.search(text), text

    missing = tmp_path / "no" / "such" / "pack"
    assert main(["build-iso", "--drivers-root", str(missing), "--output", str(tmp_path / "x.iso")]) == 2
    text = error_line(capsys)
    assert f"--drivers-root {missing}: not a directory" in text and not SPEC_WORDS.search(text), text

    half = make_pack(tmp_path / "half", {"viostor": ("amd64",), "netkvm": ("amd64",)})
    assert main(["build-iso", "--drivers-root", str(half), "--output", str(tmp_path / "x.iso"),
                 "--allow-placeholder-catalogs"]) == 2
    text = error_line(capsys)
    assert "--drivers-root" in text and "--require-arch" in text and not SPEC_WORDS.search(text), text
    assert not (tmp_path / "x.iso").exists()


@pytest.mark.parametrize(("command", "flags", "named"), [
    ("build-iso", ["--label", "aero virtio"], "aero-media build-iso: --label: 'aero virtio'"),
    ("build-fat", ["--label", "TOOLONGLABEL12"], "aero-media build-fat: --label: 'TOOLONGLABEL12'"),
    ("build-fat", ["--size-mib", "1"], "aero-media build-fat: --size-mib: 1"),
])
def test_schema_errors_under_a_command_name_its_flag(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     command: str, flags: list[str], named: str) -> None:
    out = tmp_path / "x.out"
    assert main([command, "--drivers-root", str(sample), "--output", str(out), "--allow-placeholder-catalogs",
                 *flags]) == 2
    text = error_line(capsys)
    assert text.startswith(f"error: {named}"), text
    assert ":1:1" not in text and "/outputs/" not in text, text
    assert not out.exists()


@pytest.mark.parametrize("command", ["build-iso", "build-fat"])
def test_the_output_never_lands_in_the_drivers_root(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    command: str) -> None:
    pack = expanded_sample(tmp_path / "pack")
    inf = pack / "win7/amd64/viostor/viostor.inf"
    before = inf.read_bytes()
    assert main([command, "--drivers-root", str(pack), "--output", str(inf), "--allow-placeholder-catalogs"]) == 2
    assert f"--output {inf}: lies inside --drivers-root {pack}" in error_line(capsys)
    assert inf.read_bytes() == before
    assert main([command, "--drivers-root", str(pack), "--output", str(pack / "new.out"),
                 "--allow-placeholder-catalogs"]) == 2
    assert f"lies inside --drivers-root {pack}" in error_line(capsys)
    assert not (pack / "new.out").exists()


def test_service_iso_names_windows_iso(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drivers_iso = tmp_path / "d.iso"
    assert main(["build-iso", "--drivers-root", str(sample), "--output", str(drivers_iso),
                 "--allow-placeholder-catalogs"]) == 0
    capsys.readouterr()
    assert main(["service-iso", "--windows-iso", str(drivers_iso), "--drivers-root", str(sample),
                 "--output", str(tmp_path / "w.iso"), "--allow-placeholder-catalogs"]) == 2
    text = error_line(capsys)
    assert "not a Windows 7 install DVD" in text and "fix: give --windows-iso a Windows 7 ISO" in text, text
    assert "install_media" not in text, text
    assert main(["service-iso", "--windows-iso", str(drivers_iso), "--drivers-root", str(sample), "--output",
                 str(tmp_path / "w.iso"), "--testsigning", "--cert", str(tmp_path)]) == 2
    assert f"--cert {tmp_path}: is a folder" in error_line(capsys)


def test_extract_errors_name_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    make_upstream_tree(src)
    for d in src.iterdir():
        if d.name.lower() == "netkvm":
            import shutil

            shutil.rmtree(d)
    iso = make_iso(src, tmp_path / "no-netkvm.iso")
    assert main(["extract", "--virtio-win-iso", str(iso), "--out-root", str(tmp_path / "o")]) == 2
    text = error_line(capsys)
    assert "driver 'netkvm'" in text and "leave the driver out of --drivers" in text, text
    assert not SPEC_WORDS.search(text), text
    assert main(["extract", "--virtio-win-iso", str(tmp_path / "nope.iso"), "--out-root", str(tmp_path / "o")]) == 2
    assert "--virtio-win-iso" in error_line(capsys)


def test_the_same_spec_errors_name_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Under doit, the same problem names the spec field to change."""
    project = make_project(tmp_path / "proj")
    spec = project / "specs" / "sample.yaml"
    spec.write_text(spec.read_text().replace("placeholder_catalogs: allow", "placeholder_catalogs: error"))
    assert run_doit(project) != 0
    out = capsys.readouterr()
    assert "checks.placeholder_catalogs: allow" in out.err + out.out
    assert "--allow-placeholder-catalogs" not in out.err + out.out


def test_build_iso_names_the_tree_by_folder_and_prints_real_paths(sample: Path, tmp_path: Path) -> None:
    """The same tree from two working folders gives the same bytes; what is printed exists."""
    isos = []
    for cwd in (sample.parent, tmp_path):
        out = tmp_path / f"from-{len(isos)}.iso"
        proc = subprocess.run([sys.executable, "-m", "aero_media", "build-iso",
                               "--drivers-root", os.path.relpath(sample, cwd), "--output", str(out),
                               "--allow-placeholder-catalogs"], cwd=cwd, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0, proc.stderr
        for path in re.findall(r"Wrote (\S+)", proc.stdout + proc.stderr):
            assert (cwd / path).is_file(), path
        assert "dist/adhoc" not in proc.stdout + proc.stderr
        isos.append(out.read_bytes())
    assert isos[0] == isos[1]
    assert str(sample) not in isos[0].decode("latin-1") and str(sample.parent).encode() not in isos[0]


def test_output_naming_a_folder_is_refused(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for output in (f"{tmp_path}/out/newdir/", str(tmp_path)):
        assert main(["build-iso", "--drivers-root", str(sample), "--output", output,
                     "--allow-placeholder-catalogs"]) == 2
        assert "--output" in error_line(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["zip", "empty", "noise"])
def test_verify_iso_on_something_else_is_an_input_error(tmp_path: Path, kind: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"thing.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("README.txt", "hi")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(os.urandom(64 * 1024))
    assert main(["verify-iso", "--iso", str(path)]) == 2
    text = error_line(capsys)
    assert text.startswith("error: --iso") and "list above" not in text and len(text.splitlines()) == 1, text


def test_verify_iso_problem_list_is_above_its_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aero_media.media.files import MediaFile
    from aero_media.media.isowriter import write_iso

    iso = tmp_path / "foreign.iso"
    write_iso([MediaFile("README.txt", data=b"x")], iso, "X", 315532800)
    assert main(["verify-iso", "--iso", str(iso)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert "problem(s)" in lines[0] and len(lines) > 2
    assert lines[-1].endswith("fix: see the list above; rebuild the media")


def test_readme_build_iso_example_works_as_written(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    commands = [line for line in re.findall(r"^aero-media (?:build-iso|verify-iso) .*$", readme, re.M)
                if "DIR" not in line and "X.iso" not in line]
    assert len(commands) == 2, commands
    project = make_project(tmp_path / "proj")
    assert run(doit_argv(project)).returncode == 0
    for command in commands:
        argv = shlex.split(command)
        proc = subprocess.run([sys.executable, "-m", "aero_media", *argv[1:]], cwd=project, capture_output=True,
                              text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0, f"{command}\n{proc.stderr}"


def test_unknown_spec_names_the_valid_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "proj")
    for args in (("build:nosuch",), ("stage:nosuch:x86",), ("clean", "build:nosuch")):
        proc = run(doit_argv(project, *args))
        assert proc.returncode == 2, proc.stderr
        assert "no spec named 'nosuch'" in proc.stderr and "use one of: sample" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert main(["--root", str(project), "build", "nosuch"]) == 2
    assert "use one of: sample" in error_line(capsys)


def test_a_broken_spec_names_itself_and_spoils_no_listing(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "proj")
    write_spec(project, "broken", "schema_version: 1\nsource: {kind: pack-dir}\ndrivers: []\n")
    assert main(["--root", str(project), "list-specs"]) == 2
    out = capsys.readouterr()
    rows = {line.split()[0]: line for line in out.out.splitlines()[1:] if not line.startswith(" ")}
    assert "sample" in rows and "BROKEN" not in rows["sample"]
    assert "BROKEN" in rows["broken"] and "specs/broken.yaml" in rows["broken"]
    assert "    specs/broken.yaml:2:9: /source: missing required key 'path'" in out.out
    assert "1 broken spec(s): specs/broken.yaml" in out.err


def test_a_broken_spec_stops_only_builds_that_need_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "proj")
    write_spec(project, "broken", "schema_version: 1\nsource: {kind: pack-dir}\ndrivers: []\n")
    (project / "specs" / "other.yml").write_text("schema_version: 1\n")
    # Asked for another spec by name: it builds, and each broken file is named once.
    proc = run(doit_argv(project, "build:sample"))
    assert proc.returncode == 0, proc.stderr
    assert "warning: specs/broken.yaml:3:10: /drivers: the list needs at least 1 entries" in proc.stderr
    assert "and 1 more problem(s) (spec 'broken' is left out until it is fixed)" in proc.stderr
    assert "specs/other.yml: spec files end in .yaml; fix: rename it to other.yaml" in proc.stderr
    assert (project / "dist/sample/aero-virtio-win7-drivers.iso").is_file()
    # Asked for it by name: the build refuses, naming why.
    proc = run(doit_argv(project, "build:broken"))
    assert proc.returncode == 2, proc.stderr
    assert "error: specs/broken.yaml:3:10" in proc.stderr and "Traceback" not in proc.stderr
    # aero-media build speaks for itself the same way.
    def aero_media(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "aero_media", "--root", str(project), *args], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})

    proc = aero_media("build", "sample")
    assert proc.returncode == 0 and "spec 'broken' is left out" in proc.stderr, proc.stderr
    proc = aero_media("build", "broken")
    assert proc.returncode == 2 and "error: specs/broken.yaml:3:10" in proc.stderr, proc.stderr


@pytest.mark.parametrize("how", ["doit", "aero-media build"])
def test_a_whole_run_builds_the_healthy_specs_and_fails_at_its_end(tmp_path: Path, how: str) -> None:
    """A bare `doit` (or `aero-media build`): the broken spec is named first, the healthy one builds and verifies,
    and the run still ends non-zero."""
    project = make_project(tmp_path / "proj")
    write_spec(project, "broken", "schema_version: 1\nsource: {kind: pack-dir}\ndrivers: []\n")
    argv = (doit_argv(project) if how == "doit"
            else [sys.executable, "-m", "aero_media", "--root", str(project), "build"])
    proc = run(argv, env=child_env(PYTHONPATH=str(REPO)))
    assert proc.returncode not in (0, 2), proc.stderr  # not refused: it ran, and failed at the end
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("warning: specs/broken.yaml:3:10: ") and "fix: " in lines[0], lines[0]
    assert [line for line in lines if "specs/broken.yaml" in line][1:] == [lines[-1]]  # named once more, last
    assert lines[-1].startswith("error: 1 broken spec(s) left out of this run: specs/broken.yaml")
    dist = project / "dist" / "sample"
    assert {p.name for p in dist.iterdir()} >= {"aero-virtio-win7-drivers.iso", "guest-tools"}
    for medium in ("aero-virtio-win7-drivers.iso", "aero-guest-tools.iso", "aero-virtio-win7-drivers-fat.vhd"):
        assert f"verified {medium}" in proc.stderr
    # What was built is complete: the next whole run builds nothing more, and still fails at the end.
    again = run(argv, env=child_env(PYTHONPATH=str(REPO)))
    assert again.returncode == proc.returncode and "verified" not in again.stderr, again.stderr


def test_doit_list_lists_the_healthy_tasks_and_warns(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    write_spec(project, "broken", "schema_version: 1\nsource: {kind: pack-dir}\ndrivers: []\n")
    proc = run(doit_argv(project, "list", "--all"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0].startswith("warning: specs/broken.yaml:3:10: ")
    tasks = {line.split()[0] for line in proc.stdout.splitlines()}
    assert {"build:sample", "stage:sample:x86", "verify:sample"} <= tasks
    assert not any("broken" in t for t in tasks)


def test_a_name_clash_fix_never_renames_onto_another_spec(tmp_path: Path) -> None:
    """specs/copy.yaml saying name: sample must not be told to become specs/sample.yaml, which exists."""
    project = make_project(tmp_path / "proj")
    text = (REPO / "specs" / "sample.yaml").read_text()
    write_spec(project, "copy", text)  # its name: sample clashes with specs/sample.yaml
    write_spec(project, "fresh", text.replace("name: sample", "name: newname"))
    results = {p.stem: r for p, r in load_each(Context(root=project))}
    clash, free = results["copy"], results["fresh"]
    assert isinstance(clash, SpecError) and isinstance(free, SpecError)
    assert "specs/sample.yaml" not in clash.message
    assert "write name: copy" in clash.message
    assert "rename the file to specs/newname.yaml" in free.message
    proc = run(doit_argv(project, "list"))
    assert proc.returncode == 0 and "write name: copy" in proc.stderr, proc.stderr


def test_outside_a_project_the_commands_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["list-specs"], ["build", "sample"]):
        assert main(["--root", str(tmp_path), *args]) == 2
        assert f"error: {tmp_path}: not a project folder (no specs/)" in error_line(capsys)
