"""A non-editable install works on its own: schema, contract and templates ship inside the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lib.project import REPO, expanded_sample

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the checkout, installed into a folder of its own (offline)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copyfile(REPO / name, src / name)
    for name in ("aero_media", "specs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(work / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (work / "dist").glob("aero_virtio_media-*.whl")
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True, capture_output=True)
    return target


def aero_media(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run([sys.executable, str(installed / "bin" / "aero-media"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_the_installed_package_is_the_one_that_runs(installed: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    out = subprocess.run([sys.executable, "-c", "import aero_media; print(aero_media.__file__)"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, check=True).stdout
    assert Path(out.strip()).is_relative_to(installed)
    shipped = sorted(p.name for p in (installed / "aero_media" / "specdata").iterdir())
    assert shipped == ["aero-contract.schema.json", "contracts", "devices.schema.json", "devices.yaml", "schema.json"]
    # Aero's contract for its in-tree drivers ships too, so an installed tool can name it (contract: in a spec).
    assert (installed / "aero_media" / "specdata" / "contracts" / "aero-in-tree.json").is_file()
    assert (installed / "aero_media" / "media" / "templates" / "setup.cmd").is_file()
    # The answer-file schema ships beside its writer, and the installed writer validates with it.
    check = ("from aero_media.answer import answerfile as af; from aero_media.spec.types import AnswerFile, Arch;"
             "assert af.SCHEMA_FILE.is_file(); print(af.problems(af.render(AnswerFile.DRIVERS_ONLY, "
             "{Arch.X86: ['viostor']})))")
    out = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_the_distribution_is_named_for_what_it_is(installed: Path, tmp_path: Path) -> None:
    """No generic top-level name: ``pipeline`` is another PyPI project's; ours is ``aero_media``, typed, MIT."""
    env = {**os.environ, "PYTHONPATH": str(installed)}
    old = subprocess.run([sys.executable, "-c", "import pipeline"], cwd=tmp_path, env=env, capture_output=True)
    assert old.returncode != 0
    version = subprocess.run([sys.executable, "-m", "aero_media", "--version"], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.split() == ["aero-media", _version()]
    assert (installed / "aero_media" / "py.typed").is_file()
    (dist_info,) = installed.glob("aero_virtio_media-*.dist-info")
    metadata = (dist_info / "METADATA").read_text(encoding="utf-8").splitlines()
    assert "License-Expression: MIT" in metadata
    assert sorted(p.name for p in dist_info.rglob("LICENSE")) == ["LICENSE"]


def _version() -> str:
    import aero_media

    return aero_media.__version__


def test_build_iso_and_check_from_a_folder_outside_the_repo(installed: Path, tmp_path: Path) -> None:
    pack = expanded_sample(tmp_path / "pack")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = aero_media(installed, elsewhere, "build-iso", "--drivers-root", str(pack), "--output", "out/drivers.iso",
                   "--allow-placeholder-catalogs")
    assert r.returncode == 0, r.stderr
    assert (elsewhere / "out" / "drivers.iso").is_file()
    r = aero_media(installed, elsewhere, "verify-iso", "--iso", "out/drivers.iso")
    assert r.returncode == 0, r.stderr
    r = aero_media(installed, elsewhere, "check", str(pack / "win7" / "amd64" / "viostor"),
                   "--allow-placeholder-catalogs")
    assert r.returncode == 0, r.stderr
    assert "1 package(s) checked" in r.stdout
    assert not (elsewhere / "build").exists() and sorted(p.name for p in elsewhere.iterdir()) == ["out"]


def test_extract_from_a_folder_outside_the_repo(installed: Path, tmp_path: Path) -> None:
    """Aero's make-driver-pack.ps1 runs extract wherever it is: it must not look for a checkout's specs/."""
    from tests.lib.upstream import make_iso, make_upstream_tree

    make_upstream_tree(tmp_path / "src")
    iso = make_iso(tmp_path / "src", tmp_path / "virtio-win.iso")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = aero_media(installed, elsewhere, "extract", "--virtio-win-iso", str(iso), "--out-root", "pack")
    assert r.returncode == 0, r.stderr
    assert (elsewhere / "pack" / "virtio-win-provenance.json").is_file()
