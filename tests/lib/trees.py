"""Small driver trees on disk for staging tests (Aero pack and upstream layouts)."""

from __future__ import annotations

from pathlib import Path

from aero_media.devtools.pestub import build_pe
from aero_media.devtools.samplepack import placeholder_catalog, sample_inf
from aero_media.media.notices import NOTICES_NAME
from aero_media.paths import MediaLayout
from aero_media.spec.load import load_contract
from aero_media.win7.pe import MACHINE_AMD64, MACHINE_I386

REPO = Path(__file__).resolve().parents[2]

NOTICES = b"# notices\n\nTest pack.\n"


DEVICES = {"viostor": "virtio-blk", "netkvm": "virtio-net", "vioinput": "virtio-input", "viosnd": "virtio-snd"}


def inf_for(driver: str, arch: str) -> bytes:
    """A well-formed INF for ``driver`` binding the contract's device (as in the sample pack)."""
    contract = load_contract(REPO / "specs" / "devices.yaml")
    return sample_inf(driver, contract.device(DEVICES[driver]), arch)


def package(root: Path, driver: str, arch: str, *, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """Write one package folder's files into ``root``; return {name: bytes}."""
    machine = MACHINE_I386 if arch in ("x86", "i386") else MACHINE_AMD64
    files = {f"{driver}.inf": inf_for(driver, "x86" if machine == MACHINE_I386 else "amd64"),
             f"{driver}.sys": build_pe(machine), f"{driver}.cat": placeholder_catalog(driver, arch)}
    files.update(extra or {})
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def make_pack(root: Path, drivers: dict[str, tuple[str, ...]], notices: bool = True) -> Path:
    """Aero layout: ``win7/<arch>/<driver>/``; ``drivers`` maps driver -> arches present."""
    for driver, arches in drivers.items():
        for arch in arches:
            package(root / MediaLayout.STAGED.driver_dir(arch, driver), driver, arch)
    if notices:
        (root / NOTICES_NAME).write_bytes(NOTICES)
    return root
