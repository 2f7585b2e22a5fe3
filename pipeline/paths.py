"""Where each stage of one spec reads and writes: the only place that knows the layout of build/ and dist/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .spec import Arch, Context, Spec


@dataclass(frozen=True)
class SpecPaths:
    """Paths of one spec's build products."""

    spec: Spec
    ctx: Context

    @property
    def build(self) -> Path:
        return self.ctx.build_dir / self.spec.name

    @property
    def dist(self) -> Path:
        return self.ctx.dist_dir / self.spec.name

    # fetch / extract (virtio-win-iso sources)
    @property
    def fetch_record(self) -> Path:
        return self.build / "fetch.json"

    @property
    def fetch_stat(self) -> Path:
        return self.build / "fetch.stat.json"

    @property
    def extract_dir(self) -> Path:
        return self.build / "extract"

    @property
    def provenance(self) -> Path:
        return self.build / "provenance.json"

    # stage
    @property
    def stage_root(self) -> Path:
        return self.build / "stage"

    def stage_dir(self, arch: Arch) -> Path:
        return self.stage_root / "win7" / arch.value

    def stage_manifest(self, arch: Arch) -> Path:
        return self.stage_root / f"{arch.value}.json"

    # notices
    @property
    def notices_dir(self) -> Path:
        return self.build / "notices"

    @property
    def notices_manifest(self) -> Path:
        return self.build / "notices.json"

    # drivers ISO
    @property
    def drivers_iso(self) -> Path:
        return self.dist / self.spec.drivers_iso.filename

    @property
    def drivers_iso_report(self) -> Path:
        return self.dist / f"{self.spec.drivers_iso.filename}.verify.json"

    # Guest Tools
    @property
    def guest_tools_manifest(self) -> Path:
        return self.dist / "manifest.json"

    @property
    def guest_tools_iso(self) -> Path:
        return self.dist / self.spec.guest_tools.iso_filename

    @property
    def guest_tools_zip(self) -> Path:
        return self.dist / self.spec.guest_tools.zip_filename

    @property
    def guest_tools_report(self) -> Path:
        return self.dist / f"{self.spec.guest_tools.iso_filename}.verify.json"
