"""Throwaway project folders for tests: specs/ (with the real schema and contract) plus a pack."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def make_project(root: Path, *, with_sample: bool = True) -> Path:
    """Create ``root/specs`` (schema, contract) and optionally a copy of the sample pack and spec."""
    specs = root / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    for name in ("schema.json", "devices.yaml", "devices.schema.json"):
        shutil.copyfile(REPO / "specs" / name, specs / name)
    if with_sample:
        shutil.copytree(REPO / "prebuilt" / "sample", root / "prebuilt" / "sample", dirs_exist_ok=True)
        shutil.copyfile(REPO / "specs" / "sample.yaml", specs / "sample.yaml")
    return root


def write_spec(root: Path, name: str, data: dict[str, Any] | str) -> Path:
    """Write ``specs/<name>.yaml`` from a mapping or raw text."""
    path = root / "specs" / f"{name}.yaml"
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def sample_spec_data(**overrides: Any) -> dict[str, Any]:
    """The sample spec as a mapping, with top-level keys overridden."""
    data = yaml.safe_load((REPO / "specs" / "sample.yaml").read_text())
    data.update(overrides)
    return data


@contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_doit(root: Path, *args: str) -> int:
    """Run doit in-process on the project at ``root``, as `aero-media build` does; return its exit code."""
    import sys

    from doit import cmd_run

    from aero_media.taskgraph.main import AeroDoitMain, SpecTaskLoader

    # doit binds its report stream to sys.stdout at import; follow pytest's capture.
    cmd_run.opt_outfile["default"] = sys.stdout
    with chdir(root):  # the loader goes to the project; come back afterwards
        return AeroDoitMain(SpecTaskLoader(root)).run(list(args))


def expanded_sample(dest: Path) -> Path:
    """The repo's sample pack with its stand-in recipes expanded, as `doit` stages it (build/sample/pack)."""
    from aero_media.devtools.standins import expand_tree
    from aero_media.sources.tree import DirTree

    expand_tree(DirTree(REPO / "prebuilt" / "sample"), dest)
    return dest
