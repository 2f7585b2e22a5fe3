"""Hostile specs: every one fails fast with one positioned line, never a hang, a crash or a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aero_media.errors import SpecError
from aero_media.spec.load import load_spec
from aero_media.spec.model import Context
from aero_media.spec.yamldoc import MAX_BYTES, MAX_DEPTH
from tests.lib.doitproc import error_lines, no_traceback
from tests.lib.project import REPO, make_project, write_spec

GOOD = """\
schema_version: 1
source: {kind: pack-dir, path: prebuilt/sample}
drivers:
  - {name: viostor, device: virtio-blk, required: true}
"""

# The classic "billion laughs": ~300 bytes that would expand to 10**9 values.
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))


def _error(tmp_path: Path, text: str | bytes) -> str:
    make_project(tmp_path, with_sample=False)
    path = write_spec(tmp_path, "evil", "")
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(SpecError) as exc:
        load_spec(path, Context(root=tmp_path))
    message = exc.value.render()
    assert message.startswith("specs/evil.yaml:"), message
    assert "fix:" in message
    return message


@pytest.mark.parametrize(("text", "expect"), [
    (BOMB, "anchors and aliases are not allowed"),
    (GOOD + "x: !foo bar\n", "tag !foo is not allowed"),
    (GOOD + "x: !!python/object:os.system ls\n", "is not allowed"),
    (GOOD + "x: !!binary aGVsbG8=\n", "tag:yaml.org,2002:binary is not allowed"),
    (GOOD + "x: !!set {a, b}\n", "is not allowed"),
    (GOOD + "x:\n  <<: {kind: iso}\n", "merge keys"),
    # Just past our bound, far below any YAML library's own limit: our check, our words.
    (GOOD + "x: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n", f"more than {MAX_DEPTH} levels"),
    (GOOD + "x: " + "9" * 5000 + "\n", "a number of 5000 characters"),
    (GOOD + "x: " + "1." + "9" * 5000 + "\n", "a number of 5002 characters"),
    (GOOD + "x: &r [*r]\n", "anchors and aliases are not allowed"),
    (GOOD + "x: *nowhere\n", "anchors and aliases are not allowed"),
    (GOOD + "x: &plain 1\n", "anchors and aliases are not allowed"),
    (GOOD + "---\nname: two\n", "more than one YAML document"),
    (GOOD + "? [a, b]\n: c\n", "keys must be plain names"),
    (GOOD + "description: " + "x" * 5000 + "\n", "5000 characters long, more than 500"),
])
def test_hostile_yaml_gives_one_line(tmp_path: Path, text: str, expect: str) -> None:
    message = _error(tmp_path, text)
    assert expect in message
    assert len(message) < 400 and "\n" not in message.strip(), message


# Nesting far past our bound. Which layer stops it first is the YAML library's business (libyaml
# 0.2.6, bundled from PyYAML 6.0.4 on, refuses deep nesting while scanning, with its own words; older
# ones leave it to our bound), so these cases assert the behaviour, never the wording.
DEEP = {
    "flow": GOOD + "x: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "block": GOOD + "x:\n" + "- " * 5000 + "y\n",
}


@pytest.mark.parametrize("text", DEEP.values(), ids=DEEP.keys())
def test_deep_nesting_gives_one_line(tmp_path: Path, text: str) -> None:
    message = _error(tmp_path, text)
    assert len(message) < 400 and "\n" not in message.strip(), message


@pytest.mark.parametrize("text", DEEP.values(), ids=DEEP.keys())
def test_deep_nesting_is_one_warning_in_doit_list(tmp_path: Path, text: str) -> None:
    """One ``warning:`` line naming the file, no traceback (no RecursionError, whatever the parser)."""
    make_project(tmp_path)
    write_spec(tmp_path, "deep", text)
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), "--dir", str(tmp_path), "list"],
                          capture_output=True, text=True, timeout=60)
    no_traceback(proc)
    # One broken spec stops no other: the listing goes on, and the file is named in one warning.
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert len(lines) == 1 and "specs/deep.yaml:" in lines[0], proc.stderr
    assert error_lines(proc.stderr) == []


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD + "description: '" + "x" * MAX_BYTES + "'\n")
    assert "too large for a spec" in message


def test_plain_dates_stay_text(tmp_path: Path) -> None:
    make_project(tmp_path, with_sample=False)
    spec = load_spec(write_spec(tmp_path, "ok", GOOD + "description: 2025-01-01\n"), Context(root=tmp_path))
    assert spec.description == "2025-01-01"


@pytest.mark.parametrize(("field", "value", "expect"), [
    ("drivers", [{"name": "con", "device": "virtio-blk", "required": True}], "reserved device name"),
    ("outputs", {"drivers_iso": {"filename": "CON"}}, "reserved device name"),
    ("outputs", {"drivers_iso": {"filename": "x.iso."}}, "ends with a dot"),
    ("outputs", {"guest_tools": {"zip_filename": "aux.zip"}}, "reserved device name"),
    ("outputs", {"drivers_iso": {"volume_label": "COM1"}}, "reserved device name"),
])
def test_names_windows_cannot_use(tmp_path: Path, field: str, value: object, expect: str) -> None:
    import yaml

    data = yaml.safe_load(GOOD)
    data[field] = value
    message = _error(tmp_path, yaml.safe_dump(data))
    assert expect in message, message


@pytest.mark.parametrize(("raw", "expect"), [
    ("/", "file system root"),
    ("~", "home folder"),
    (".", "project folder or a folder above it"),
    ("..", "project folder or a folder above it"),
    ("specs/cache", "inside specs/"),
    ("dist", "inside dist/"),
])
def test_cache_dir_must_be_a_folder_of_its_own(tmp_path: Path, raw: str, expect: str) -> None:
    message = _error(tmp_path, GOOD + f"cache_dir: '{raw}'\n")
    assert "/cache_dir" in message and expect in message, message


def test_a_bomb_in_specs_is_named_fast(tmp_path: Path) -> None:
    """The denial of service: one bad file in specs/ used to hang every command."""
    make_project(tmp_path)
    write_spec(tmp_path, "bomb", BOMB)
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), "--dir", str(tmp_path), "list"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr  # listed without it, and named in a warning
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "specs/bomb.yaml:" in proc.stderr and "anchors and aliases are not allowed" in proc.stderr


@pytest.mark.parametrize("value", ["\u0661\u0662\u0663", "1e9", "9" * 5000])
def test_source_date_epoch_must_be_ascii_digits(tmp_path: Path, value: str) -> None:
    make_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "AERO_MEDIA_LOCK"}
    env["SOURCE_DATE_EPOCH"] = value
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "SOURCE_DATE_EPOCH=" in lines[0] and "fix:" in lines[0] and len(lines[0]) < 300


@pytest.mark.parametrize(("block", "pointer"), [
    ("install_media: {path: build/evil/service/win7.iso}\n", "/install_media/path"),
    ("install_media: {path: dist/evil/install-media/aero-win7-serviced.iso}\n", "/install_media/path"),
    ("install_media: {boot_wim: build/boot.wim, install_wim: wims/install.wim}\n", "/install_media/boot_wim"),
    ("install_media: {boot_wim: wims/boot.wim, install_wim: dist/install.wim}\n", "/install_media/install_wim"),
    ("signing: {mode: test, cert: dist/evil/signing.cer, key_env: KEY}\n", "/signing/cert"),
    ("signing: {mode: test, cert: wims/a.cer, key: build/a.key.pem}\n", "/signing/key"),
    ("signing: {certs: [wims/a.cer, build/evil/a.cer]}\n", "/signing/certs/1"),
])
def test_inputs_inside_build_or_dist_are_refused_at_load(tmp_path: Path, block: str, pointer: str) -> None:
    """A build empties build/<spec>/service/ and swaps dist/<spec>/ folders: an input in there would be deleted."""
    message = _error(tmp_path, GOOD + block)
    assert pointer in message and ("inside build/" in message or "inside dist/" in message), message
    assert message.count("\n") == 0, message


def test_source_path_inside_build_and_a_symlink_into_dist_are_refused(tmp_path: Path) -> None:
    make_project(tmp_path, with_sample=False)
    (tmp_path / "dist/evil").mkdir(parents=True)
    (tmp_path / "dist/evil/win7.iso").write_bytes(b"the user's only copy")
    (tmp_path / "link.iso").symlink_to(tmp_path / "dist/evil/win7.iso")
    spec = GOOD.replace("prebuilt/sample", "build/evil/stage") + "install_media: {path: link.iso}\n"
    message = _error(tmp_path, spec)
    assert "/source/path" in message and "/install_media/path" in message and "inside dist/" in message, message
    assert (tmp_path / "dist/evil/win7.iso").read_bytes() == b"the user's only copy"
