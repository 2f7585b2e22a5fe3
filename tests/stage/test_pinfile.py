"""Writing pins into a spec file keeps every line it does not change, byte for byte."""

from __future__ import annotations

import json

from aero_media.spec.load import shipped_file
from aero_media.stage.pinfile import PINNABLE, Pins, edited_text

SPEC = """\
# yaml-language-server: $schema=schema.json
# A comment the user wrote.
schema_version: 1
name: t   # trailing comment
source:
  kind: virtio-win-iso
  url: 'https://example.invalid/virtio-win.iso'
  # where the local copy lives
  path: "../v.iso"
  expect:
    win7/x86/viostor/viostor.inf: aaaa   # old pin, kept aligned
    win7/x86/viostor/viostor.sys: {sys}
drivers:
  - {{name: viostor,  device: virtio-blk,   required: true}}
  - {{name: netkvm,   device: virtio-net,   required: false}}
outputs:
  guest_tools: {{version: 0.0.1,   build_id: x}}
"""
SYS = "1e" * 32


def test_only_the_pinned_lines_change() -> None:
    text = SPEC.format(sys=SYS)
    pins = Pins("f" * 64, {"win7/x86/viostor/viostor.inf": "a" * 64, "win7/x86/viostor/viostor.sys": SYS,
                           "win7/x86/netkvm/netkvm.sys": "b" * 64})
    new = edited_text(text, "specs/t.yaml", pins)
    old_lines, new_lines = text.splitlines(keepends=True), new.splitlines(keepends=True)
    added = [line for line in new_lines if line not in old_lines]
    assert [line.split("#")[0].split() for line in added] == [
        ["win7/x86/viostor/viostor.inf:", "a" * 64], ["win7/x86/netkvm/netkvm.sys:", "b" * 64],
        ["sha256:", "f" * 64]]
    assert added[0].rstrip().endswith("# old pin, kept aligned")  # the edited line keeps its comment
    # Every other line is the user's, in its place, byte for byte: comments, quotes, aligned flow mappings.
    assert [line for line in new_lines if line not in added] == \
        [line for line in old_lines if "viostor.inf" not in line]
    # New pins go after the old ones, in the source: mapping.
    assert new_lines.index(added[1]) == new_lines.index(added[0]) + 2
    assert new_lines.index(added[2]) == new_lines.index(added[1]) + 1 == new_lines.index("drivers:\n") - 1


def test_pins_already_written_change_nothing() -> None:
    text = SPEC.format(sys=SYS).replace("aaaa", "a" * 64)
    assert edited_text(text, "specs/t.yaml", Pins(None, {"win7/x86/viostor/viostor.inf": "a" * 64})) == text


def test_the_pinnable_sources_are_the_schemas() -> None:
    schema = json.loads(shipped_file("schema.json").read_text())
    takes_pins = {branch["if"]["properties"]["kind"]["const"] for branch in schema["$defs"]["source"]["allOf"]
                  if "expect" in branch["then"]["properties"]}
    assert takes_pins == {k.value for k in PINNABLE}
