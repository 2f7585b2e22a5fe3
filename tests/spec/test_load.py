"""Spec loading: the model, defaults, and one positioned message per problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aero_media.errors import SpecError
from aero_media.spec.load import load_spec, load_specs
from aero_media.spec.model import Context
from aero_media.spec.types import Arch, WinPEDrivers
from tests.lib.project import REPO, make_project, sample_spec_data, write_spec


def test_repo_specs_load() -> None:
    specs = load_specs(Context(root=REPO))
    names = {s.name for s in specs}
    assert "sample" in names
    sample = next(s for s in specs if s.name == "sample")
    assert sample.default is True
    assert sample.arches == (Arch.X86, Arch.AMD64)
    assert [d.name for d in sample.drivers if d.required] == ["viostor", "netkvm"]
    assert sample.driver("viostor").device.service == "viostor"
    assert sample.source.path == REPO / "prebuilt" / "sample"
    assert sample.drivers_iso.volume_label == "AERO_VIRTIO"


def _load(tmp_path: Path, text: str) -> SpecError:
    make_project(tmp_path, with_sample=False)
    path = write_spec(tmp_path, "broken", text)
    with pytest.raises(SpecError) as exc:
        load_spec(path, Context(root=tmp_path))
    return exc.value


GOOD = """\
schema_version: 1
source:
  kind: pack-dir
  path: prebuilt/sample
drivers:
  - {name: viostor, device: virtio-blk, required: true}
"""


def test_minimal_spec_defaults(tmp_path: Path) -> None:
    make_project(tmp_path, with_sample=False)
    spec = load_spec(write_spec(tmp_path, "mini", GOOD), Context(root=tmp_path))
    assert spec.name == "mini"
    assert spec.arches == (Arch.X86, Arch.AMD64)
    assert spec.optional_policy == "best-effort"
    assert spec.drivers_iso.filename == "aero-virtio-win7-drivers.iso"
    assert spec.signing.policy == "none" and spec.signing.signer is None
    assert spec.media.winpe_drivers is WinPEDrivers.EVERY
    assert spec.source.os_dirs == {}  # the selection rules' default OS folders apply


def test_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD + "notes: [\n")
    text = err.render()
    assert text.startswith("specs/broken.yaml:")
    assert "malformed YAML" in text and "fix:" in text


def test_wrong_type_has_line_pointer_and_expectation(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD.replace("required: true", "required: yes-please"))
    text = err.render()
    assert "specs/broken.yaml:6:" in text
    assert "/drivers/0/required" in text
    assert "expected true or false" in text


def test_unknown_key_suggests_closest(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD + "optionl: strict\n")
    text = err.render()
    assert "specs/broken.yaml:7:1: /optionl" in text
    assert "unknown key 'optionl'" in text and "did you mean 'optional'?" in text


def test_unknown_nested_key_in_source(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD.replace("  path: prebuilt/sample", "  path: prebuilt/sample\n  sha265: abc"))
    assert "/source/sha265" in err.render() and "unknown key" in err.render()


def test_unknown_device_is_positioned(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD.replace("virtio-blk", "virtio-bkl"))
    text = err.render()
    assert "specs/broken.yaml:6:" in text and "/drivers/0/device" in text
    assert "unknown device 'virtio-bkl'" in text and "did you mean 'virtio-blk'?" in text


def test_bad_enum_lists_choices(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD + "target: {arches: [arm]}\n")
    assert "/target/arches/0" in err.render() and "'arm' is not one of x86, amd64" in err.render()


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD + "schema_version: 1\n")
    assert "key 'schema_version' appears twice" in err.render() and "broken.yaml:7:1" in err.render()


def test_duplicate_driver(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD + "  - {name: viostor, device: virtio-blk}\n")
    assert "/drivers/1/name" in err.render() and "listed twice" in err.render()


def test_remote_iso_must_pin_something(tmp_path: Path) -> None:
    text = GOOD.replace("kind: pack-dir\n  path: prebuilt/sample",
                        "kind: virtio-win-iso\n  url: https://example.invalid/virtio-win-0.1.285.iso")
    err = _load(tmp_path, text)
    assert "/source" in err.render() and "sha256 or expect" in err.render()
    assert "must be pinned" in err.render()


def test_2k8r2_is_amd64_only(tmp_path: Path) -> None:
    text = GOOD.replace("kind: pack-dir", "kind: virtio-win-dir") + ""
    text = text.replace("  path: prebuilt/sample", "  path: x\n  os_dirs: {x86: [w7, 2k8R2]}")
    err = _load(tmp_path, text)
    assert "/source/os_dirs/x86" in err.render() and "2k8R2" in err.render()


def test_w10_os_dir_rejected(tmp_path: Path) -> None:
    text = GOOD.replace("kind: pack-dir", "kind: virtio-win-dir")
    text = text.replace("  path: prebuilt/sample", "  path: x\n  os_dirs: {amd64: [w10]}")
    err = _load(tmp_path, text)
    assert "/source/os_dirs/amd64/0" in err.render() and "'w10' is not one of" in err.render()


def test_several_problems_reported_together(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD.replace("virtio-blk", "nope") + "colour: red\n")
    lines = err.render().splitlines()
    assert len(lines) == 1  # schema errors first: the unknown key stops before device checks
    err = _load(tmp_path, GOOD + "colour: red\noptional: maybe\n")
    assert len(err.render().splitlines()) == 2


def test_name_must_match_the_file_name(tmp_path: Path) -> None:
    """doit build:<stem> is what a user types after looking in specs/: a different name: confused it."""
    make_project(tmp_path)
    write_spec(tmp_path, "other", sample_spec_data())  # also says name: sample
    with pytest.raises(SpecError) as exc:
        load_specs(Context(root=tmp_path))
    text = exc.value.render()
    assert text.startswith("specs/other.yaml:") and "/name: name 'sample' differs from the file name 'other'" in text
    # specs/sample.yaml is another spec: the fix changes name:, never the file onto it.
    assert "specs/sample.yaml" not in text and "write name: other" in text


def test_invalid_file_stem_needs_name(tmp_path: Path) -> None:
    make_project(tmp_path, with_sample=False)
    path = write_spec(tmp_path, "Bad Name", GOOD)
    with pytest.raises(SpecError, match="not a valid spec name"):
        load_spec(path, Context(root=tmp_path))


def test_fingerprint_slices_are_independent() -> None:
    ctx = Context(root=REPO)
    spec = next(s for s in load_specs(ctx) if s.name == "sample")
    import dataclasses

    relabelled = dataclasses.replace(spec, drivers_iso=dataclasses.replace(spec.drivers_iso, volume_label="X"))
    for stage in ("stage", "notices", "extract", "fetch"):
        assert spec.fingerprint(stage) == relabelled.fingerprint(stage)
    assert spec.fingerprint("drivers_iso") != relabelled.fingerprint("drivers_iso")
    assert spec.fingerprint("verify") != relabelled.fingerprint("verify")


def test_schema_comment_line_present_in_every_spec() -> None:
    for path in (REPO / "specs").glob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path


def test_non_ascii_description_and_quoted_version(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD + "description: Médias\n")
    assert "/description" in err.render() and "plain ASCII" in err.render()
    err = _load(tmp_path, GOOD.replace("schema_version: 1", 'schema_version: "1"'))
    assert "write 1 without quotes" in err.render()


def test_recursive_alias_is_an_error_not_a_crash(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD + "x: &d [*d]\n")
    assert err.render().startswith("specs/broken.yaml:") and "anchors and aliases are not allowed" in err.render()


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_empty_or_non_mapping_spec(tmp_path: Path, text: str) -> None:
    err = _load(tmp_path, text)
    assert err.render().startswith("specs/broken.yaml:1:1: /")


def test_output_file_names_must_not_collide(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD + "outputs: {drivers_iso: {filename: aero-guest-tools.iso}}\n")
    assert "/outputs/guest_tools/iso_filename" in err.render() and "already used" in err.render()


@pytest.mark.parametrize(("field", "name", "owner"), [
    ("outputs: {fat_disk: {filename: guest-tools}}", "guest-tools", "the Guest Tools folder"),
    ("install_media: {path: w.iso, filename: install.wim}", "install.wim", "the serviced install.wim"),
    ("install_media: {path: w.iso, filename: SERVICING.JSON}", "SERVICING.JSON", "the servicing record"),
])
def test_outputs_never_land_on_a_folder_or_a_file_of_another_output(tmp_path: Path, field: str, name: str,
                                                                    owner: str) -> None:
    err = _load(tmp_path, GOOD + field + "\n")
    assert f"{name!r} is already used by {owner}" in err.render()


@pytest.mark.parametrize("name", ["schema.json", "devices.schema.json"])
def test_shipped_schemas_are_valid_draft_2020_12(name: str) -> None:
    import json

    import jsonschema

    from aero_media.spec.load import shipped_file

    jsonschema.Draft202012Validator.check_schema(json.loads(shipped_file(name).read_text()))


def test_validation_memo_remembers_only_valid_specs_by_content(tmp_path: Path) -> None:
    make_project(tmp_path, with_sample=False)
    (tmp_path / "cache").mkdir()
    ctx = Context(root=tmp_path, cache_override=tmp_path / "cache", remember_valid_specs=True)
    memo = tmp_path / "cache" / "valid-specs.json"
    good = write_spec(tmp_path, "good", GOOD)
    load_spec(good, ctx)
    remembered = memo.read_text()
    assert len(json.loads(remembered)) == 2  # the spec and the device contract
    # A spec that fails the schema never enters the memo, and a valid memo never hides it.
    write_spec(tmp_path, "good", GOOD + "bogus_key: 1\n")
    with pytest.raises(SpecError, match="bogus_key"):
        load_spec(good, ctx)
    assert memo.read_text() == remembered
    # A changed schema is a new key: the same spec is validated again and remembered again.
    write_spec(tmp_path, "good", GOOD)
    schema = tmp_path / "specs" / "schema.json"
    schema.write_text(schema.read_text() + "\n")
    load_spec(good, ctx)
    assert len(json.loads(memo.read_text())) == 3
    # A corrupt memo is only a lost cache.
    memo.write_text("{not json")
    load_spec(good, ctx)
    assert json.loads(memo.read_text())


def test_validation_memo_is_off_outside_the_task_graph(tmp_path: Path) -> None:
    make_project(tmp_path, with_sample=False)
    (tmp_path / "cache").mkdir()
    load_spec(write_spec(tmp_path, "good", GOOD), Context(root=tmp_path, cache_override=tmp_path / "cache"))
    assert list((tmp_path / "cache").iterdir()) == []


def test_license_file_on_a_pack_is_refused_with_the_reason(tmp_path: Path) -> None:
    err = _load(tmp_path, GOOD.replace("  path: prebuilt/sample\n", "  path: prebuilt/sample\n  license_file: L.txt\n"))
    assert "broken.yaml:5:3: /source/license_file: unknown key" in str(err)
    assert "a pack brings its own licences" in str(err)


def test_size_mib_limits_are_the_writers_and_said_in_words(tmp_path: Path) -> None:
    from aero_media.media import vhd

    schema = json.loads((REPO / "specs" / "schema.json").read_text())
    size = schema["properties"]["outputs"]["properties"]["fat_disk"]["properties"]["size_mib"]["oneOf"][1]
    assert size["maximum"] == vhd.MAX_CHS_SECTORS * 512 // (1024 * 1024)  # the largest a VHD geometry describes
    err = _load(tmp_path, GOOD + "outputs: {fat_disk: {size_mib: 200000}}\n")
    assert "200000 is not 'auto' nor a whole number from 34 to 130558" in str(err)


@pytest.mark.parametrize(("extra", "expect"), [
    ("target: {arches: [x86, x64]}\n", "'x64' is not one of x86, amd64; fix: did you mean 'amd64'?"),
    ("signing: {policy: testing}\n",
     "'testing' is not one of none, test, production; fix: did you mean 'test'?"),
    ("checks: {placeholder_catalogs: yes}\n", "yes/on/true is a boolean in YAML, not one of error, allow"),
    ("source:\n\tkind: pack-dir\n", "fix: indent with spaces, not tabs"),
])
def test_messages_a_newcomer_can_act_on(tmp_path: Path, extra: str, expect: str) -> None:
    text = GOOD.split("source:")[0] + extra if extra.startswith("source:") else GOOD + extra
    assert expect in _load(tmp_path, text).render()


@pytest.mark.parametrize(("raw", "two_arch", "one_arch", "arch_isos"), [
    (True, True, True, False),
    (False, False, False, False),
    ("per-arch", False, True, True),
])
def test_winpe_drivers_decides_per_medium_by_its_arches(tmp_path: Path, raw: object, two_arch: bool,
                                                        one_arch: bool, arch_isos: bool) -> None:
    """A medium holding both arches (drivers ISO, FAT disk), one arch (the one-arch ISOs, the serviced ISO)."""
    make_project(tmp_path, with_sample=False)
    data = yaml.safe_load(GOOD)
    data.setdefault("media", {})["winpe_drivers"] = raw
    spec = load_spec(write_spec(tmp_path, "mini", data), Context(root=tmp_path))
    mode = spec.media.winpe_drivers
    assert (mode.carried(2), mode.carried(1), mode.arch_media) == (two_arch, one_arch, arch_isos)
    assert spec.drivers_iso.arch_filename(Arch.AMD64) == "aero-virtio-win7-drivers-amd64.iso"
    assert spec.drivers_iso.arch_label(Arch.X86) == "AERO_VIRTIO_X86"
