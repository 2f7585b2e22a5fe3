"""A fake Aero checkout: the real ci-package.json files and INFs, with stand-in build outputs.

No Aero binary exists here: every file an INF's SourceDisksFiles names becomes a stand-in PE
for its arch (aero_media/devtools/pestub.py), laid out where Aero's msbuild step puts it
(``out/drivers/<driverRel>/{x86,x64}/``, ci/build-drivers.ps1). Files ``additionalFiles`` lists
that the real data does not carry (docs, scripts) become short text stand-ins.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from aero_media.devtools.pestub import build_pe
from aero_media.spec.types import Arch
from aero_media.win7.inf import parse_inf
from aero_media.win7.pe import MACHINE_AMD64, MACHINE_I386

AERO_DIRS = {Arch.X86: "x86", Arch.AMD64: "x64"}


def _selected_infs(driver: Path, doc: dict[str, object]) -> list[Path]:
    listed = doc.get("infFiles")
    if isinstance(listed, list):
        return [driver / str(p) for p in listed]
    return sorted(driver.rglob("*.inf"))


def build_outputs(root: Path, rel: str, arches: tuple[Arch, ...] = (Arch.X86, Arch.AMD64)) -> None:
    """Write stand-in build outputs for ``drivers/<rel>`` as msbuild would, per its INFs and ci-package.json."""
    driver = root / "drivers" / rel
    doc = json.loads((driver / "ci-package.json").read_text())
    wow64 = {str(n).lower() for n in doc.get("wow64Files", [])}
    for arch in arches:
        out = root / "out" / "drivers" / rel / AERO_DIRS[arch]
        out.mkdir(parents=True, exist_ok=True)
        machine = MACHINE_I386 if arch is Arch.X86 else MACHINE_AMD64
        for inf in _selected_infs(driver, doc):
            for name in parse_inf(inf.read_bytes(), inf.name).source_disks_files(arch.inf_arch):
                if arch is Arch.AMD64 and name.lower() in wow64:
                    continue  # the x86 build makes these; ci-package.json's wow64Files carries them over
                (out / name).write_bytes(build_pe(machine, dll=name.lower().endswith(".dll")))
        for rel_tool in doc.get("requiredBuildOutputFiles", []):
            tool = out / str(rel_tool)
            tool.parent.mkdir(parents=True, exist_ok=True)
            tool.write_bytes(build_pe(MACHINE_I386))  # Aero's dbgctl is an x86 PE on both arches
        # What a real build leaves beside its products: never packaged.
        (out / "build.pdb").write_bytes(b"pdb")
        (out / "stale.inf").write_bytes(b"[Version]\r\n")


def fake_aero(root: Path, realdata: Path) -> Path:
    """An Aero checkout at ``root`` from the real data, every opted-in driver built for both arches."""
    src = realdata / "aero"
    shutil.copytree(src / "drivers", root / "drivers")
    for name in ("LICENSE-MIT", "LICENSE-APACHE"):
        shutil.copyfile(src / name, root / name)
    for ci in sorted((root / "drivers").rglob("ci-package.json")):
        driver = ci.parent
        doc = json.loads(ci.read_text())
        for rel in doc.get("additionalFiles", []):
            extra = driver / rel
            if not extra.exists():
                extra.parent.mkdir(parents=True, exist_ok=True)
                extra.write_text(f"; stand-in for Aero's {rel}\n", encoding="utf-8")
        build_outputs(root, driver.relative_to(root / "drivers").as_posix())
    return root
