"""``$WinPEDriver$/<arch>/<driver>/``: the copy of the drivers Windows 7 Setup finds by itself.

Used by the drivers ISO and the FAT disk. Before the folder goes onto a medium,
Setup's scan of it is proven, from the INFs, to bind each arch's packages only.
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
    """``$WinPEDriver$/<arch>/<driver>/`` entries, once Setup's scan of them is proven to bind per arch only.

    Raises :class:`ValidationError` naming each INF another arch's Setup could take.
    """
    stages = list(stages)
    offered = [OfferedInf(MediaLayout.WINPE.relocate(f.path), split_staged(f.path)[0],
                          paths.staged_file(f.path).read_bytes())
               for f in staged_files(stages) if f.path.lower().endswith(".inf")]
    problems = scan_problems(offered, spec.arches, spec.contract)
    if problems:
        raise ValidationError("\n".join(problems),
                              "give each arch's INF models sections for that arch only (NTx86, NTamd64), "
                              f"or {spec.vocabulary.fix('media.winpe_drivers', 'false')}")
    return staged_media(paths, stages, None, MediaLayout.WINPE)
