r"""A synthetic Windows 7 install medium: hives, WIMs and a bootable ISO, all made here from nothing.

Nothing is taken from real Windows. The hives start as :func:`tests.lib.regf.empty_hive`
and are filled by ``hivexregedit --merge`` from ``.reg`` text written here (never
by the code under test); the WIMs are captured with ``wimlib-imagex`` and given
the XML a real image has (``VERSION`` 6.1.7601, ``ARCH`` 9 or 0) with
``info --image-property``; the ISO has El Torito entries for BIOS (a 4 KiB
no-emulation boot image whose few real-mode instructions print
:data:`BOOT_MARKER` on COM1, load size 8 as ``etfsboot.com``) and UEFI (a stand-in
``efisys.bin``), built with xorriso as Windows media are laid out.

Public API:

* :func:`boot_sector`, :data:`BOOT_MARKER`;
* :func:`system_hive`, :func:`software_hive`, :func:`bcd_hive` and the keys
  they hold (:data:`UNTOUCHED_KEYS`, :data:`DEFAULT_LOADER`);
* :func:`windows_tree`, :func:`make_wim`, :func:`make_winre`, :func:`make_media`, :func:`make_iso`,
  :func:`make_udf_iso`.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.lib.regf import write_empty_hive

BOOT_MARKER = b"AERO-ELTORITO-BOOT-OK"
FIXED_EPOCH = 1290211200  # 2010-11-20, as in tests/lib/regf.py
ARCH_CODE = {"x86": 0, "amd64": 9}

GLOBAL_SETTINGS = "{7ea2e1ac-2e61-4728-aaa3-896d9d0a9f0e}"
BOOTLOADER_SETTINGS = "{6efb52bf-1766-41db-a6b3-0ee5eff72bd7}"
BOOTMGR = "{9dea862c-5cdd-4e70-acc1-f32b344d4795}"
DEFAULT_LOADER = "{aef7a11e-0000-4000-8000-00000000000d}"
"""The media BCD's Setup loader (our own GUID), named by the boot manager's 23000003."""

# Keys the servicing edits must leave exactly as they are (per hive).
UNTOUCHED_KEYS = {
    "SYSTEM": ("ControlSet001\\Services\\intelide",
               "ControlSet001\\Control\\CriticalDeviceDatabase\\pci#ven_8086&dev_7010",
               "ControlSet002", "MountedDevices"),
    "SOFTWARE": ("Microsoft\\Windows NT\\CurrentVersion",),
}


def boot_sector(marker: bytes = BOOT_MARKER, size: int = 4096) -> bytes:
    """A no-emulation El Torito boot image: print ``marker`` + CRLF on COM1 (port 0x3F8), then halt.

    Position-independent 16-bit code (the BIOS may enter at 0000:7C00 or
    07C0:0000): ``call``/``pop`` finds the message, ``lodsb``/``out`` sends it.
    QEMU's UART needs no setup to transmit.
    """
    code = bytearray(b"\xfa\x0e\x1f")  # cli; push cs; pop ds
    code += b"\xe8\x00\x00"  # call next (pushes the address of next)
    here = len(code)
    code += b"\x5e"  # next: pop si
    add_at = len(code)
    code += b"\x83\xc6\x00"  # add si, <offset of the message from next>
    code += b"\xba\xf8\x03"  # mov dx, 0x3f8
    loop = len(code)
    code += b"\xac\x84\xc0"  # lodsb; test al, al
    jz_at = len(code)
    code += b"\x74\x00"  # jz done
    code += b"\xee"  # out dx, al
    code += b"\xeb" + bytes([(loop - (len(code) + 2)) & 0xFF])  # jmp loop
    done = len(code)
    code[jz_at + 1] = done - (jz_at + 2)
    code += b"\xf4\xeb\xfd"  # done: hlt; jmp done
    code[add_at + 2] = len(code) - here
    code += marker + b"\r\n\0"
    assert len(code) < 510
    return bytes(code).ljust(size, b"\0")


# -- hives ---------------------------------------------------------------------------

def _utf16(text: str) -> str:
    return ",".join(f"{b:02x}" for b in (text + "\0").encode("utf-16-le"))


def _sz(name: str, text: str, kind: int = 1) -> str:
    return f'"{name}"=hex({kind:x}):{_utf16(text)}'


def _multi(name: str, items: Sequence[str]) -> str:
    raw = "".join(i + "\0" for i in items).encode("utf-16-le") + b"\0\0"
    return f'"{name}"=hex(7):' + ",".join(f"{b:02x}" for b in raw)


def _merge(hive: Path, sections: Sequence[tuple[str, Sequence[str]]]) -> None:
    text = "Windows Registry Editor Version 5.00\n\n" + "".join(
        f"[\\{key}]\n" + "".join(v + "\n" for v in values) + "\n" for key, values in sections)
    reg = hive.with_name(hive.name + ".reg")
    reg.write_text(text, encoding="ascii")
    subprocess.run(["hivexregedit", "--merge", str(hive), str(reg)], check=True, capture_output=True)
    reg.unlink()


def _ancestors(keys: Sequence[tuple[str, Sequence[str]]]) -> list[tuple[str, Sequence[str]]]:
    """Every key with its ancestors first (hivexregedit creates no parents)."""
    out: dict[str, Sequence[str]] = {}
    for key, values in keys:
        parts = key.split("\\")
        for i in range(1, len(parts)):
            out.setdefault("\\".join(parts[:i]), ())
        out[key] = values
    return list(out.items())


def system_hive(path: Path, current: int = 1) -> Path:
    """A SYSTEM hive: ``Select\\Current`` = ``current``, two control sets with CDD and Services as Windows 7 has."""
    write_empty_hive(path, "CMI-CreateHive{2A7FB991-7BBE-4F9D-B91E-7CB51D4737F5}")
    keys: list[tuple[str, Sequence[str]]] = [
        ("Select", (f'"Current"=dword:{current:08x}', '"Default"=dword:00000001', '"Failed"=dword:00000000',
                    '"LastKnownGood"=dword:00000002')),
        ("MountedDevices", ()),
    ]
    for n in (1, 2):
        ccs = f"ControlSet{n:03d}"
        keys += [
            (f"{ccs}\\Control\\CriticalDeviceDatabase\\pci#ven_8086&dev_7010",
             (_sz("Service", "intelide"), _sz("ClassGUID", "{4D36E96A-E325-11CE-BFC1-08002BE10318}"))),
            (f"{ccs}\\Services\\intelide",
             ('"Type"=dword:00000001', '"Start"=dword:00000000', '"ErrorControl"=dword:00000003',
              _sz("Group", "System Bus Extender"), _sz("ImagePath", "system32\\drivers\\intelide.sys", 2),
              _multi("Owners", ["mshdc.inf"]))),
            (f"{ccs}\\Control\\Class", ()),
        ]
    _merge(path, _ancestors(keys))
    return path


def software_hive(path: Path, edition: str = "Ultimate", device_path: str | None = "%SystemRoot%\\inf") -> Path:
    """A SOFTWARE hive: CurrentVersion with DevicePath (REG_EXPAND_SZ), Windows NT version 6.1.7601, empty stores."""
    write_empty_hive(path, "CMI-CreateHive{199DAFC2-6F16-4946-BF90-5A3FC3A60902}")
    current = [_sz("ProgramFilesDir", "C:\\Program Files")]
    if device_path is not None:
        current.append(_sz("DevicePath", device_path, 2))
    keys: list[tuple[str, Sequence[str]]] = [
        ("Microsoft\\Windows\\CurrentVersion", current),
        ("Microsoft\\Windows NT\\CurrentVersion",
         (_sz("CurrentVersion", "6.1"), _sz("CurrentBuild", "7601"), _sz("EditionID", edition),
          _sz("ProductName", f"Windows 7 {edition}"), _sz("InstallationType", "Client"))),
        ("Microsoft\\SystemCertificates\\ROOT\\Certificates", ()),
        ("Microsoft\\SystemCertificates\\TrustedPublisher\\Certificates", ()),
    ]
    _merge(path, _ancestors(keys))
    return path


def bcd_hive(path: Path, *, default: bool) -> Path:
    """A BCD store: boot manager, {globalsettings}, {bootloadersettings}, and (``default``) a loader it names.

    ``default=False`` is the shape of ``BCD-Template`` (no loader of its own);
    ``True`` that of the DVD's ``boot\\BCD``.
    """
    write_empty_hive(path, "CMI-CreateHive{AEF7BCD0-0000-4000-8000-000000000000}")
    bootmgr = [(f"Objects\\{BOOTMGR}\\Description", ('"Type"=dword:10100002',))]
    if default:
        bootmgr.append((f"Objects\\{BOOTMGR}\\Elements\\23000003", (_sz("Element", DEFAULT_LOADER),)))
        bootmgr += [(f"Objects\\{DEFAULT_LOADER}\\Description", ('"Type"=dword:10200003',)),
                    (f"Objects\\{DEFAULT_LOADER}\\Elements\\12000004", (_sz("Element", "Windows Setup"),)),
                    (f"Objects\\{DEFAULT_LOADER}\\Elements\\14000006", (_multi("Element", [BOOTLOADER_SETTINGS]),))]
    keys: list[tuple[str, Sequence[str]]] = [
        ("Description", (_sz("KeyName", "BCD00000001"), '"System"=dword:00000001')),
        *bootmgr,
        (f"Objects\\{BOOTMGR}\\Elements\\16000048", ('"Element"=hex:00',)),
        (f"Objects\\{GLOBAL_SETTINGS}\\Description", ('"Type"=dword:10100000',)),
        (f"Objects\\{GLOBAL_SETTINGS}\\Elements\\16000060", ('"Element"=hex:01',)),
        (f"Objects\\{BOOTLOADER_SETTINGS}\\Description", ('"Type"=dword:20200003',)),
        (f"Objects\\{BOOTLOADER_SETTINGS}\\Elements\\14000006", (_multi("Element", [GLOBAL_SETTINGS]),)),
    ]
    _merge(path, _ancestors(keys))
    return path


# -- images ----------------------------------------------------------------------------

def windows_tree(root: Path, *, edition: str = "Ultimate", setup_complete: bytes | None = None,
                 bcd_template: bool = True) -> Path:
    """A minimal Windows folder tree: the three hives, a driver folder and (optionally) SetupComplete.cmd."""
    config = root / "Windows" / "System32" / "config"
    config.mkdir(parents=True, exist_ok=True)
    system_hive(config / "SYSTEM")
    software_hive(config / "SOFTWARE", edition)
    if bcd_template:
        bcd_hive(config / "BCD-Template", default=False)
    drivers = root / "Windows" / "System32" / "drivers"
    drivers.mkdir(parents=True, exist_ok=True)
    (drivers / "intelide.sys").write_bytes(b"MZ stand-in for intelide.sys\n")
    if setup_complete is not None:
        scripts = root / "Windows" / "Setup" / "Scripts"
        scripts.mkdir(parents=True, exist_ok=True)
        (scripts / "SetupComplete.cmd").write_bytes(setup_complete)
    return root


@dataclass(frozen=True)
class ImageSpec:
    """One image to capture: its tree, name and XML properties."""

    tree: Path
    name: str
    properties: Mapping[str, str]


def win7_properties(arch: str, edition: str | None = None, build: int = 7601,
                    major: int = 6, minor: int = 1) -> dict[str, str]:
    """The XML a Windows 7 image carries (``WINDOWS/ARCH``, ``WINDOWS/VERSION/...``)."""
    props = {"WINDOWS/ARCH": str(ARCH_CODE[arch]), "WINDOWS/VERSION/MAJOR": str(major),
             "WINDOWS/VERSION/MINOR": str(minor), "WINDOWS/VERSION/BUILD": str(build),
             "WINDOWS/VERSION/SPBUILD": "17514", "WINDOWS/PRODUCTTYPE": "WinNT"}
    if edition:
        props["WINDOWS/EDITIONID"] = edition
    return props


def make_wim(path: Path, specs: Sequence[ImageSpec], boot_index: int = 0) -> Path:
    """Capture ``specs`` as images 1..n of ``path`` (``boot_index`` marks the boot image) and set their XML."""
    env = dict(os.environ, LC_ALL="C")
    for i, spec in enumerate(specs, 1):
        cmd = ["wimlib-imagex", "capture" if i == 1 else "append", str(spec.tree), str(path), spec.name,
               "--compress=none"]
        if i == boot_index:
            cmd.append("--boot")
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        props = [a for k, v in spec.properties.items() for a in ("--image-property", f"{k}={v}")]
        if props:
            subprocess.run(["wimlib-imagex", "info", str(path), str(i), *props], check=True, capture_output=True,
                           env=env)
    return path


@dataclass(frozen=True)
class Media:
    """A synthetic Windows 7 DVD: its folder (as extracted) and the WIMs in it."""

    root: Path
    boot_wim: Path
    install_wim: Path
    arch: str


WINRE = "Windows/System32/Recovery/winre.wim"


def make_winre(path: Path, arch: str, work: Path) -> Path:
    """A recovery image as Windows 7 keeps one in each edition: a one-image Windows PE WIM (boot index 1)."""
    x = "x64" if arch == "amd64" else "x86"
    tree = windows_tree(work, edition="WindowsPE", bcd_template=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_wim(path, [ImageSpec(tree, f"Microsoft Windows Recovery Environment ({x})",
                                     win7_properties(arch, "WindowsPE"))], boot_index=1)


def make_media(root: Path, arch: str = "amd64", *, editions: Sequence[str] = ("HomePremium", "Ultimate"),
               setup_complete: bytes | None = None, winre: Sequence[str] | None = None,
               winre_bytes: bytes | None = None) -> Media:
    """Lay out a Windows 7 DVD tree: boot files, both media BCDs, and a two-image boot.wim and an install.wim.

    Each edition in ``winre`` (default: all, as on a DVD) carries the same ``Windows\\System32\\Recovery\\winre.wim``
    (``winre_bytes`` instead of a real one: a damaged recovery image).
    """
    x = "x64" if arch == "amd64" else "x86"
    work = root.parent / f"{root.name}-trees"
    recovery = work / "winre.wim"
    if winre_bytes is None:
        make_winre(recovery, arch, work / "winre")
    else:
        recovery.parent.mkdir(parents=True, exist_ok=True)
        recovery.write_bytes(winre_bytes)
    pe = windows_tree(work / "winpe", bcd_template=False)
    setup = windows_tree(work / "setup", bcd_template=False)
    (setup / "setup.exe").write_bytes(b"MZ stand-in for setup.exe\n")
    (root / "sources").mkdir(parents=True, exist_ok=True)
    boot_wim = make_wim(root / "sources" / "boot.wim", [
        ImageSpec(pe, f"Microsoft Windows PE ({x})", win7_properties(arch, "WindowsPE")),
        ImageSpec(setup, f"Microsoft Windows Setup ({x})", win7_properties(arch, "WindowsPE")),
    ], boot_index=2)
    installs = [ImageSpec(windows_tree(work / f"install-{e}", edition=e, setup_complete=setup_complete),
                          f"Windows 7 {e}", win7_properties(arch, e)) for e in editions]
    for edition, image in zip(editions, installs, strict=True):
        if winre is None or edition in winre:
            (image.tree / WINRE).parent.mkdir(parents=True, exist_ok=True)
            (image.tree / WINRE).write_bytes(recovery.read_bytes())
    install_wim = make_wim(root / "sources" / "install.wim", installs)
    (root / "boot").mkdir(exist_ok=True)
    (root / "boot" / "etfsboot.com").write_bytes(boot_sector())
    bcd_hive(root / "boot" / "BCD", default=True)
    efi = root / "efi" / "microsoft" / "boot"
    efi.mkdir(parents=True, exist_ok=True)
    (efi / "efisys.bin").write_bytes(b"EFISYS stand-in (a FAT image on real media)\n".ljust(64 * 1024, b"\0"))
    bcd_hive(efi / "bcd", default=True)
    (root / "setup.exe").write_bytes(b"MZ stand-in for setup.exe\n")
    return Media(root, boot_wim, install_wim, arch)


LABEL = "GRMCULFRER_EN_DVD"


def make_iso(tree: Path, out: Path, label: str = LABEL) -> Path:
    """An ISO of ``tree`` laid out as Windows DVDs are: ISO 9660 + Joliet, no Rock Ridge, El Torito BIOS + UEFI."""
    cmd = ["xorriso", "-as", "mkisofs", "--norock", "-iso-level", "3", "-J", "-joliet-long", "-V", label,
           "-b", "boot/etfsboot.com", "-no-emul-boot", "-boot-load-size", "8",
           "-eltorito-alt-boot", "-e", "efi/microsoft/boot/efisys.bin", "-no-emul-boot",
           "-quiet", "-o", str(out), str(tree)]
    subprocess.run(cmd, check=True, capture_output=True,
                   env=dict(os.environ, SOURCE_DATE_EPOCH=str(FIXED_EPOCH), TZ="UTC", LC_ALL="C"))
    return out


def make_udf_iso(files: Mapping[str, bytes], out: Path, label: str = LABEL) -> Path:
    """An ISO 9660 + Joliet + UDF 2.60 image with El Torito (BIOS + UEFI) made by pycdlib, as a DVD with UDF is.

    ``files`` maps lower-case paths to contents; ``boot/etfsboot.com`` and
    ``efi/microsoft/boot/efisys.bin`` must be among them.
    """
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, udf="2.60", vol_ident=label[:16])  # Joliet holds 16 characters
    iso.pvd.volume_identifier = label.encode("ascii").ljust(32, b" ")
    dirs: set[str] = set()
    for rel in sorted(files):
        parts = rel.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                iso.add_directory(iso_path="/" + d.upper().replace(".", "_"), joliet_path="/" + d, udf_path="/" + d)
    for rel, data in sorted(files.items()):
        stem, dot, ext = rel.upper().rpartition(".")
        iso_name = (f"{stem}.{ext}" if dot else rel.upper() + ".") + ";1"
        parent, _, _ = iso_name.rpartition("/")
        iso_path = "/" + (parent.replace(".", "_") + "/" if parent else "") + iso_name.rpartition("/")[2]
        iso.add_fp(io.BytesIO(data), len(data), iso_path=iso_path, joliet_path="/" + rel, udf_path="/" + rel)
    iso.add_eltorito("/BOOT/ETFSBOOT.COM;1", bootcatfile="/BOOT.CAT;1", boot_load_size=8,
                     joliet_bootcatfile="/boot.cat", udf_bootcatfile="/boot.cat")
    iso.add_eltorito("/EFI/MICROSOFT/BOOT/EFISYS.BIN;1", bootcatfile="/BOOT.CAT;1", efi=True, platform_id=0xEF,
                     joliet_bootcatfile="/boot.cat", udf_bootcatfile="/boot.cat")
    iso.write(str(out))
    iso.close()
    return out


README = (b"This disc contains a \"UDF\" file system and requires an operating system\r\n"
          b"that supports the ISO-13346 \"UDF\" file system specification.\r\n")


def efi_floppy(path: Path) -> bytes:
    """A 1.44 MB FAT12 image as efisys.bin is (mkfs.fat, fixed volume ID so the bytes repeat)."""
    subprocess.run(["mkfs.fat", "-C", "-i", "12345678", "-n", "EFISYS", str(path), "1440"], check=True,
                   capture_output=True, env=dict(os.environ, SOURCE_DATE_EPOCH=str(FIXED_EPOCH), LC_ALL="C"))
    return path.read_bytes()


def make_udf_stub_iso(tree: Path, out: Path, efisys: bytes, label: str = LABEL) -> Path:
    """A Windows DVD of Microsoft's shape, made by pycdlib: every file in UDF 2.60 only, an ISO 9660/Joliet side
    holding only ``README.TXT``, and El Torito BIOS and UEFI entries whose images no tree names (hidden).

    The UEFI entry loads one 512-byte sector of ``efisys`` (a FAT floppy image), so only its BPB says its size.
    """
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, udf="2.60", vol_ident=label[:16])
    iso.pvd.volume_identifier = label.encode("ascii").ljust(32, b" ")
    for folder in sorted(p for p in tree.rglob("*") if p.is_dir()):
        iso.add_directory(udf_path="/" + folder.relative_to(tree).as_posix())
    for f in sorted(p for p in tree.rglob("*") if p.is_file()):
        data = f.read_bytes()
        iso.add_fp(io.BytesIO(data), len(data), udf_path="/" + f.relative_to(tree).as_posix())
    iso.add_fp(io.BytesIO(README), len(README), iso_path="/README.TXT;1", joliet_path="/README.TXT")
    etfs = (tree / "boot" / "etfsboot.com").read_bytes()
    iso.add_fp(io.BytesIO(etfs), len(etfs), iso_path="/ETFSBOOT.COM;1")
    iso.add_fp(io.BytesIO(efisys), len(efisys), iso_path="/EFISYS.BIN;1")
    iso.add_eltorito("/ETFSBOOT.COM;1", bootcatfile="/BOOT.CAT;1", boot_load_size=8)
    iso.add_eltorito("/EFISYS.BIN;1", bootcatfile="/BOOT.CAT;1", efi=True, platform_id=0xEF, boot_load_size=1)
    for hidden in ("/ETFSBOOT.COM;1", "/EFISYS.BIN;1", "/BOOT.CAT;1"):
        iso.rm_hard_link(iso_path=hidden)  # still on the disc, named by the boot catalog only
    iso.rm_hard_link(joliet_path="/boot.cat")
    iso.write(str(out))
    iso.close()
    return out


def make_genisoimage_udf_iso(tree: Path, out: Path, label: str = LABEL) -> Path:
    """``tree`` as genisoimage ``-udf`` writes it: ISO 9660 + Joliet + UDF 1.02, El Torito BIOS."""
    subprocess.run(["genisoimage", "-quiet", "-udf", "-J", "-joliet-long", "-iso-level", "3", "-V", label,
                    "-b", "boot/etfsboot.com", "-no-emul-boot", "-boot-load-size", "8", "-o", str(out), str(tree)],
                   check=True, capture_output=True, env=dict(os.environ, SOURCE_DATE_EPOCH=str(FIXED_EPOCH), TZ="UTC"))
    return out
