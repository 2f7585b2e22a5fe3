"""Inputs that lie about what they are: hive headers, hives in the wrong place, WIMs in the wrong role, bare DVDs.

Each lying input is made here from the synthetic Windows 7 pieces (tests/lib/win7image.py)
and goes through the code servicing runs; hivex never sees a hive whose header is wrong.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aero_media.errors import PipelineError, SourceError, ToolError, UsageError
from aero_media.servicing import hive, identity, service, wim
from aero_media.servicing.edits import DriverPackage, HiveFile, ImageKind, Options
from aero_media.servicing.isorepack import read_report
from aero_media.spec.contract import Contract
from aero_media.spec.types import Arch
from tests.lib import win7image
from tests.lib.needs import need_tool
from tests.lib.regf import checksum, empty_hive

GiB = 1024**3


def _lying_hive(path: Path, claimed: int) -> Path:
    """A 12 KiB hive whose header claims ``claimed`` bytes of hive bins (checksum fixed, so only the size lies)."""
    data = bytearray(empty_hive("ROOT", "SYSTEM") + b"\0" * 4096)
    struct.pack_into("<I", data, 0x28, claimed)
    struct.pack_into("<I", data, 0x1FC, checksum(bytes(data[:4096])))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def no_tools(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record (and refuse) every external tool run: the header check must come first."""
    calls: list[Any] = []

    def refuse(tool: str, args: Any, **kw: Any) -> None:
        calls.append((tool, args))
        raise AssertionError(f"{tool} ran on a hive whose header lies")

    monkeypatch.setattr(hive.systools, "run", refuse)
    return calls


@pytest.mark.parametrize("claimed", [GiB, 3 * GiB])
def test_a_header_claiming_gigabytes_is_refused_before_hivex_runs(tmp_path: Path, no_tools: list[Any],
                                                                 claimed: int) -> None:
    lying = _lying_hive(tmp_path / "SYSTEM", claimed)
    for call in (lambda: hive.read_key(lying, "Select"),
                 lambda: hive.apply(lying, [hive.SetValue("Select", hive.RegValue.dword("Current", 1))])):
        with pytest.raises(SourceError) as info:
            call()
        assert str(claimed) in info.value.message and str(tmp_path) not in info.value.render()
    assert no_tools == []
    assert lying.stat().st_size == 12 * 1024


@pytest.mark.parametrize("field", ["checksum", "sequence", "signature", "root"])
def test_other_header_lies_are_refused(tmp_path: Path, no_tools: list[Any], field: str) -> None:
    data = bytearray(empty_hive("ROOT", "SYSTEM"))
    if field == "sequence":
        struct.pack_into("<I", data, 8, 2)  # a hive not closed cleanly: its log was never replayed
    elif field == "signature":
        data[:4] = b"fger"
    elif field == "root":
        struct.pack_into("<I", data, 0x24, 0x10000)
    if field != "checksum":
        struct.pack_into("<I", data, 0x1FC, checksum(bytes(data[:4096])))
    else:
        data[0x1FC] ^= 0xFF
    (tmp_path / "SYSTEM").write_bytes(bytes(data))
    with pytest.raises(SourceError):
        hive.read_key(tmp_path / "SYSTEM", "Select")
    assert no_tools == []


def test_an_honest_header_reads(tmp_path: Path, hivex: None) -> None:
    made = win7image.system_hive(tmp_path / "SYSTEM")
    head = hive.read_header(made)
    assert head.file_name == "SYSTEM"
    assert identity.ROOT_NAMES[head.root_name.lower()] is HiveFile.SYSTEM
    assert hive.current_control_set(made) == "ControlSet001"


def test_a_failed_merge_names_the_hive_not_the_temp_copy(tmp_path: Path, hivex: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    made = win7image.system_hive(tmp_path / "work" / "SYSTEM")
    real = hive.systools.run

    def failing_merge(tool: str, args: list[str], **kw: Any) -> Any:
        if "--merge" in args:
            # What hivexregedit prints when it dies: its file and the Perl line.
            raise ToolError(f"hivexregedit failed with exit status 255: {args[-2]}: hivex_commit: No space left",
                            None)
        return real(tool, args, **kw)

    monkeypatch.setattr(hive.systools, "run", failing_merge)
    with pytest.raises(ToolError) as info:
        hive.apply(made, [hive.SetValue("Select", hive.RegValue.dword("Current", 2))], "install.wim, SYSTEM")
    shown = info.value.render()
    assert str(tmp_path) not in shown and ".tmp" not in shown and "install.wim, SYSTEM" in shown


# -- hives in the wrong place -------------------------------------------------------------

def _image_with(root: Path, *, software: str = "ok") -> tuple[Path, wim.WimImage]:
    """An install.wim of one Windows 7 image whose SOFTWARE hive is replaced as ``software`` says."""
    tree = win7image.windows_tree(root / "tree")
    config = tree / "Windows" / "System32" / "config"
    if software == "system":
        shutil.copyfile(config / "SYSTEM", config / "SOFTWARE")
    elif software == "windows81":
        lie = config / "SOFTWARE.reg"
        lie.write_text("Windows Registry Editor Version 5.00\n\n[\\Microsoft\\Windows NT\\CurrentVersion]\n"
                       '"CurrentVersion"="6.3"\n"CurrentBuild"="9600"\n\n', encoding="ascii")
        subprocess.run(["hivexregedit", "--merge", str(config / "SOFTWARE"), str(lie)], check=True,
                       capture_output=True)
        lie.unlink()
    made = win7image.make_wim(root / "install.wim", [win7image.ImageSpec(
        tree, "Windows 7 Ultimate", win7image.win7_properties("amd64", "Ultimate"))])
    return made, wim.images(made)[0]


def _packages(root: Path, contract: Contract) -> list[DriverPackage]:
    """The boot-critical driver, staged: all servicing needs besides the image."""
    device = contract.boot_critical
    assert device is not None
    folder = root / "viostor"
    folder.mkdir(parents=True)
    (folder / device.sys).write_bytes(b"MZ stand-in\n")
    (folder / "viostor.inf").write_text("; stand-in\n")
    return [DriverPackage("viostor", Arch.AMD64, device.name, folder, "viostor.inf")]


@pytest.mark.parametrize("software", ["system", "windows81"])
def test_a_software_hive_that_lies_is_refused(tmp_path: Path, contract: Contract, hivex: None, software: str) -> None:
    need_tool("wimlib-imagex", "to build the test WIMs")
    made, image = _image_with(tmp_path, software=software)
    work = tmp_path / "work"
    with pytest.raises(SourceError) as info:
        service._service_image(SimpleNamespace(contract=contract), made, image,  # type: ignore[arg-type]
                               ImageKind.INSTALL, work, _packages(tmp_path, contract), Options())
    assert str(work) not in info.value.render()


def test_an_honest_image_is_serviced(tmp_path: Path, contract: Contract, hivex: None) -> None:
    need_tool("wimlib-imagex", "to build the test WIMs")
    made, image = _image_with(tmp_path)
    record = service._service_image(SimpleNamespace(contract=contract), made, image,  # type: ignore[arg-type]
                                    ImageKind.INSTALL, tmp_path / "work", _packages(tmp_path, contract),
                                    Options())
    assert any(r["changed"] for r in record["registry"])


def test_each_hive_is_checked_against_its_role(tmp_path: Path, hivex: None) -> None:
    system = win7image.system_hive(tmp_path / "SYSTEM")
    software = win7image.software_hive(tmp_path / "SOFTWARE")
    store = win7image.bcd_hive(tmp_path / "BCD", default=True)
    identity.check_hive(system, HiveFile.SYSTEM, "SYSTEM")
    identity.check_hive(software, HiveFile.SOFTWARE, "SOFTWARE")
    identity.check_hive(store, HiveFile.MEDIA_BCD_UEFI, "efi\\microsoft\\boot\\bcd")
    for path, role in ((system, HiveFile.SOFTWARE), (software, HiveFile.SYSTEM), (store, HiveFile.SYSTEM),
                       (software, HiveFile.MEDIA_BCD_BIOS)):
        with pytest.raises(SourceError):
            identity.check_hive(path, role, role.value)
    # A SYSTEM hive under SOFTWARE's name still says in its header and root key what it is.
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    shutil.copyfile(system, renamed / "SOFTWARE")
    with pytest.raises(SourceError) as info:
        identity.check_hive(renamed / "SOFTWARE", HiveFile.SOFTWARE, "SOFTWARE")
    assert "SYSTEM" in info.value.message


# -- WIMs in the wrong role ---------------------------------------------------------------

def test_swapped_wims_are_refused(media_tree: win7image.Media) -> None:
    boot, install = wim.images(media_tree.boot_wim), wim.images(media_tree.install_wim)
    identity.check_wim_roles(boot, install)
    for a, b in ((install, boot), (boot, boot), (install, install)):
        with pytest.raises(SourceError):
            identity.check_wim_roles(a, b)


def test_the_same_wim_twice_is_refused(media_tree: win7image.Media, tmp_path: Path) -> None:
    link = tmp_path / "other-name.wim"
    os.link(media_tree.install_wim, link)
    identity.check_two_files(media_tree.boot_wim, media_tree.install_wim, "boot", "install")
    for a, b in ((media_tree.install_wim, media_tree.install_wim), (media_tree.install_wim, link),
                 (media_tree.install_wim, media_tree.install_wim.parent / "." / "install.wim")):
        with pytest.raises(UsageError):
            identity.check_two_files(a, b, "install_media.boot_wim", "install_media.install_wim")


def test_the_service_stage_checks_the_pair_before_touching_anything(media_tree: win7image.Media) -> None:
    media = SimpleNamespace(boot_wim=media_tree.install_wim, install_wim=media_tree.install_wim)
    with pytest.raises(PipelineError):
        service._check_distinct_wims(SimpleNamespace(install_media=media))  # type: ignore[arg-type]


# -- DVDs that cannot boot ----------------------------------------------------------------

def _bare_iso(tree: Path, out: Path) -> Path:
    """The DVD tree as an ISO without any El Torito record."""
    subprocess.run(["xorriso", "-as", "mkisofs", "--norock", "-iso-level", "3", "-J", "-joliet-long", "-quiet",
                    "-o", str(out), str(tree)], check=True, capture_output=True,
                   env=dict(os.environ, SOURCE_DATE_EPOCH=str(win7image.FIXED_EPOCH), TZ="UTC", LC_ALL="C"))
    return out


def test_a_dvd_that_cannot_boot_is_named(media_tree: win7image.Media, media_iso: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    need_tool("xorriso", "to build the test ISO")
    both = (HiveFile.MEDIA_BCD_BIOS, HiveFile.MEDIA_BCD_UEFI)
    good = service.Inputs(media_iso, media_tree.boot_wim, media_tree.install_wim,
                          {HiveFile.MEDIA_BCD_BIOS: media_tree.root / "boot" / "BCD",
                           HiveFile.MEDIA_BCD_UEFI: media_tree.root / "efi" / "microsoft" / "boot" / "bcd"})
    service._check_media(good, Options(testsigning=True))
    assert "warning" not in capsys.readouterr().err

    bare = _bare_iso(media_tree.root, tmp_path / "bare.iso")
    service._check_media(service.Inputs(bare, media_tree.boot_wim, media_tree.install_wim,
                                        {HiveFile.MEDIA_BCD_UEFI: good.media_bcds[HiveFile.MEDIA_BCD_UEFI]}),
                         Options(testsigning=True))
    err = capsys.readouterr().err
    assert "El Torito" in err and "boot\\BCD" in err and "efi\\microsoft\\boot\\bcd" not in err
    assert read_report(bare).boot_entries == ()
    lines = identity.media_warnings("x.iso", 2, both, (), False)
    assert len(lines) == 2 and all("test mode" not in line for line in lines)
    assert any("efi\\microsoft\\boot\\bcd" in line for line in lines)


def test_a_media_store_that_is_not_a_bcd_is_refused(media_tree: win7image.Media, media_iso: Path,
                                                   tmp_path: Path) -> None:
    fake = win7image.system_hive(tmp_path / "bcd")
    inputs = service.Inputs(media_iso, media_tree.boot_wim, media_tree.install_wim, {HiveFile.MEDIA_BCD_UEFI: fake})
    with pytest.raises(SourceError) as info:
        service._check_media(inputs, Options(testsigning=True))
    assert "efi\\microsoft\\boot\\bcd" in info.value.message and str(tmp_path) not in info.value.render()
