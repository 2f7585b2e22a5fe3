"""The wimlib-imagex wrapper: image metadata, the Windows 7 check, extract and update on synthetic WIMs.

Oracles: the WIMs are captured by :mod:`tests.lib.win7image` with properties
set through ``wimlib-imagex info --image-property``; updates are checked by
extracting again and by ``wimlib-imagex verify``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

import pytest

from aero_media import systools
from aero_media.errors import DiskError, SourceError, ToolError
from aero_media.servicing import wim
from aero_media.servicing.wim import Add, Delete, WimImage
from aero_media.spec.types import Arch
from tests.lib import win7image
from tests.lib.needs import need_tool

CONFIG = "Windows/System32/config"


@pytest.fixture(autouse=True)
def _wimlib() -> None:
    need_tool("wimlib-imagex", "to read and write WIM images")


def test_boot_wim_lists_winpe_and_the_setup_boot_image(media_tree: win7image.Media) -> None:
    found = wim.images(media_tree.boot_wim)
    assert [(i.index, i.name, i.boot) for i in found] == [
        (1, "Microsoft Windows PE (x64)", False), (2, "Microsoft Windows Setup (x64)", True)]
    assert all(i.arch is Arch.AMD64 and i.arch_code == 9 and i.version == "6.1.7601" and i.sp_build == 17514
               for i in found)
    assert wim.boot_index(media_tree.boot_wim) == 2


def test_install_wim_lists_each_edition(media_tree: win7image.Media) -> None:
    found = wim.images(media_tree.install_wim)
    assert [(i.index, i.name, i.edition, i.boot) for i in found] == [
        (1, "Windows 7 HomePremium", "HomePremium", False), (2, "Windows 7 Ultimate", "Ultimate", False)]
    wim.check_windows7(found, Arch.AMD64)


def test_the_wrong_arch_is_refused_in_one_line(media_tree: win7image.Media) -> None:
    with pytest.raises(SourceError) as info:
        wim.check_windows7(wim.images(media_tree.install_wim), Arch.X86, "sources/install.wim")
    text = info.value.render()
    assert "\n" not in text
    assert "image 1 (Windows 7 HomePremium) is amd64, not x86" in text and "Windows 7 x86 ISO" in text


def test_a_windows_8_wim_and_a_wim_without_windows_metadata_are_refused(tmp_path: Path) -> None:
    need_tool("hivexregedit", "to build the test hives")
    tree = win7image.windows_tree(tmp_path / "tree")
    win8 = win7image.make_wim(tmp_path / "win8.wim", [
        win7image.ImageSpec(tree, "Windows 8 Pro", win7image.win7_properties("amd64", "Professional", 9200,
                                                                              minor=2))])
    with pytest.raises(SourceError, match=r"image 1 \(Windows 8 Pro\) is Windows 6\.2\.9200, not 6\.1"):
        wim.check_windows7(wim.images(win8), Arch.AMD64)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "readme.txt").write_text("not Windows")
    bare = win7image.make_wim(tmp_path / "bare.wim", [win7image.ImageSpec(plain, "data", {})])
    (image,) = wim.images(bare)
    assert (image.arch, image.major, image.version) == (None, None, "?.?.?")
    with pytest.raises(SourceError, match=r"is Windows \?\.\?\.\?, not 6\.1"):
        wim.check_windows7([image], Arch.AMD64)
    with pytest.raises(SourceError, match="has no images"):
        wim.check_windows7([], Arch.AMD64)


def test_xml_parsing_takes_hex_and_missing_fields() -> None:
    xml = ("<WIM><IMAGE INDEX=\"2\"><NAME>b</NAME><WINDOWS><ARCH>0</ARCH><VERSION><MAJOR>0x6</MAJOR>"
           "<MINOR>1</MINOR><BUILD>7600</BUILD></VERSION></WINDOWS></IMAGE>"
           "<IMAGE INDEX=\"1\"><NAME>a</NAME></IMAGE></WIM>")
    assert wim.parse_info_xml(xml, 2) == [
        WimImage(1, "a", None, None, None, None, None, None, False),
        WimImage(2, "b", 0, 6, 1, 7600, None, None, True)]
    assert wim.parse_info_xml(xml, 2)[1].arch is Arch.X86
    with pytest.raises(SourceError, match="not well-formed"):
        wim.parse_info_xml("<WIM>", 0)


def test_extract_finds_paths_ignoring_case_and_keeps_folders(media_tree: win7image.Media, tmp_path: Path) -> None:
    got = wim.extract(media_tree.install_wim, 2, ["windows/system32/config/system",
                                                   "WINDOWS\\System32\\Config\\SOFTWARE"], tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in got] == [f"{CONFIG}/SYSTEM", f"{CONFIG}/SOFTWARE"]
    source = media_tree.root.parent / f"{media_tree.root.name}-trees" / "install-Ultimate"
    assert got[0].read_bytes() == (source / CONFIG / "SYSTEM").read_bytes()


def test_extract_of_an_absent_file(media_tree: win7image.Media, tmp_path: Path) -> None:
    absent = "Windows/Setup/Scripts/SetupComplete.cmd"
    assert wim.extract(media_tree.install_wim, 1, [absent], tmp_path, missing_ok=True) == []
    with pytest.raises(ToolError) as info:
        wim.extract(media_tree.install_wim, 1, [absent], tmp_path)
    assert "\n" not in info.value.render()


def test_update_adds_replaces_and_deletes_in_one_call(media_tree: win7image.Media, tmp_path: Path) -> None:
    work = wim.working_copy(media_tree.install_wim, tmp_path / "build")
    new_sys = tmp_path / "viostor.sys"
    new_sys.write_bytes(b"MZ stand-in viostor")
    hive = tmp_path / "SYSTEM"
    hive.write_bytes(b"replaced hive bytes")
    package = tmp_path / "pkg"
    (package / "viostor").mkdir(parents=True)
    (package / "viostor" / "viostor.inf").write_text("[Version]\n")
    wim.update(work, 2, [
        Add(new_sys, "Windows\\System32\\drivers\\viostor.sys"),
        Add(hive, "windows/system32/CONFIG/system"),  # replaces the existing file, whatever the case
        Add(package, "Windows/Drivers/Aero"),
        Delete("Windows/System32/drivers/intelide.sys"),
    ])
    out = tmp_path / "out"
    got = wim.extract(work, 2, ["Windows"], out)
    assert got == [out / "Windows"]
    assert (out / "Windows/System32/drivers/viostor.sys").read_bytes() == b"MZ stand-in viostor"
    assert (out / CONFIG / "SYSTEM").read_bytes() == b"replaced hive bytes"
    assert sorted(p.name for p in (out / CONFIG).iterdir()) == ["BCD-Template", "SOFTWARE", "SYSTEM"]
    assert (out / "Windows/Drivers/Aero/viostor/viostor.inf").is_file()
    assert not (out / "Windows/System32/drivers/intelide.sys").exists()
    untouched = tmp_path / "untouched"
    wim.extract(work, 1, ["Windows/System32/drivers/intelide.sys"], untouched)
    assert (untouched / "Windows/System32/drivers/intelide.sys").is_file()
    subprocess.run(["wimlib-imagex", "verify", str(work)], check=True, capture_output=True)
    assert [(i.arch, i.version, i.edition) for i in wim.images(work)] == [
        (i.arch, i.version, i.edition) for i in wim.images(media_tree.install_wim)]
    assert media_tree.install_wim.read_bytes() != work.read_bytes()  # the original is never touched


def test_quotes_cannot_reach_wimlibs_command_parser(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="quote or control character"):
        Add(tmp_path / "x", 'Windows/a"b').line()
    assert Delete("Windows\\x y", recursive=True).line() == 'delete --recursive "/Windows/x y"'


def test_too_little_space_is_refused_before_copying(media_tree: win7image.Media, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 2**20, 2**20))
    with pytest.raises(DiskError) as info:
        wim.working_copy(media_tree.install_wim, tmp_path / "build" / "deeper")
    assert "1 MiB free" in info.value.render() and "\n" not in info.value.render()
    assert not (tmp_path / "build").exists()


def test_a_missing_wimlib_names_the_package(monkeypatch: pytest.MonkeyPatch, media_tree: win7image.Media) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolError) as info:
        wim.images(media_tree.boot_wim)
    assert "apt-get install wimtools" in info.value.render()


@pytest.mark.parametrize("link", ["absolute", "relative", "folder"])
def test_a_link_in_the_image_is_never_followed(tmp_path: Path, link: str) -> None:
    """A hostile image could point its SYSTEM hive (or a folder above it) at a file of this machine."""
    secret = tmp_path / "secret.txt"
    secret.write_text("HOST-SECRET\n")
    tree = tmp_path / "tree"
    config = tree / "Windows/System32/config"
    if link == "folder":
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere/SYSTEM").write_text("HOST-SECRET\n")
        config.parent.mkdir(parents=True)
        config.symlink_to(tmp_path / "elsewhere")
    else:
        config.mkdir(parents=True)
        (config / "SYSTEM").symlink_to(secret if link == "absolute" else Path("../../../..") / "secret.txt")
    image = win7image.make_wim(tmp_path / "evil.wim", [win7image.ImageSpec(tree, "evil", {})])
    if link == "folder":  # wimlib keeps the folder a link and finds nothing beneath it
        assert wim.extract(image, 1, ["Windows/System32/config/SYSTEM"], tmp_path / "out", missing_ok=True) == []
        return
    with pytest.raises(SourceError, match="is a symbolic link"):
        wim.extract(image, 1, ["Windows/System32/config/SYSTEM"], tmp_path / "out", missing_ok=True)


def test_an_update_lists_the_image_once(media_tree: win7image.Media, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """However many files an update adds, their names are resolved from one listing of the image (each
    wimlib-imagex run loads the image's whole metadata), and keep the image's own spelling."""
    work = wim.working_copy(media_tree.install_wim, tmp_path / "build")
    runs: list[str] = []
    real = systools.run

    def spying(tool: str, args: list[str], **kw: object) -> object:
        runs.append(args[0])
        return real(tool, args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(systools, "run", spying)
    sources = []
    for name in ("a.inf", "a.sys", "a.cat"):
        (tmp_path / name).write_bytes(name.encode())
        sources.append(tmp_path / name)
    wim.update(work, 1, [*(Add(s, f"windows/system32/DriverStore/aero/{s.name}") for s in sources),
                         Add(sources[0], "windows/system32/CONFIG/system")])
    assert runs.count("dir") == 1
    out = tmp_path / "out"
    wim.extract(work, 1, ["Windows/System32/DriverStore/aero"], out)
    assert sorted(p.name for p in (out / "Windows/System32/DriverStore/aero").iterdir()) == ["a.cat", "a.inf", "a.sys"]
    assert not (out / CONFIG).exists()  # nothing else was extracted
    wim.extract(work, 1, [CONFIG], out)
    assert "SYSTEM" in [p.name for p in (out / CONFIG).iterdir()]  # replaced under its own spelling
