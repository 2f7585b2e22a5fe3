"""Payload pins (``source.expect``): the sha256 each staged file must have."""

from __future__ import annotations

from .. import log
from ..manifests import StagedFile
from ..paths import split_staged
from ..spec.model import Spec
from ..spec.types import Arch


def check_expect(spec: Spec, arch: Arch, files: dict[str, StagedFile]) -> list[str]:
    """Compare staged files against the spec's payload pins for ``arch``; return problems."""
    problems = []
    staged_drivers = {split_staged(p)[1] for p in files}
    for path, want in sorted(spec.source.expect.items()):
        pin_arch, drv, _rest = split_staged(path)
        if pin_arch is not arch:
            continue
        got = files.get(path)
        if got is None:
            if drv not in staged_drivers and not spec.driver(drv).required:
                log.warn(f"{spec.display}: source.expect pins {path}, but optional driver {drv!r} was not staged")
                continue
            problems.append(f"source.expect pins {path}, but no such file was staged")
        elif got.sha256 != want:
            problems.append(f"{path}: sha256 {got.sha256} does not match the pin {want} in source.expect")
    if spec.source.expect and spec.source.sha256 is None:
        # Without a whole-ISO pin, the per-file pins are the only proof: all or nothing.
        unpinned = sorted(p for p in files if p not in spec.source.expect)
        if unpinned:
            problems.append(f"source.expect pins some files but not {', '.join(unpinned)}; without source.sha256 "
                            "every staged file needs a pin (or an entry in source.exclude)")
    return problems
