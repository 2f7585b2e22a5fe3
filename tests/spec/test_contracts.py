"""Contracts per spec: ours (specs/devices.yaml) or Aero's JSON (schema 1), read directly, used everywhere."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from aero_media.errors import SpecError
from aero_media.media.scripts import render_devices_cmd
from aero_media.servicing import edits
from aero_media.servicing.edits import HiveFile, ImageKind, Options
from aero_media.servicing.hive import RegValue
from aero_media.spec.load import load_contract, load_spec, spec_from_mapping
from aero_media.spec.model import Context
from aero_media.spec.types import Vocabulary
from aero_media.win7 import pnp
from aero_media.win7.folders import infer_device
from aero_media.win7.inf import parse_inf
from tests.lib.project import REPO, make_project, sample_spec_data, write_spec

SHIPPED = REPO / "specs" / "contracts" / "aero-in-tree.json"


def _aero_file(realdata: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((realdata / "aero" / "docs" / name).read_text(encoding="utf-8"))
    data.pop("$schema")  # an editor hint Aero's tools ignore
    return data


def test_shipped_contract_is_aeros_canonical_contract(realdata: Path) -> None:
    ours = load_contract(SHIPPED)
    aeros = load_contract(realdata / "aero" / "docs" / "windows-device-contract.json")
    assert pnp.aero_json(ours) == _aero_file(realdata, "windows-device-contract.json")
    assert ours.devices == aeros.devices and ours.header == aeros.header


def test_aeros_virtio_win_contract_reads_and_matches_our_default(realdata: Path) -> None:
    virtio_win = load_contract(realdata / "aero" / "docs" / "windows-device-contract-virtio-win.json")
    assert pnp.aero_json(virtio_win) == _aero_file(realdata, "windows-device-contract-virtio-win.json")
    default = load_contract(REPO / "specs" / "devices.yaml")
    assert default.header == virtio_win.header
    for name in ("virtio-blk", "virtio-net", "virtio-snd"):
        ours, aeros = default.device(name), virtio_win.device(name)
        assert pnp.contract_ids(ours) == pnp.contract_ids(aeros)
        assert (ours.service, ours.inf, ours.setup_class, ours.boot_critical) == \
            (aeros.service, aeros.inf, aeros.setup_class, aeros.boot_critical)


def test_non_virtio_device_and_two_infs_per_pci_id() -> None:
    contract = load_contract(SHIPPED)
    gpu = contract.device("aero-gpu")
    assert (gpu.virtio_type, gpu.revision, gpu.setup_class) == (None, "", "Display")
    assert pnp.windows_ids(gpu, gpu.subsystems[0])[:2] == ("PCI\\VEN_A3A0&DEV_0001&SUBSYS_0001A3A0",) * 2
    keyboard_mouse, tablet = contract.device("virtio-input"), contract.device("aero-virtio-input-tablet")
    assert (keyboard_mouse.vendor_id, keyboard_mouse.device_id) == (tablet.vendor_id, tablet.device_id)
    assert [s.name for s in keyboard_mouse.subsystems] == ["keyboard", "mouse"]
    assert [s.name for s in tablet.subsystems] == ["tablet"]


def _inf(subsys: str, service: str = "aero_virtio_input") -> bytes:
    return ("[Version]\r\nSignature=\"$WINDOWS NT$\"\r\nClass=HIDClass\r\n"
            "ClassGuid={745A17A0-74D3-11D0-B6FE-00A0C90F57DA}\r\nProvider=Aero\r\n\r\n"
            "[Manufacturer]\r\nAero=Aero,NTx86,NTamd64\r\n\r\n"
            f"[Aero.NTamd64]\r\nDev=Inst, PCI\\VEN_1AF4&DEV_1052&SUBSYS_{subsys}1AF4&REV_01\r\n\r\n"
            f"[Inst.NTamd64.Services]\r\nAddService={service},2,Svc\r\n").encode()


@pytest.mark.parametrize(("subsys", "device"), [("0012", "aero-virtio-input-tablet"), ("0010", "virtio-input")])
def test_binding_tells_the_inf_by_subsystem(subsys: str, device: str) -> None:
    contract = load_contract(SHIPPED)
    # Named like neither contract INF, so only the subsystem IDs it lists can tell which device it drives.
    inf = parse_inf(_inf(subsys), "renamed.inf")
    found = infer_device(inf, contract, "input")
    assert found is not None and found.name == device


def test_devices_cmd_names_the_contract_in_force_as_aeros_generator_does() -> None:
    contract = load_contract(SHIPPED)
    text = render_devices_cmd(contract)
    assert "rem Contract name: aero-windows-pci-device-contract\n" in text
    assert "rem Contract version: 1.0.6\n" in text
    assert "Generated from specs/contracts/aero-in-tree.json" in text
    assert 'set "AERO_VIRTIO_BLK_SERVICE=aero_virtio_blk"' in text
    assert 'set "AERO_GPU_SERVICE=aerogpu"' in text
    # Aero's generator copies each device's patterns in the contract's order.
    for dev, var in (("virtio-input", "AERO_VIRTIO_INPUT_HWIDS"), ("aero-gpu", "AERO_GPU_HWIDS"),
                     ("aero-virtio-input-tablet", "AERO_VIRTIO_INPUT_TABLET_HWIDS")):
        quoted = " ".join(f'"{h}"' for h in contract.device(dev).hardware_ids)
        assert f"set {var}={quoted}\n" in text


def test_critical_device_database_keys_follow_the_contract() -> None:
    contract = load_contract(SHIPPED)
    found = edits.registry_edits(ImageKind.SETUP, HiveFile.SYSTEM, contract, Options(), control_set="ControlSet001")
    cdd = [e for e in found if "CriticalDeviceDatabase" in e.key and e.value.name == "Service"]
    assert cdd and all(e.value == RegValue.sz("Service", "aero_virtio_blk") for e in cdd)
    keys = {e.key.rsplit("\\", 1)[-1] for e in cdd}
    assert keys == set(pnp.cdd_keys(contract.device("virtio-blk"), transitional=True))
    assert any(e.key.endswith("\\Services\\aero_virtio_blk") for e in found)


# --- malformed Aero contracts: one line at file:line ---

def _write(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "contract.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2), encoding="utf-8")
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _error(path: Path) -> str:
    with pytest.raises(SpecError) as exc:
        load_contract(path, "contract.json")
    assert "\n" not in exc.value.message
    return exc.value.message


def test_json_syntax_error_is_at_jsons_line(tmp_path: Path) -> None:
    text = json.dumps(json.loads(SHIPPED.read_text()), indent=2)
    broken = text.replace('"inf_name": "aero_virtio_net.inf"', '"inf_name": "aero_virtio_net.inf",,', 1)
    path = _write(tmp_path, broken)
    assert _error(path).startswith(f"contract.json:{_line_of(path, 'aero_virtio_net.inf')}:")


@pytest.mark.parametrize(("device", "field", "value"), [
    (2, "pci_device_id", "1059"),  # no 0x
    (3, "hardware_id_patterns", ["PCI\\VEN_1AF4&DEV_1041&REV_01"]),  # another device's ID
    (5, "pci_device_id", "0x0002"),  # a PCI function we know nothing of
    (1, "virtio_device_type", "one"),
])
def test_semantic_errors_are_at_the_devices_line(tmp_path: Path, device: int, field: str, value: Any) -> None:
    data = copy.deepcopy(json.loads(SHIPPED.read_text()))
    data["devices"][device][field] = value
    path = _write(tmp_path, data)
    name = data["devices"][device]["device"]
    line = int(_error(path).split(":")[1])
    device_line = _line_of(path, f'"device": "{name}"')
    next_device = min([_line_of(path, f'"device": "{d["device"]}"') for d in data["devices"][device + 1:]],
                      default=10**6)
    assert device_line - 1 <= line < next_device


def test_duplicate_device_is_refused(tmp_path: Path) -> None:
    data = json.loads(SHIPPED.read_text())
    data["devices"].append(data["devices"][0])
    assert "twice" in _error(_write(tmp_path, data))


# --- a spec names its contract ---

def _aero_spec(**overrides: Any) -> dict[str, Any]:
    data = sample_spec_data(**overrides)
    data.pop("default", None)
    data.pop("name", None)
    data["drivers"] = [{"name": "aerogpu", "device": "aero-gpu", "required": True}]
    return data


def test_spec_names_its_contract_relative_to_the_spec_file(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    (root / "specs" / "contracts").mkdir()
    (root / "specs" / "contracts" / "aero.json").write_bytes(SHIPPED.read_bytes())
    path = write_spec(root, "aero", _aero_spec(contract="contracts/aero.json"))
    spec = load_spec(path, Context(root=root))
    assert spec.contract.name == "aero-windows-pci-device-contract"
    assert spec.contract.file == "specs/contracts/aero.json"
    assert spec.drivers[0].device.service == "aerogpu"
    # Without contract: the project's specs/devices.yaml, which has no aero-gpu.
    with pytest.raises(SpecError, match="aero-gpu"):
        load_spec(write_spec(root, "plain", _aero_spec()), Context(root=root))


def test_missing_contract_file_is_one_line_at_the_setting(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    path = write_spec(root, "aero", _aero_spec(contract="contracts/nope.json"))
    with pytest.raises(SpecError) as exc:
        load_spec(path, Context(root=root))
    line = _line_of(path, "contract:")
    assert exc.value.message.startswith(f"specs/aero.yaml:{line}:") and "\n" not in exc.value.message


@pytest.mark.parametrize("folder", ["build", "dist"])
def test_contract_inside_build_or_dist_is_refused(tmp_path: Path, folder: str) -> None:
    root = make_project(tmp_path)
    (root / folder).mkdir()
    (root / folder / "aero.json").write_bytes(SHIPPED.read_bytes())
    path = write_spec(root, "aero", _aero_spec(contract=f"../{folder}/aero.json"))
    with pytest.raises(SpecError, match=f"inside {folder}/"):
        load_spec(path, Context(root=root))


def test_command_line_spec_contract_is_relative_to_the_project(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    (root / "aero.json").write_bytes(SHIPPED.read_bytes())
    data = yaml.safe_load(yaml.safe_dump({**_aero_spec(contract="aero.json"), "name": "adhoc"}))
    spec = spec_from_mapping(data, Context(root=root), Vocabulary(command="build-iso", flags={}))
    assert spec.contract.header.name == "aero-windows-pci-device-contract"
