"""A pack laid out without the win7/ prefix (x86/<driver>/, amd64/ or x64/: Aero's FAT image layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aero_media.errors import SourceError
from aero_media.media.notices import NOTICES_NAME
from aero_media.paths import Run
from aero_media.spec.load import load_spec
from aero_media.spec.model import Context, Spec
from aero_media.spec.types import Arch
from aero_media.stage.staging import stage_arch
from tests.lib.project import make_project, write_spec
from tests.lib.trees import NOTICES, package

DRIVERS = [{"name": "viostor", "device": "virtio-blk", "required": True},
           {"name": "netkvm", "device": "virtio-net", "required": False}]


def spec_for(root: Path) -> Spec:
    make_project(root, with_sample=False)
    data: dict[str, Any] = {"schema_version": 1, "name": "t", "source": {"kind": "pack-dir", "path": "pack"},
                            "drivers": DRIVERS, "checks": {"placeholder_catalogs": "allow"}}
    return load_spec(write_spec(root, "t", data), Context(root=root))


@pytest.mark.parametrize("amd64_folder", ["amd64", "x64"])
def test_plain_pack_is_staged_in_our_layout(tmp_path: Path, amd64_folder: str) -> None:
    pack = tmp_path / "pack"
    package(pack / "x86/viostor", "viostor", "x86")
    package(pack / amd64_folder / "viostor", "viostor", "amd64")
    (pack / NOTICES_NAME).write_bytes(NOTICES)
    run = Run(spec_for(tmp_path), Context(root=tmp_path), 315532800)
    for arch, folder in ((Arch.X86, "x86"), (Arch.AMD64, amd64_folder)):
        m = stage_arch(run, arch).to_json()
        files = {f["path"]: f["source_path"] for f in m["files"]}
        assert files[f"win7/{arch.value}/viostor/viostor.sys"] == f"{folder}/viostor/viostor.sys"


def test_missing_driver_shows_both_layouts(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    package(pack / "x86/netkvm", "netkvm", "x86")
    (pack / NOTICES_NAME).write_bytes(NOTICES)
    with pytest.raises(SourceError) as exc:
        stage_arch(Run(spec_for(tmp_path), Context(root=tmp_path), 315532800), Arch.X86)
    looked = exc.value.render()
    assert "win7/x86/viostor/" in looked and " x86/viostor/" in looked
