"""The YAML loader: positions from composed nodes, and the same refusals with or without libyaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aero_media.errors import SpecError
from aero_media.spec import yamldoc
from aero_media.spec.yamldoc import MAX_DEPTH, load_doc

LOADERS = [pytest.param(yaml.SafeLoader, id="pure-python")]
if hasattr(yaml, "CSafeLoader"):
    LOADERS.append(pytest.param(yaml.CSafeLoader, id="libyaml"))


@pytest.fixture(params=LOADERS)
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamldoc, "_Loader", request.param)


def refusal(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as exc:
        load_doc(path, "s.yaml")
    message = exc.value.render()
    assert message.startswith("s.yaml:") and "fix:" in message and "\n" not in message.strip(), message
    return message


@pytest.mark.usefixtures("loader")
def test_values_and_positions_come_from_the_composed_nodes(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("a: 1\nb:\n  - x\n  - {c: 2025-01-01, d: true}\n")
    doc = load_doc(path, "s.yaml")
    assert doc.data == {"a": 1, "b": ["x", {"c": "2025-01-01", "d": True}]}
    assert doc.where("/b/1/d") == "s.yaml:4:24: /b/1/d"
    assert doc.where("/b/0") == "s.yaml:3:5: /b/0"
    assert doc.marks["/b#key"] == (2, 1)


@pytest.mark.usefixtures("loader")
@pytest.mark.parametrize("text, where", [
    ("a: &x 1\nb: 2\n", "s.yaml:1:4:"),
    ("a: [1]\nb: *x\n", "s.yaml:2:4:"),
    ("a:\n  - &r [*r]\n", "s.yaml:2:5:"),
])
def test_anchors_and_aliases_are_refused_where_they_stand(tmp_path: Path, text: str, where: str) -> None:
    message = refusal(tmp_path, text)
    assert message.startswith(where) and "anchors and aliases are not allowed in a spec" in message


@pytest.mark.usefixtures("loader")
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5000, 200_000])
def test_depth_is_bounded_before_composing_with_the_same_message(tmp_path: Path, levels: int) -> None:
    message = refusal(tmp_path, "x: " + "[" * levels + "]" * levels + "\n")
    assert f"nested more than {MAX_DEPTH} levels deep" in message


@pytest.mark.usefixtures("loader")
def test_depth_at_the_bound_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n")
    value = load_doc(path, "s.yaml").data
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert value == []
