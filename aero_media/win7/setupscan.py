"""What Windows 7 Setup makes of a ``$WinPEDriver$`` tree, decided from the INFs.

Setup (in the windowsPE pass) searches ``\\$WinPEDriver$`` on every drive, recursively,
and hands each INF to PnP, which only takes an INF whose models section applies to
the running arch. A tree that holds both arches is safe exactly when each arch's
Setup can bind nothing but that arch's own packages: every INF under another arch's
folder must offer no models section on this arch. Whether Setup tolerates the other
arch's INFs in some other way is not known, so this is proven, not assumed
(docs/windows7.md#winpedriver, after Microsoft KB2686316).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..spec.types import Arch
from .inf import parse_inf


@dataclass(frozen=True)
class OfferedInf:
    """An INF in the tree Setup scans: where it is, which arch's folder holds it, its bytes."""

    path: str
    arch: Arch
    data: bytes


def scan_problems(infs: Iterable[OfferedInf], setups: Iterable[Arch]) -> list[str]:
    """For each Setup arch, the INFs of other arches it could bind, each with the reason; empty when safe."""
    offered = list(infs)
    problems: list[str] = []
    for setup in setups:
        for inf in offered:
            if inf.arch is setup:
                continue  # this arch's own package, validated for it (device, service, signing) by staging
            chosen = [c for c in parse_inf(inf.data, inf.path).models(setup.inf_arch).chosen if c.exists and c.models]
            if not chosen:
                continue
            c = chosen[0]
            why = (f"its models section [{c.section}] is undecorated, which 32-bit Windows uses"
                   if c.decoration is None else
                   f"its models section [{c.section}] (decoration {c.decoration.text}) applies to {setup.value}")
            problems.append(f"{inf.path}: an {setup.value} Windows 7 Setup scanning $WinPEDriver$ could install "
                            f"this {inf.arch.value} INF: {why}")
    return problems
