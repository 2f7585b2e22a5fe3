"""The words the drivers ISO's README.txt and the FAT disk's INSTALL.TXT share: one owner for both."""

from __future__ import annotations

from ..manifests import MediaPackage, MediaProvenance, StageManifest
from ..paths import MediaLayout
from ..spec.model import Spec
from ..spec.types import Arch
from .certs import ROOT_CERT_NAME

_WINPE_SECTION = """\
INSTALLING WINDOWS 7 ONTO A VIRTIO DISK, AUTOMATICALLY

  Attach this {noun} ({how}) before you boot Setup. Setup searches every drive
  for a $WinPEDriver$ folder and loads the drivers in it that match a device,
  so at "Where do you want to install Windows?" the virtio disk is already
  listed, and the drivers are installed into the new Windows as well. A 32-bit
  Setup takes only the x86 drivers and a 64-bit Setup only the amd64 ones: the
  build checks that from the INFs.

"""
_WINPE_ONE_ARCH_SECTION = """\
INSTALLING WINDOWS 7 ONTO A VIRTIO DISK, AUTOMATICALLY

  This {noun} holds the drivers for {title} only: attach it ({how})
  to a {title} Setup, before you boot it, and to no other. Setup
  searches every drive for a $WinPEDriver$ folder and loads the drivers in it
  that match a device, so at "Where do you want to install Windows?" the virtio
  disk is already listed, and the drivers are installed into the new Windows as
  well. The drivers' INFs name both arches, so a Setup of the other arch would
  take these drivers too: never attach this {noun} there.

"""
_WINPE_ELSEWHERE_SECTION = """\
INSTALLING WINDOWS 7 ONTO A VIRTIO DISK, AUTOMATICALLY

  This {noun} holds both arches and so no $WinPEDriver$ folder: the drivers' INFs
  name both arches, and a Setup would take the other arch's drivers from it.
  For Setup to find the drivers by itself, attach instead the drivers ISO of
  your Setup's arch, and only that one:
{arch_isos}
"""
_TESTSIGN_SECTION = """\
THESE DRIVERS ARE TEST-SIGNED: TRUST THE CERTIFICATE FIRST

  They are signed with a test certificate, {cert} at the root of this {noun}
  (certs\\ holds it too). Windows 7 installs them only once it trusts that
  certificate, and 64-bit Windows 7 loads them only in test mode. From an
  elevated command prompt, where {drive} is this {noun}:

    certutil -addstore -f Root {drive}\\{cert}
    certutil -addstore -f TrustedPublisher {drive}\\{cert}
    bcdedit /set testsigning on

  Then reboot ("Test Mode" shows on the desktop) and install the drivers as
  below. (Or with certmgr.msc: import {cert} into both "Trusted Root
  Certification Authorities" and "Trusted Publishers".) To leave test mode
  later: bcdedit /set testsigning off, and reboot.

"""
_WINPE_LINE = "  $WinPEDriver$\\<arch>\\  the same drivers, where Windows 7 Setup finds them by itself\n"


def backslashes(path: str) -> str:
    """A media path as Windows writes it."""
    return path.replace("/", "\\")


def media_packages(stages: list[StageManifest], layout: MediaLayout = MediaLayout.STAGED) -> list[MediaPackage]:
    """Each staged package as a medium lists it: its folder there and its INF (original case)."""
    out = []
    for m in stages:
        for p in m.packages:
            folder = layout.driver_dir(m.arch, p.driver)
            inf = layout.relocate(p.inf)
            out.append(MediaPackage(driver=p.driver, device=p.device, arch=m.arch, required=p.required,
                                    dir=folder, inf=inf))
    return out


_TITLES = {Arch.X86: "32-bit Windows 7", Arch.AMD64: "64-bit Windows 7"}


def _winpe_section(spec: Spec, arches: set[Arch], *, noun: str, how: str) -> str:
    """What the medium says about ``$WinPEDriver$``: how Setup finds it, or which medium carries it instead."""
    mode = spec.media.winpe_drivers
    if not mode.carried(len(arches)):
        if not mode.arch_media:
            return ""
        names = "".join(f"    {_TITLES[a]}:  {spec.drivers_iso.arch_filename(a)}\n" for a in spec.arches)
        return _WINPE_ELSEWHERE_SECTION.format(noun=noun, arch_isos=names)
    if mode.arch_media:
        return _WINPE_ONE_ARCH_SECTION.format(noun=noun, how=how, title=_TITLES[next(iter(arches))])
    return _WINPE_SECTION.format(noun=noun, how=how)


def shared_values(spec: Spec, packages: list[MediaPackage], prov: MediaProvenance, *, noun: str,
                  how: str, drive: str) -> dict[str, str]:
    """Template values for a medium's instructions; ``noun`` is "disc" or "disk", ``how`` how to attach it,
    ``drive`` the letter the examples give it. Whether it carries ``$WinPEDriver$`` follows from the arches of
    ``packages`` (``media.winpe_drivers``)."""
    src = prov.source
    source_line = src.url or src.path or spec.source.kind.value
    if src.version:
        source_line += f" (virtio-win {src.version})"
    rows = ["  driver     arch    required  folder"]
    for p in packages:
        rows.append(f"  {p.driver:<10} {p.arch.value:<7} {'yes' if p.required else 'no':<9} \\{backslashes(p.dir)}\\")
    pnputil: list[str] = []
    for arch, title in _TITLES.items():
        infs = [p.inf for p in packages if p.arch == arch]
        if infs:
            pnputil.append(f"  {title}:")
            pnputil += [f"    pnputil -i -a {drive}\\{backslashes(inf)}" for inf in infs]
    arches = {p.arch for p in packages}
    winpe = spec.media.winpe_drivers.carried(len(arches))
    # Under policy test the medium carries the certificate at its root (media.certs.ROOT_CERT_NAME).
    testsign = (_TESTSIGN_SECTION.format(cert=ROOT_CERT_NAME, noun=noun, drive=drive)
                if spec.signing.policy.certs_required else "")
    return {
        "TESTSIGN_SECTION": testsign,
        "WINPE_LINE": _WINPE_LINE if winpe else "",
        "WINPE_SECTION": _winpe_section(spec, arches, noun=noun, how=how),
        "DESCRIPTION": spec.description or spec.name,
        "SOURCE_LINE": source_line,
        "SPEC": spec.name,
        "DRIVERS": ", ".join(sorted({p.driver for p in packages})),
        "DRIVER_TABLE": "\n".join(rows) + "\n",
        "PNPUTIL_LINES": "\n".join(pnputil),
    }
