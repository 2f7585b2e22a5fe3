"""Where things go: the layout of build/ and dist/ for one spec, and the driver folders on each medium.

The only module that spells these paths; everything else asks it. The fixed names in
``dist/<spec>/`` come from :class:`aero_media.spec.distnames.DistName` (the spec loader checks
against it). A :class:`Run` bundles one spec's paths with its project, timestamp and hash
memo: it is what the task graph hands every stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath

from .hashmemo import MEMO_NAME, HashMemo
from .spec.distnames import REPORT_SUFFIX, DistName
from .spec.model import Context, Spec
from .spec.types import Arch

GENERATED_CERT = "aero-test"
"""File stem of the generated test certificate and key."""


class MediaLayout(StrEnum):
    """Where a medium keeps one arch's copy of one driver package."""

    STAGED = "win7/{arch}/{driver}"
    """The staging area, the drivers ISO (Setup's Load Driver browses it), the payload pins, and an Aero
    pack's own layout (the ``pack-dir`` source, :data:`aero_media.sources.selection.LAYOUTS`)."""
    GUEST_TOOLS = "drivers/{arch}/{driver}"
    """The Guest Tools media, as Aero's setup.cmd expects."""
    WINPE = "$WinPEDriver$/{arch}/{driver}"
    """Windows 7 Setup searches this folder on every drive by itself (the media ``media.winpe_drivers`` names)."""
    FAT_DISK = "{x64_arch}/{driver}"
    """The FAT driver disk, browsed as x86 and x64 (Aero's names)."""

    def driver_dir(self, arch: Arch | str, driver: str) -> str:
        """The package folder for ``arch`` and ``driver``, '/'-separated, relative to the medium's root."""
        a = Arch(arch)
        return self.value.format(arch=a.value, x64_arch=a.x64_name, driver=driver)

    def relocate(self, staged_path: str) -> str:
        """Map a staged path (``win7/<arch>/<driver>/<file>``) to this layout."""
        arch, driver, rest = split_staged(staged_path)
        return f"{self.driver_dir(arch, driver)}/{rest}"


STAGED_ROOT = MediaLayout.STAGED.value.partition("/")[0]
"""The top folder of the staging area and of an Aero pack (``win7``)."""


def split_staged(staged_path: str) -> tuple[Arch, str, str]:
    """Split ``win7/<arch>/<driver>/<rest>`` into (arch, driver, rest)."""
    parts = PurePosixPath(staged_path).parts
    if len(parts) < 4 or parts[0] != STAGED_ROOT:
        raise ValueError(f"{staged_path!r} is not a staged path ({MediaLayout.STAGED.value}/<file>)")
    return Arch(parts[1]), parts[2], "/".join(parts[3:])


@dataclass(frozen=True)
class SpecPaths:
    """Paths of one spec's build products.

    The media (drivers ISOs, FAT disk, Guest Tools and their verify reports) have two homes, one view each: the
    media stages write and verify them under ``build/<spec>/media/`` (``unpublished``), and the publish stage links
    them into ``dist/<spec>/`` once they are verified and the source is proven. Both views name them alike.
    """

    spec: Spec
    ctx: Context
    unpublished: bool = False

    @property
    def build(self) -> Path:
        return self.ctx.build_dir / self.spec.name

    @property
    def dist(self) -> Path:
        return self.ctx.dist_dir / self.spec.name

    @property
    def media_home(self) -> Path:
        """Where this view keeps the media: ``build/<spec>/media/`` before publishing, ``dist/<spec>/`` after."""
        return self.build / "media" if self.unpublished else self.dist

    @property
    def report(self) -> Path:
        """What the build made and how it was proven (:mod:`aero_media.report`), for machines."""
        return self.build / "report.json"

    # fetch / extract (virtio-win-iso sources)
    @property
    def fetch_record(self) -> Path:
        return self.build / "fetch.json"

    @property
    def proof_record(self) -> Path:
        return self.build / "proof.json"

    @property
    def extract_dir(self) -> Path:
        return self.build / "extract"

    @property
    def provenance(self) -> Path:
        return self.build / "provenance.json"

    # expand (packs of stand-in recipes)
    @property
    def expand_dir(self) -> Path:
        return self.build / "pack"

    @property
    def expand_manifest(self) -> Path:
        return self.build / "pack.json"

    # stage
    @property
    def stage_root(self) -> Path:
        return self.build / "stage"

    def stage_dir(self, arch: Arch) -> Path:
        return self.stage_root / MediaLayout.STAGED.driver_dir(arch, "").rstrip("/")

    def staged_file(self, staged_path: str) -> Path:
        """The file in the staging area that a staged path names."""
        return self.stage_root / staged_path

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
        return self.media_home / self.spec.drivers_iso.filename

    @property
    def drivers_iso_report(self) -> Path:
        return self.media_home / f"{self.spec.drivers_iso.filename}{REPORT_SUFFIX}"

    def arch_drivers_iso(self, arch: Arch) -> Path:
        """The one-arch drivers ISO (``media.winpe_drivers: per-arch``)."""
        return self.media_home / self.spec.drivers_iso.arch_filename(arch)

    def arch_drivers_iso_report(self, arch: Arch) -> Path:
        return self.media_home / f"{self.spec.drivers_iso.arch_filename(arch)}{REPORT_SUFFIX}"

    # test signing (signing: in the spec)
    @property
    def signing_dir(self) -> Path:
        """Where ``signing: {generate: true}`` keeps its throwaway certificate and key (never on any medium)."""
        return self.build / "signing"

    @property
    def signing_cert(self) -> Path | None:
        """The certificate the build signs with, None when the spec does not sign."""
        sig = self.spec.signing.signer
        if sig is None:
            return None
        return self.signing_dir / f"{GENERATED_CERT}.cer" if self.spec.signing_generated else sig.cert

    # serviced Windows 7 install media (install_media: in the spec), published as one set
    @property
    def service_work(self) -> Path:
        """Working copies of the WIMs and hives (gigabytes: kept in build/, never in the temp folder)."""
        return self.build / "service"

    @property
    def install_media_dir(self) -> Path:
        return self.dist / DistName.INSTALL_MEDIA_DIR

    @property
    def serviced_iso(self) -> Path:
        assert self.spec.install_media is not None
        return self.install_media_dir / self.spec.install_media.filename

    @property
    def servicing_record(self) -> Path:
        return self.install_media_dir / DistName.SERVICING_RECORD

    @property
    def serviced_wims(self) -> tuple[Path, Path]:
        """The patched boot.wim and install.wim, published for users who build media another way."""
        return self.install_media_dir / DistName.BOOT_WIM, self.install_media_dir / DistName.INSTALL_WIM

    @property
    def serviced_outputs(self) -> list[Path]:
        """What the service stage publishes: the record, the WIMs (unless left out) and the ISO (from an ISO)."""
        media = self.spec.install_media
        assert media is not None
        return [self.servicing_record, *(self.serviced_wims if media.publish_wims else ()),
                *([self.serviced_iso] if media.iso is not None else [])]

    # FAT driver disk
    @property
    def fat_disk(self) -> Path:
        return self.media_home / self.spec.fat_disk.filename

    @property
    def fat_disk_report(self) -> Path:
        return self.media_home / f"{self.spec.fat_disk.filename}{REPORT_SUFFIX}"

    # Guest Tools: one folder, published as a unit, so the ISO, the zip and the manifest never mix builds.
    @property
    def guest_tools_dir(self) -> Path:
        return self.media_home / DistName.GUEST_TOOLS_DIR

    @property
    def guest_tools_manifest(self) -> Path:
        return self.guest_tools_dir / DistName.MANIFEST

    @property
    def guest_tools_iso(self) -> Path:
        return self.guest_tools_dir / self.spec.guest_tools.iso_filename

    @property
    def guest_tools_zip(self) -> Path:
        return self.guest_tools_dir / self.spec.guest_tools.zip_filename

    @property
    def guest_tools_report(self) -> Path:
        return self.guest_tools_dir / f"{self.spec.guest_tools.iso_filename}{REPORT_SUFFIX}"

    @property
    def media_files(self) -> tuple[Path, ...]:
        """The files the spec's media stages make, in this view: each medium, then its verify report.

        The Guest Tools folder is apart (:attr:`guest_tools_files`): it is published as one set.
        """
        spec = self.spec
        files = [self.drivers_iso, self.drivers_iso_report]
        if spec.media.winpe_drivers.arch_media:
            for arch in spec.arches:
                files += [self.arch_drivers_iso(arch), self.arch_drivers_iso_report(arch)]
        if spec.fat_disk.enabled:
            files += [self.fat_disk, self.fat_disk_report]
        return tuple(files)

    @property
    def retired_media(self) -> tuple[Path, ...]:
        """Media the spec's names could make but its settings no longer do, in this view: a FAT disk (and its
        report) once ``fat_disk.enabled`` is false, one-arch drivers ISOs (and reports) of arches no longer made."""
        spec = self.spec
        # Compared as a case-insensitive file system would (dist/ on FAT, SMB or macOS): never a current output.
        made = {p.name.casefold() for p in self.media_files} | {
            str(n).casefold() for n in (DistName.GUEST_TOOLS_DIR, DistName.INSTALL_MEDIA_DIR)}
        could = [self.media_home / spec.fat_disk.filename, self.media_home / f"{spec.fat_disk.filename}{REPORT_SUFFIX}"]
        for arch in Arch:
            could += [self.arch_drivers_iso(arch), self.arch_drivers_iso_report(arch)]
        return tuple(p for p in could if p.name.casefold() not in made)

    @property
    def guest_tools_files(self) -> tuple[Path, ...]:
        """The Guest Tools set, in this view: the ISO, the zip, manifest.json and the verify report."""
        return self.guest_tools_iso, self.guest_tools_zip, self.guest_tools_manifest, self.guest_tools_report

    @property
    def legacy_guest_tools(self) -> tuple[Path, ...]:
        """Where Guest Tools lay before they had a folder of their own (minus any name a current output uses)."""
        gt = self.spec.guest_tools
        current = {self.drivers_iso, self.drivers_iso_report, self.fat_disk, self.fat_disk_report}
        old = (gt.iso_filename, f"{gt.iso_filename}{REPORT_SUFFIX}", gt.zip_filename, DistName.MANIFEST)
        return tuple(p for p in (self.dist / name for name in old) if p not in current)


@dataclass(frozen=True)
class Run:
    """One spec's build in one project: the spec, the project, the build's timestamp, its paths and hash memo."""

    spec: Spec
    ctx: Context
    epoch: int
    """SOURCE_DATE_EPOCH: every timestamp on the media and in signatures."""
    paths: SpecPaths = field(init=False, compare=False)
    """Where everything is once published: the media in ``dist/<spec>/``."""
    pending: SpecPaths = field(init=False, compare=False)
    """The same paths with the media under ``build/<spec>/media/``: where the media stages write and verify them."""
    memo: HashMemo = field(init=False, compare=False, repr=False)
    """build/'s memo of file hashes: a medium's writer records its hash, verify and doit's checker read it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", SpecPaths(self.spec, self.ctx))
        object.__setattr__(self, "pending", SpecPaths(self.spec, self.ctx, unpublished=True))
        object.__setattr__(self, "memo", HashMemo(self.ctx.build_dir / MEMO_NAME))
