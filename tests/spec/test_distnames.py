"""The names a build takes in ``dist/<spec>/`` are one table: the paths use it, and the loader refuses each."""

from __future__ import annotations

from pathlib import Path

import pytest

from aero_media.errors import SpecError
from aero_media.paths import SpecPaths
from aero_media.spec.distnames import REPORT_SUFFIX, DistName
from aero_media.spec.load import load_spec
from aero_media.spec.model import Context
from tests.lib.project import make_project, sample_spec_data, write_spec


def _spec_with(tmp_path: Path, **overrides: object) -> Path:
    """The sample spec, serviced media included (so every folder of dist/<spec>/ is in use)."""
    make_project(tmp_path)
    return write_spec(tmp_path, "sample", sample_spec_data(install_media={"path": "w.iso"}, **overrides))


def test_every_fixed_name_the_paths_take_in_dist_is_in_the_table(tmp_path: Path) -> None:
    spec = load_spec(_spec_with(tmp_path), Context(root=tmp_path))
    p = SpecPaths(spec, Context(root=tmp_path))
    chosen = {spec.drivers_iso.filename, spec.fat_disk.filename, spec.guest_tools.iso_filename,
              spec.guest_tools.zip_filename, p.serviced_iso.name}  # the spec's own names
    taken = [p.install_media_dir, p.servicing_record, *p.serviced_wims, p.guest_tools_dir, p.guest_tools_manifest,
             p.drivers_iso_report, p.fat_disk_report, p.guest_tools_report, *p.legacy_guest_tools]
    for path in taken:
        rel = path.relative_to(p.dist)
        for part in rel.parts:
            assert part in set(DistName) or part in chosen or part.endswith(REPORT_SUFFIX), rel


@pytest.mark.parametrize("name", list(DistName))
def test_the_loader_refuses_every_name_of_the_table(tmp_path: Path, name: DistName) -> None:
    path = _spec_with(tmp_path, outputs={"fat_disk": {"filename": name.value.upper()}})
    with pytest.raises(SpecError) as exc:
        load_spec(path, Context(root=tmp_path))
    assert "/outputs/fat_disk/filename" in exc.value.render() and name.what in exc.value.render()
