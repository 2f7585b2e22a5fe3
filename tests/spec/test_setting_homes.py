"""Each setting has one home: moved settings are refused with their new place, and the schema's closed sets
are the Python enums."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from aero_media.cli import main
from aero_media.spec.load import MOVED_SETTINGS
from aero_media.spec.types import (
    DEPRECATED_TEST_NAME,
    Arch,
    OptionalPolicy,
    PlaceholderPolicy,
    SigningPolicy,
    SourceKind,
    Stage,
    WarningPolicy,
)
from aero_media.taskgraph import tasks
from tests.lib.project import REPO, make_project, sample_spec_data, write_spec

SCHEMA: dict[str, Any] = json.loads((REPO / "specs" / "schema.json").read_text())


def _at(path: str) -> Any:
    node: Any = SCHEMA
    for part in path.split("/"):
        node = node[part]
    return node


@pytest.mark.parametrize(("old", "value"), [
    ("outputs/guest_tools/signing_policy", "none"),
    ("outputs/guest_tools/certs", ["x.cer"]),
    ("outputs/guest_tools/trust_publisher", False),
    ("outputs/drivers_iso/winpe_drivers", False),
    ("install_media/winpe_drivers", False),
])
def test_a_setting_in_its_old_place_names_the_new_one(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       old: str, value: Any) -> None:
    project = make_project(tmp_path)
    data = sample_spec_data(name="old", default=False)
    node = data
    *parents, key = old.split("/")
    for part in parents:
        node = node.setdefault(part, {"path": "w.iso"} if part == "install_media" else {})
    node[key] = value
    text = yaml.safe_dump(data, sort_keys=False)
    write_spec(project, "old", text)
    lines = text.splitlines()
    parent = next(i for i, t in enumerate(lines) if t.strip() == f"{parents[-1]}:")
    line = 1 + next(i for i, t in enumerate(lines) if i > parent and t.strip().startswith(f"{key}:"))
    assert main(["--root", str(project), "show-spec", "old"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    new = MOVED_SETTINGS["/" + old]
    assert re.search(rf"specs/old\.yaml:{line}:\d+: ", err[0]), err[0]
    assert old.replace("/", ".") in err[0] and new in err[0] and "Traceback" not in err[0]


def test_schema_enums_are_the_python_enums() -> None:
    props = SCHEMA["properties"]
    assert props["target"]["properties"]["arches"]["items"]["enum"] == [a.value for a in Arch]
    assert _at("$defs/source/properties/kind/enum") == [k.value for k in SourceKind]
    # The OS folders: tests/spec/test_schema_os_dirs.py (Arch.os_dirs).
    policy = props["signing"]["properties"]["policy"]
    assert policy["enum"] == [p.value for p in SigningPolicy] + [DEPRECATED_TEST_NAME]
    assert policy["x-deprecated"] == [DEPRECATED_TEST_NAME]
    assert props["optional"]["enum"] == [p.value for p in OptionalPolicy]
    assert props["checks"]["properties"]["warnings"]["enum"] == [p.value for p in WarningPolicy]
    assert props["checks"]["properties"]["placeholder_catalogs"]["enum"] == [p.value for p in PlaceholderPolicy]


def test_every_stage_has_one_function_one_task_group_and_one_slice(tmp_path: Path) -> None:
    from aero_media.spec.load import load_spec
    from aero_media.spec.model import Context

    assert set(tasks.STAGES) == set(Stage)
    groups = {name.removeprefix("task_") for name in dir(tasks) if name.startswith("task_")}
    assert groups - {"build", "default", "pin"} == {s.value for s in Stage}
    project = make_project(tmp_path)
    spec = load_spec(project / "specs" / "sample.yaml", Context(root=project))
    for stage in Stage:
        json.dumps(spec.fingerprint(stage))  # JSON-safe, for doit's state


def _slices(project: Path, **changes: Any) -> dict[Stage, Any]:
    from aero_media.spec.load import load_spec
    from aero_media.spec.model import Context

    data = sample_spec_data(name="s", default=False)
    data["install_media"] = {"path": "w.iso"}
    for where, value in changes.items():
        section, key = where.split("__")
        data.setdefault(section, {})[key] = value
    spec = load_spec(write_spec(project, "s", data), Context(root=project))
    return {stage: spec.fingerprint(stage) for stage in Stage}


@pytest.mark.parametrize(("change", "value", "expect"), [
    ("guest_tools_version", "1.2.3", {Stage.GUEST_TOOLS, Stage.VERIFY_GUEST_TOOLS}),
    ("media__winpe_drivers", False, {Stage.DRIVERS_ISO, Stage.VERIFY, Stage.ARCH_DRIVERS_ISO,
                                     Stage.VERIFY_ARCH_DRIVERS_ISO, Stage.FAT_DISK, Stage.VERIFY_FAT_DISK,
                                     Stage.SERVICE}),
    ("media__winpe_drivers", "per-arch", {Stage.DRIVERS_ISO, Stage.VERIFY, Stage.ARCH_DRIVERS_ISO,
                                          Stage.VERIFY_ARCH_DRIVERS_ISO, Stage.FAT_DISK, Stage.VERIFY_FAT_DISK,
                                          Stage.SERVICE, Stage.PUBLISH}),  # the one-arch ISOs are published too
    ("signing__trust_publisher", False, {Stage.FAT_DISK, Stage.VERIFY_FAT_DISK, Stage.GUEST_TOOLS,
                                         Stage.VERIFY_GUEST_TOOLS, Stage.SERVICE}),
])
def test_a_setting_changes_only_the_slices_of_the_stages_that_read_it(tmp_path: Path, change: str, value: Any,
                                                                     expect: set[Stage]) -> None:
    project = make_project(tmp_path)
    before = _slices(project)
    if change == "guest_tools_version":
        data = sample_spec_data(name="s", default=False)
        data["install_media"] = {"path": "w.iso"}
        data["outputs"]["guest_tools"]["version"] = value
        from aero_media.spec.load import load_spec
        from aero_media.spec.model import Context

        spec = load_spec(write_spec(project, "s", data), Context(root=project))
        after = {stage: spec.fingerprint(stage) for stage in Stage}
    else:
        after = _slices(project, **{change: value})
    assert {s for s in Stage if before[s] != after[s]} == expect
