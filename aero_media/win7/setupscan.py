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

from ..spec.contract import Contract
from ..spec.types import Arch
from .inf import parse_inf
from .pnp import transitional_ids, windows_ids


@dataclass(frozen=True)
class OfferedInf:
    """An INF in the tree Setup scans: where it is, which arch's folder holds it, its bytes."""

    path: str
    arch: Arch
    data: bytes


def reported_ids(contract: Contract) -> dict[str, str]:
    """Every hardware and compatible ID the contract's devices report to Windows 7 (upper-case), with the device."""
    out: dict[str, str] = {}
    for name, dev in sorted(contract.devices.items()):
        for sub in dev.subsystems:
            for hwid in windows_ids(dev, sub):
                out.setdefault(hwid.upper(), name)
        for hwid in transitional_ids(dev):
            out.setdefault(hwid.upper(), name)
    return out


def scan_problems(infs: Iterable[OfferedInf], setups: Iterable[Arch], contract: Contract | None = None) -> list[str]:
    """For each Setup arch, the INFs of other arches it could bind, each with the reason; empty when safe.

    With ``contract`` (the spec's), an INF matters only when its models section for that arch lists an
    ID one of the contract's devices reports: the machine Setup runs on is the one the contract describes.
    Without it, any models section that applies to the arch is a problem.
    """
    offered = list(infs)
    problems: list[str] = []
    reported = reported_ids(contract) if contract is not None else None
    for setup in setups:
        for inf in offered:
            if inf.arch is setup:
                continue  # this arch's own package, validated for it (device, service, signing) by staging
            chosen = [c for c in parse_inf(inf.data, inf.path).models(setup.inf_arch).chosen if c.exists and c.models]
            binds = ""
            if reported is not None:
                hits = [(hwid, reported[hwid.upper()]) for c in chosen for m in c.models for hwid in m.ids
                        if hwid.upper() in reported]
                if not hits:
                    continue  # lists no ID a contract device reports: nothing on this machine to bind
                binds = f", and it binds {hits[0][1]} ({hits[0][0]})"
            if not chosen:
                continue
            c = chosen[0]
            why = (f"its models section [{c.section}] is undecorated, which 32-bit Windows uses"
                   if c.decoration is None else
                   f"its models section [{c.section}] (decoration {c.decoration.text}) applies to {setup.value}")
            why += binds
            problems.append(f"{inf.path}: an {setup.value} Windows 7 Setup scanning $WinPEDriver$ could install "
                            f"this {inf.arch.value} INF: {why}")
    return problems
