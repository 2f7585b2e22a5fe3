"""The committed sample pack is exactly what its generator writes, and its stand-ins are valid PEs."""

from __future__ import annotations

from pathlib import Path

import pefile
import pytest

from pipeline.devices import load_contract
from pipeline.errors import SourceError
from pipeline.samplepack import PLACEHOLDER_MAGIC, main, sample_files
from pipeline.tree import DirTree
from tests.lib.project import REPO


def test_committed_pack_matches_generator() -> None:
    assert main(["--check", str(REPO / "prebuilt/sample")]) == 0


def test_check_detects_drift(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    (tmp_path / "win7/x86/viostor/viostor.inf").write_bytes(b"edited")
    assert main(["--check", str(tmp_path)]) == 1


def test_no_binary_is_committed_and_recipes_expand() -> None:
    files = sample_files(load_contract(REPO / "specs/devices.yaml"))
    assert not any(p.endswith((".sys", ".dll")) for p in files)
    entries = {e.path: e for e in DirTree(REPO / "prebuilt/sample").entries()}
    tree = DirTree(REPO / "prebuilt/sample")
    for arch in ("x86", "amd64"):
        e = entries[f"win7/{arch}/viostor/viostor.sys"]
        with tree.open(e) as fp:
            data = fp.read()
        assert len(data) == e.size and str(e.ref).endswith(".sys.pestub")
        assert pefile.PE(data=data, fast_load=True).FILE_HEADER.Machine == (0x14C if arch == "x86" else 0x8664)


def test_malformed_recipe_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.sys.pestub").write_text("machine = arm64\n")
    with pytest.raises(SourceError, match="x.sys.pestub: a stand-in recipe needs 'machine = x86|amd64'"):
        DirTree(tmp_path, "pack").entries()


def test_stand_ins_have_right_machine_and_subsystem() -> None:
    tree = DirTree(REPO / "prebuilt/sample")
    files = {}
    for e in tree.entries():
        if e.kind == "file":
            with tree.open(e) as fp:
                files[e.path] = fp.read()
    for path, data in files.items():
        if path.endswith(".sys"):
            pe = pefile.PE(data=data, fast_load=True)
            want = 0x14C if "/x86/" in path else 0x8664
            assert pe.FILE_HEADER.Machine == want, path
            assert pe.OPTIONAL_HEADER.Subsystem == 1, path
            assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum(), path
        elif path.endswith(".cat"):
            assert data.startswith(PLACEHOLDER_MAGIC)
        elif path.endswith(".inf"):
            text = data.decode("ascii")
            assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
            deco = "NTx86.6.1" if "/x86/" in path else "NTamd64.6.1"
            assert deco in text and "REV_01" in text
