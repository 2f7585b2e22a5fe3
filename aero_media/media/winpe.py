"""``$WinPEDriver$/<arch>/<driver>/``: the copy of the drivers Windows 7 Setup finds by itself.

Used by the drivers ISOs and the FAT disk. Before the folder goes onto a medium,
Setup's scan of it is proven, from the INFs, to bind each arch's packages only, for
the arches that medium holds: a one-arch medium (``media.winpe_drivers: per-arch``)
passes by construction, but still goes through the proof so that no medium skips it.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import ValidationError
from ..manifests import FileRecord, StageManifest, staged_files
from ..paths import MediaLayout, SpecPaths, split_staged
from ..spec.model import Spec
from ..win7.setupscan import OfferedInf, scan_problems
from .contents import staged_media
from .files import MediaFile


def winpe_media(spec: Spec, paths: SpecPaths,
                stages: Iterable[StageManifest]) -> tuple[list[MediaFile], list[FileRecord]]:
    """``$WinPEDriver$/<arch>/<driver>/`` entries of ``stages`` (the arches one medium holds), once Setup's scan
    of them is proven to bind per arch only.

    Raises :class:`ValidationError` naming each INF another arch's Setup could take.
    """
    stages = list(stages)
    offered = [OfferedInf(MediaLayout.WINPE.relocate(f.path), split_staged(f.path)[0],
                          paths.staged_file(f.path).read_bytes())
               for f in staged_files(stages) if f.path.lower().endswith(".inf")]
    # The Setups that matter are those of the arches on this medium: the README and the user guide tell
    # users to attach a one-arch medium to that arch's Setup only.
    problems = scan_problems(offered, [m.arch for m in stages], spec.contract)
    if problems:
        raise ValidationError("\n".join(problems),
                              "give each arch's INF models sections for that arch only (NTx86, NTamd64), "
                              f"or {spec.vocabulary.fix('media.winpe_drivers', 'per-arch')}"
                              # A command builds one medium: its flag leaves the folder out instead.
                              + ("" if spec.vocabulary.from_command_line else
                                 " (one drivers ISO per arch carries it; false: none does)"))
    return staged_media(paths, stages, None, MediaLayout.WINPE)
