"""Our Guest Tools manifest is a superset of Aero's packager type (schema 4).

The JSON Schema beside this file is our own transcription of Aero's type from the
field list in docs/upstream.md#aeros-guest-tools-manifest; these tests also show that it has teeth.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from aero_media.errors import SpecError
from aero_media.spec.load import load_spec
from aero_media.spec.model import Context
from aero_media.spec.types import SigningPolicy
from tests.lib.project import make_project, run_doit, sample_spec_data, write_spec

pytestmark = pytest.mark.integration

AERO_SCHEMA = json.loads((Path(__file__).with_name("aero_manifest.schema.json")).read_text())


def aero_accepts(manifest: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(AERO_SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aero_media.devtools.testcert import make_test_cert

    project = make_project(tmp_path_factory.mktemp("interop") / "proj")
    tc = make_test_cert(project / "certs")  # an input: never inside build/ or dist/, which the build owns
    data = sample_spec_data(name="signed", default=False)
    data["signing"].update(policy="test", certs=[str(tc.cer.relative_to(project))])
    write_spec(project, "signed", data)
    assert run_doit(project, "build:sample", "build:signed") == 0
    return project


@pytest.mark.parametrize(("spec", "policy"), [("sample", "none"), ("signed", "test")])
def test_aero_type_accepts_our_manifest(built: Path, spec: str, policy: str) -> None:
    manifest = json.loads((built / "dist" / spec / "guest-tools" / "manifest.json").read_text())
    assert aero_accepts(manifest) == []
    assert manifest["schema_version"] == 4 and manifest["signing_policy"] == policy
    assert manifest["certs_required"] is (policy == "test")
    assert manifest["package"]["name"] == "aero-guest-tools"
    paths = [f["path"] for f in manifest["files"]]
    assert paths == sorted(paths) and "manifest.json" not in paths
    # inputs and provenance name the spec file and the contract by project path and sha256.
    spec_file = built / "specs" / f"{spec}.yaml"
    contract_file = built / "specs" / "devices.yaml"
    assert manifest["inputs"]["packaging_spec"] == {"path": f"specs/{spec}.yaml",
                                                    "sha256": hashlib.sha256(spec_file.read_bytes()).hexdigest()}
    contract = manifest["inputs"]["windows_device_contract"]
    assert contract == {"path": "specs/devices.yaml", "sha256": hashlib.sha256(contract_file.read_bytes()).hexdigest(),
                        "contract_name": "AERO-W7-VIRTIO", "contract_version": "1.0", "schema_version": 1}
    spec_sha = manifest["inputs"]["packaging_spec"]["sha256"]
    assert manifest["provenance"] == {
        "packaging_spec_path": f"specs/{spec}.yaml", "packaging_spec_sha256": spec_sha,
        "windows_device_contract_path": "specs/devices.yaml", "windows_device_contract_sha256": contract["sha256"]}
    # Ours is kept, under a key of its own.
    assert "staged" in manifest["source_provenance"] and "source" in manifest["source_provenance"]


def test_drivers_iso_manifest_carries_the_contract_input(built: Path) -> None:
    import io

    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(str(built / "dist" / "sample" / "aero-virtio-win7-drivers.iso"))
    buf = io.BytesIO()
    iso.get_file_from_iso_fp(buf, joliet_path="/manifest.json")
    iso.close()
    manifest = json.loads(buf.getvalue())
    gt = json.loads((built / "dist" / "sample" / "guest-tools" / "manifest.json").read_text())
    # The contract, as the Guest Tools record it; not the spec file, whose every edit would rebuild the ISO.
    assert manifest["inputs"] == {"windows_device_contract": gt["inputs"]["windows_device_contract"]}
    assert "provenance" not in manifest
    assert "source_provenance" in manifest and "provenance" not in manifest["source_provenance"]


def test_the_aero_schema_has_teeth(built: Path) -> None:
    good = json.loads((built / "dist" / "sample" / "guest-tools" / "manifest.json").read_text())
    for mutate in (lambda m: m.update(signing_policy="testsigning"),
                   lambda m: m.update(signing_policy="prod"),
                   lambda m: m.pop("certs_required"),
                   lambda m: m.pop("files"),
                   lambda m: m["package"].pop("source_date_epoch"),
                   lambda m: m["provenance"].pop("windows_device_contract_sha256"),
                   lambda m: m.update(provenance={"source": {"kind": "pack-dir"}}),  # our old shape
                   lambda m: m["inputs"]["windows_device_contract"].pop("contract_name")):
        bad = copy.deepcopy(good)
        mutate(bad)
        assert aero_accepts(bad) != [], bad


def test_testsigning_is_a_deprecated_alias(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_project(tmp_path)
    data = sample_spec_data(name="old")
    data["signing"].update(policy="testsigning", certs=["x.cer"])
    spec = load_spec(write_spec(tmp_path, "old", data), Context(root=tmp_path))
    assert spec.signing.policy is SigningPolicy.TEST
    err = capsys.readouterr().err
    assert "policy testsigning is deprecated" in err and "policy: test" in err
    data["signing"]["policy"] = "test-signing"
    with pytest.raises(SpecError, match="is not one of none, test, production"):
        load_spec(write_spec(tmp_path, "old", data), Context(root=tmp_path))


def test_batch_config_spells_the_policy_one_way(built: Path) -> None:
    import zipfile

    with zipfile.ZipFile(built / "dist" / "signed" / "guest-tools" / "aero-guest-tools.zip") as zf:
        media_cmd = zf.read("config/media.cmd").decode()
        scripts = b"".join(zf.read(n) for n in ("setup.cmd", "verify.cmd", "uninstall.cmd")).decode()
    assert 'set "AGT_SIGNING_POLICY=test"' in media_cmd
    assert '"%AGT_SIGNING_POLICY%"=="testsigning"' not in scripts
