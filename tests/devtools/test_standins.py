"""Expanding a pack of stand-in recipes into build/: valid PEs, everything else copied, hostile input refused."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pefile
import pytest

from aero_media.devtools.standins import expand_tree
from aero_media.errors import SourceError, UnsafePathError
from aero_media.sources.tree import DirTree
from aero_media.win7.catalog import PLACEHOLDER_MAGIC
from tests.lib.project import REPO


def test_sample_pack_expands_to_valid_stand_ins(tmp_path: Path) -> None:
    records = expand_tree(DirTree(REPO / "prebuilt/sample", "prebuilt/sample"), tmp_path / "pack")
    paths = {r.path for r in records}
    assert "THIRD_PARTY_NOTICES.md" in paths and not any(p.endswith(".pestub") for p in paths)
    for path in sorted(paths):
        data = (tmp_path / "pack" / path).read_bytes()
        if path.endswith(".sys"):
            pe = pefile.PE(data=data, fast_load=True)
            assert pe.FILE_HEADER.Machine == (0x14C if "/x86/" in path else 0x8664), path
            assert pe.OPTIONAL_HEADER.Subsystem == 1, path
            assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum(), path
        elif path.endswith(".cat"):
            assert data.startswith(PLACEHOLDER_MAGIC)
        elif path.endswith(".inf"):
            text = data.decode("ascii")
            assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
            assert ("NTx86.6.1" if "/x86/" in path else "NTamd64.6.1") in text
    assert {"win7/x86/viostor/viostor.sys", "win7/amd64/netkvm/netkvm.sys"} <= paths


def test_expand_is_reproducible_and_replaces_the_old_tree(tmp_path: Path) -> None:
    src = DirTree(REPO / "prebuilt/sample")
    a = expand_tree(src, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "stale.txt").write_text("old")
    b = expand_tree(src, tmp_path / "b")
    assert a == b and not (tmp_path / "b" / "stale.txt").exists()


def test_malformed_recipe_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.sys.pestub").write_text("machine = arm64\n")
    with pytest.raises(SourceError, match=re.escape("x.sys.pestub: a stand-in recipe needs 'machine = x86|amd64'")):
        expand_tree(DirTree(tmp_path / "src", "pack"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_symlink_in_a_pack_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    os.symlink("/etc/passwd", tmp_path / "src" / "x.inf")
    with pytest.raises(UnsafePathError, match="symlink"):
        expand_tree(DirTree(tmp_path / "src", "pack"), tmp_path / "out")
