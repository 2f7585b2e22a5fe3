"""config/devices.cmd as Aero's tools/guest-tools/validate_config.py reads it.

The reader below follows docs/upstream.md#aeros-devicescmd, not Aero's code: the contract comes from the
``rem Contract name:`` header (without it Aero falls back to its clean-room contract),
and the variables it needs must be set.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aero_media.media.scripts import render_devices_cmd
from aero_media.spec.load import load_contract
from tests.lib.project import REPO, make_project

HEADER = re.compile(r"^\s*rem\s+contract\s+name:\s*(.+?)\s*$", re.I | re.M)
SCHEMA_LINE = re.compile(r"^\s*rem\s+contract\s+schema_version:\s*(.+?)\s*$", re.I | re.M)
VERSION_LINE = re.compile(r"^\s*rem\s+contract\s+version:\s*(.+?)\s*$", re.I | re.M)
# set "NAME=value" (single values) and set NAME="a" "b" (lists of quoted strings).
SET_QUOTED = re.compile(r'^\s*set\s+"([A-Za-z0-9_]+)=([^"]*)"\s*$', re.M)
SET_LIST = re.compile(r'^\s*set\s+([A-Za-z0-9_]+)=(.*?)\s*$', re.M)
CLEAN_ROOM = "aero-windows-pci-device-contract"
VIRTIO_WIN = "aero-windows-pci-device-contract-virtio-win"


def aero_view(text: str) -> tuple[str, dict[str, str], dict[str, list[str]]]:
    """(contract name, single values, HWID lists) as Aero's validator sees them."""
    found = HEADER.search(text)
    contract = found.group(1) if found else CLEAN_ROOM
    singles = dict(SET_QUOTED.findall(text))
    lists = {name: re.findall(r'"([^"]*)"', value) for name, value in SET_LIST.findall(text)
             if not value.startswith('"') or name not in singles}
    return contract, singles, lists


@pytest.fixture(scope="module")
def text() -> str:
    contract = load_contract(REPO / "specs" / "devices.yaml")
    return render_devices_cmd(contract)


def test_header_names_aeros_virtio_win_contract(text: str) -> None:
    contract, _, _ = aero_view(text)
    assert contract == VIRTIO_WIN
    assert SCHEMA_LINE.search(text).group(1) == "1"  # type: ignore[union-attr]
    assert VERSION_LINE.search(text).group(1) == "1.0.6"  # type: ignore[union-attr]


def test_variables_aeros_validator_reads(text: str) -> None:
    _, singles, lists = aero_view(text)
    assert singles["AERO_VIRTIO_BLK_SERVICE"] == "viostor"
    assert singles["AERO_VIRTIO_BLK_SYS"] == "viostor.sys"
    assert singles["AERO_VIRTIO_NET_SERVICE"] == "netkvm"
    assert singles["AERO_VIRTIO_INPUT_SERVICE"] == "vioinput"
    assert singles["AERO_VIRTIO_SND_SERVICE"] and singles["AERO_VIRTIO_SND_SYS"].endswith(".sys")
    for name in ("AERO_VIRTIO_BLK_HWIDS", "AERO_VIRTIO_NET_HWIDS", "AERO_VIRTIO_INPUT_HWIDS", "AERO_VIRTIO_SND_HWIDS"):
        assert lists[name], name
        assert all(h.startswith("PCI\\VEN_1AF4&DEV_") for h in lists[name]), lists[name]
    assert "PCI\\VEN_1AF4&DEV_1042" in lists["AERO_VIRTIO_BLK_HWIDS"]
    assert "PCI\\VEN_1AF4&DEV_1041" in lists["AERO_VIRTIO_NET_HWIDS"]


def test_a_contract_without_aero_equivalent_names_itself(tmp_path: Path) -> None:
    make_project(tmp_path, with_sample=False)
    own = tmp_path / "specs" / "devices.yaml"
    lines = own.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("aero_contract:"))
    del lines[start:start + 4]
    own.write_text("".join(lines).replace("contract: AERO-W7-VIRTIO", "contract: my-clean-room"))
    text = render_devices_cmd(load_contract(own))
    assert aero_view(text)[0] == "my-clean-room"
    assert VERSION_LINE.search(text).group(1) == "1.0"  # type: ignore[union-attr]


def test_the_header_is_in_the_media_file(tmp_path: Path) -> None:
    """The lines are plain `rem` (Aero's pattern does not match `@rem`), CRLF on the media."""
    import zipfile

    from tests.lib.project import run_doit

    project = make_project(tmp_path)
    assert run_doit(project) == 0
    with zipfile.ZipFile(project / "dist/sample/guest-tools/aero-guest-tools.zip") as zf:
        raw = zf.read("config/devices.cmd")
    assert b"\r\nrem Contract name: " + VIRTIO_WIN.encode() + b"\r\n" in raw
    assert aero_view(raw.decode("ascii"))[0] == VIRTIO_WIN
