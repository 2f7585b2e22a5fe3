"""The servicing table: what it expands to, and the whole of it applied to a synthetic install.wim image.

Oracles: the expected keys come from the device contract and
:func:`aero_media.win7.pnp.cdd_keys` (not re-derived here); the applied result is
read back with ``hivexget``/regipy after a round trip through ``wimlib-imagex``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
from pathlib import Path

import pytest

from aero_media.errors import InternalError, SourceError
from aero_media.servicing import bcd, certblob, edits, hive, wim
from aero_media.servicing.edits import DriverPackage, FileAdd, HiveFile, ImageKind, Options, ScriptAdd
from aero_media.servicing.hive import AppendToList, RegType, RegValue, SetValue
from aero_media.spec.contract import Contract
from aero_media.spec.types import Arch
from aero_media.win7 import pnp
from aero_media.win7.certs import Cert
from tests.lib import win7image
from tests.lib.needs import need_tool

CCS = "ControlSet001"


@pytest.fixture
def packages(tmp_path: Path) -> list[DriverPackage]:
    out = []
    for name, device in (("viostor", "virtio-blk"), ("netkvm", "virtio-net")):
        folder = tmp_path / "stage" / name
        folder.mkdir(parents=True)
        for ext in ("inf", "sys", "cat"):
            (folder / f"{name}.{ext}").write_bytes(f"{name}.{ext} stand-in\n".encode())
        out.append(DriverPackage(name, Arch.AMD64, device, folder, f"{name}.inf"))
    return out


def _by_key(found: tuple[hive.Edit, ...]) -> dict[str, dict[str, RegValue]]:
    out: dict[str, dict[str, RegValue]] = {}
    for e in found:
        out.setdefault(e.key, {})[e.value.name] = e.value
    return out


def test_storage_edits_are_the_service_and_a_cdd_key_per_id_form(contract: Contract) -> None:
    device = contract.device("virtio-blk")
    keys = _by_key(edits.registry_edits(ImageKind.SETUP, HiveFile.SYSTEM, contract, Options(), control_set=CCS))
    assert keys.pop(f"{CCS}\\Services\\viostor") == {
        "Type": RegValue.dword("Type", 1), "Start": RegValue.dword("Start", 0),
        "ErrorControl": RegValue.dword("ErrorControl", 1), "Group": RegValue.sz("Group", "SCSI miniport"),
        "ImagePath": RegValue.expand_sz("ImagePath", "system32\\drivers\\viostor.sys")}
    cdd = f"{CCS}\\Control\\CriticalDeviceDatabase\\"
    assert list(keys) == [cdd + k for k in pnp.cdd_keys(device, transitional=True)]
    assert "pci#ven_1af4&dev_1042&subsys_00021af4&rev_01" in pnp.cdd_keys(device)
    assert all(v == {"Service": RegValue.sz("Service", "viostor"),
                     "ClassGUID": RegValue.sz("ClassGUID", "{4D36E97B-E325-11CE-BFC1-08002BE10318}")}
               for v in keys.values())


def test_cdd_keys_cover_every_hardware_id_the_contract_gives_transitional_included(contract: Contract) -> None:
    """A transitional DEV_1001 in the contract gets keys too (virt-v2v writes one for DEV_1001&REV_00)."""
    device = contract.device("virtio-blk")
    assert device.transitional_device_id == "1001"
    ids = [*pnp.contract_ids(device), *pnp.transitional_ids(device)]
    assert "PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00" in ids  # what QEMU's transitional virtio-blk reports
    assert "PCI\\VEN_1AF4&DEV_1001&REV_00" in ids  # the key virt-v2v writes
    for image in (ImageKind.WINPE, ImageKind.SETUP, ImageKind.INSTALL, ImageKind.RECOVERY):
        written = {e.key.rsplit("\\", 1)[-1] for e in edits.registry_edits(image, HiveFile.SYSTEM, contract, Options(),
                                                                           control_set=CCS) if "Critical" in e.key}
        for hwid in ids:
            assert hwid.replace("\\", "#").lower() in written, (image, hwid)
    modern_only = dataclasses.replace(device, transitional_device_id=None)
    assert not pnp.transitional_ids(modern_only)
    assert not any("dev_1001" in k for k in pnp.cdd_keys(modern_only, transitional=True))


def test_recovery_gets_boot_storage_and_certificates_but_no_install_only_edits(contract: Contract,
                                                                               cert: Cert) -> None:
    opts = Options(certificates=(cert,), testsigning=True, nointegritychecks=True)
    assert edits.hives_for(ImageKind.RECOVERY, contract, opts) == (HiveFile.SYSTEM, HiveFile.SOFTWARE)
    system = edits.registry_edits(ImageKind.RECOVERY, HiveFile.SYSTEM, contract, opts, control_set=CCS)
    assert system == edits.registry_edits(ImageKind.WINPE, HiveFile.SYSTEM, contract, opts, control_set=CCS)
    software = _by_key(edits.registry_edits(ImageKind.RECOVERY, HiveFile.SOFTWARE, contract, opts))
    assert sorted(software) == sorted(f"Microsoft\\SystemCertificates\\{s}\\Certificates\\{cert.thumbprint}"
                                      for s in ("ROOT", "TrustedPublisher"))  # no DevicePath


def test_windows_pe_and_setup_trust_the_certificates_too(contract: Contract, cert: Cert) -> None:
    """boot.wim's images load the storage driver before anything is installed, so they trust its signer too
    (Aero's tools/win7-slipstream/src/verify.rs requires the certificate in boot.wim index 2)."""
    opts = Options(certificates=(cert,), testsigning=True)
    stores = sorted(f"Microsoft\\SystemCertificates\\{s}\\Certificates\\{cert.thumbprint}"
                    for s in ("ROOT", "TrustedPublisher"))
    for image in (ImageKind.WINPE, ImageKind.SETUP):
        assert edits.hives_for(image, contract, opts) == (HiveFile.SYSTEM, HiveFile.SOFTWARE), image
        software = _by_key(edits.registry_edits(image, HiveFile.SOFTWARE, contract, opts))
        assert sorted(software) == stores, image  # no DevicePath: that is the installed system's
        assert all(v == {certblob.BLOB_VALUE: RegValue(certblob.BLOB_VALUE, RegType.BINARY,
                                                       certblob.serialized_cert(cert.der))}
                   for v in software.values())
    # Without certificates to trust, boot.wim's SOFTWARE hive is left closed.
    assert edits.hives_for(ImageKind.SETUP, contract, Options(testsigning=True)) == (HiveFile.SYSTEM,)


def test_nointegritychecks_is_opt_in_on_the_same_objects_as_test_mode(contract: Contract) -> None:
    objects = (bcd.GLOBAL_SETTINGS, bcd.BOOTLOADER_SETTINGS)
    for store, image in ((HiveFile.BCD_TEMPLATE, ImageKind.INSTALL), (HiveFile.MEDIA_BCD_BIOS, ImageKind.MEDIA),
                         (HiveFile.MEDIA_BCD_UEFI, ImageKind.MEDIA)):
        default = edits.registry_edits(image, store, contract, Options(testsigning=True), bcd_objects=objects)
        assert not Options().nointegritychecks
        assert [e.key.rsplit("\\", 1)[-1] for e in default] == [bcd.TESTSIGNING] * 2
        both = edits.registry_edits(image, store, contract, Options(testsigning=True, nointegritychecks=True),
                                    bcd_objects=objects)
        assert sorted(e.key for e in both) == sorted(f"Objects\\{g}\\Elements\\{el}" for g in objects
                                                     for el in (bcd.TESTSIGNING, bcd.NOINTEGRITYCHECKS))
        assert all(e.value == bcd.boolean(True) for e in both)
        alone = edits.registry_edits(image, store, contract, Options(nointegritychecks=True), bcd_objects=objects)
        assert [e.key.rsplit("\\", 1)[-1] for e in alone] == [bcd.NOINTEGRITYCHECKS] * 2
    assert HiveFile.BCD_TEMPLATE in edits.hives_for(ImageKind.INSTALL, contract, Options(nointegritychecks=True))
    assert edits.hives_for(ImageKind.RECOVERY, contract, Options(nointegritychecks=True)) == (HiveFile.SYSTEM,)


def test_which_hives_each_image_gets(contract: Contract) -> None:
    plain, test = Options(), Options(testsigning=True)
    assert edits.hives_for(ImageKind.WINPE, contract, plain) == (HiveFile.SYSTEM,)
    assert edits.hives_for(ImageKind.SETUP, contract, test) == (HiveFile.SYSTEM,)
    assert edits.hives_for(ImageKind.INSTALL, contract, plain) == (HiveFile.SYSTEM, HiveFile.SOFTWARE)
    assert edits.hives_for(ImageKind.INSTALL, contract, test) == (HiveFile.SYSTEM, HiveFile.SOFTWARE,
                                                                  HiveFile.BCD_TEMPLATE)
    assert edits.hives_for(ImageKind.MEDIA, contract, plain) == ()
    assert edits.hives_for(ImageKind.MEDIA, contract, test) == (HiveFile.MEDIA_BCD_BIOS, HiveFile.MEDIA_BCD_UEFI)


def test_software_edits_append_device_path_and_store_each_certificate(contract: Contract, cert: Cert) -> None:
    found = edits.registry_edits(ImageKind.INSTALL, HiveFile.SOFTWARE, contract, Options(certificates=(cert,)))
    device_path, *stores = found
    assert device_path == AppendToList("Microsoft\\Windows\\CurrentVersion",
                                       RegValue.expand_sz("DevicePath", "%SystemRoot%\\Drivers\\Aero"),
                                       default="%SystemRoot%\\inf")
    blob = RegValue.binary("Blob", certblob.serialized_cert(cert.der))
    upper = hashlib.sha1(cert.der).hexdigest().upper()  # Windows names the key by the upper-case thumbprint
    assert stores == [SetValue(f"Microsoft\\SystemCertificates\\{s}\\Certificates\\{upper}", blob)
                      for s in ("ROOT", "TrustedPublisher")]


def test_bcd_edits_follow_the_objects_found(contract: Contract) -> None:
    found = edits.registry_edits(ImageKind.MEDIA, HiveFile.MEDIA_BCD_BIOS, contract, Options(testsigning=True),
                                 bcd_objects=[bcd.GLOBAL_SETTINGS, win7image.DEFAULT_LOADER])
    assert found == tuple(SetValue(f"Objects\\{guid}\\Elements\\16000049", RegValue.binary("Element", b"\x01"))
                          for guid in (bcd.GLOBAL_SETTINGS, win7image.DEFAULT_LOADER))
    assert edits.registry_edits(ImageKind.MEDIA, HiveFile.MEDIA_BCD_BIOS, contract, Options()) == ()
    with pytest.raises(InternalError, match="needs the BCD objects"):
        edits.registry_edits(ImageKind.INSTALL, HiveFile.BCD_TEMPLATE, contract, Options(testsigning=True))
    with pytest.raises(InternalError, match="needs the current control set"):
        edits.registry_edits(ImageKind.WINPE, HiveFile.SYSTEM, contract, Options())


def test_a_contract_without_boot_storage_writes_no_storage_keys(contract: Contract) -> None:
    no_boot = dataclasses.replace(contract, devices={n: dataclasses.replace(d, boot_critical=False)
                                                     for n, d in contract.devices.items()})
    assert edits.registry_edits(ImageKind.SETUP, HiveFile.SYSTEM, no_boot, Options(), control_set=CCS) == ()
    assert edits.hives_for(ImageKind.WINPE, no_boot, Options()) == ()


def test_file_additions_per_image(contract: Contract, packages: list[DriverPackage]) -> None:
    winpe = edits.file_additions(ImageKind.WINPE, contract, Arch.AMD64, Options(), packages)
    assert winpe == (FileAdd("Windows/System32/drivers/viostor.sys", packages[0].folder / "viostor.sys"),)
    install = edits.file_additions(ImageKind.INSTALL, contract, Arch.AMD64, Options(), packages)
    assert install == (
        FileAdd("Windows/System32/drivers/viostor.sys", packages[0].folder / "viostor.sys"),
        FileAdd("Windows/Drivers/Aero/viostor", packages[0].folder),
        FileAdd("Windows/Drivers/Aero/netkvm", packages[1].folder),
        ScriptAdd("Windows/Setup/Scripts/SetupComplete.cmd",
                  ("%SystemRoot%\\Drivers\\Aero\\viostor\\viostor.inf",
                   "%SystemRoot%\\Drivers\\Aero\\netkvm\\netkvm.inf")),
    )
    with pytest.raises(SourceError, match="no staged package drives the boot-critical virtio-blk"):
        edits.file_additions(ImageKind.SETUP, contract, Arch.AMD64, Options(), packages[1:])
    with pytest.raises(InternalError, match=r"packages of another arch: viostor \(amd64\)"):
        edits.file_additions(ImageKind.SETUP, contract, Arch.X86, Options(), packages[:1])


def test_setup_complete_is_crlf_ascii_and_goes_first() -> None:
    infs = ("%SystemRoot%\\Drivers\\Aero\\viostor\\viostor.inf",)
    fresh = edits.setup_complete_cmd(None, infs)
    assert fresh == (
        b"@rem >>> aero-media drivers (added by offline servicing; do not edit this block)\r\n"
        b'@pnputil -i -a "%SystemRoot%\\Drivers\\Aero\\viostor\\viostor.inf"'
        b' >>"%SystemRoot%\\Setup\\Scripts\\aero-drivers.log" 2>&1\r\n'
        b"@rem <<< aero-media drivers\r\n")
    theirs = b"@echo off\r\nreg add HKLM\\Software\\Vendor /f\r\nexit /b 0\r\n"
    merged = edits.setup_complete_cmd(theirs, infs)
    assert merged == fresh + theirs  # theirs kept byte for byte, after ours (their exit cannot skip ours)
    assert edits.setup_complete_cmd(merged, infs) == merged  # servicing twice leaves one block
    two = edits.setup_complete_cmd(merged, (*infs, "C:\\x.inf"))
    assert two.count(b"aero-media drivers (added") == 1 and two.endswith(theirs)
    bom = edits.setup_complete_cmd(b"\xef\xbb\xbfecho hi\r\n", infs)
    assert bom == b"\xef\xbb\xbf" + fresh + b"echo hi\r\n"
    with pytest.raises(SourceError, match="UTF-16"):
        edits.setup_complete_cmd("echo hi".encode("utf-16"), infs)


def test_the_whole_table_applied_to_an_install_image(contract: Contract, cert: Cert, media_tree: win7image.Media,
                                                     packages: list[DriverPackage], tmp_path: Path) -> None:
    """Expand, apply, write back with wimlib, extract again and read with independent readers; then idempotence."""
    need_tool("hivexregedit", "to edit the hives")
    options = Options(certificates=(cert,), testsigning=True)
    image = ImageKind.INSTALL
    work = wim.working_copy(media_tree.install_wim, tmp_path / "build")

    def service(round_dir: Path) -> list[hive.Change]:
        hives = edits.hives_for(image, contract, options)
        wim.extract(work, 2, [h.value for h in hives], round_dir)
        changes: list[hive.Change] = []
        for h in hives:
            path = round_dir / h.value
            ccs = hive.current_control_set(path) if h is HiveFile.SYSTEM else None
            objects = [t.guid for t in bcd.targets(path)] if h.is_bcd else []
            changes += hive.apply(path, edits.registry_edits(image, h, contract, options, control_set=ccs,
                                                             bcd_objects=objects))
        commands: list[wim.Command] = [wim.Add(round_dir / h.value, h.value) for h in hives]
        for add in edits.file_additions(image, contract, Arch.AMD64, options, packages):
            if isinstance(add, ScriptAdd):
                got = wim.extract(work, 2, [add.dest], round_dir / "script", missing_ok=True)
                script = round_dir / "SetupComplete.cmd"
                script.write_bytes(add.render(got[0].read_bytes() if got else None))
                commands.append(wim.Add(script, add.dest))
            else:
                commands.append(wim.Add(add.source, add.dest))
        wim.update(work, 2, commands)
        return changes

    first = service(tmp_path / "r1")
    assert first and all(c.changed for c in first)
    out = tmp_path / "check"
    wim.extract(work, 2, ["Windows"], out)
    system = out / HiveFile.SYSTEM.value
    got = subprocess.run(["hivexget", str(system), f"{CCS}\\Services\\viostor", "ImagePath"], capture_output=True,
                         text=True, check=True).stdout
    assert got == "system32\\drivers\\viostor.sys\n"
    for key in pnp.cdd_keys(contract.device("virtio-blk")):
        assert subprocess.run(["hivexget", str(system), f"{CCS}\\Control\\CriticalDeviceDatabase\\{key}", "Service"],
                              capture_output=True, text=True, check=True).stdout == "viostor\n"
    regipy = pytest.importorskip("regipy.registry")
    software = regipy.RegistryHive(str(out / HiveFile.SOFTWARE.value))
    blob_key = f"Microsoft\\SystemCertificates\\TrustedPublisher\\Certificates\\{cert.thumbprint}"
    assert [v.value for v in software.get_key("\\" + blob_key).get_values()] == [certblob.serialized_cert(cert.der)]
    device_path = {v.name: v for v in software.get_key("\\Microsoft\\Windows\\CurrentVersion").get_values()}
    assert (device_path["DevicePath"].value_type, device_path["DevicePath"].value) == (
        "REG_EXPAND_SZ", "%SystemRoot%\\inf;%SystemRoot%\\Drivers\\Aero")
    template = out / HiveFile.BCD_TEMPLATE.value
    for guid in (bcd.GLOBAL_SETTINGS, bcd.BOOTLOADER_SETTINGS):
        element = hive.read_value(template, f"Objects\\{guid}\\Elements\\16000049", "Element")
        assert element == RegValue(bcd.ELEMENT_VALUE, RegType.BINARY, b"\x01")
    assert (out / "Windows/System32/drivers/viostor.sys").read_bytes() == b"viostor.sys stand-in\n"
    assert sorted(p.name for p in (out / "Windows/Drivers/Aero").iterdir()) == ["netkvm", "viostor"]
    assert (out / "Windows/Setup/Scripts/SetupComplete.cmd").read_bytes().count(b"pnputil -i -a") == 2
    assert sorted(p.name for p in (out / "Windows/System32/config").iterdir()) == [
        "BCD-Template", "SOFTWARE", "SYSTEM"]  # the image's own names, not ours

    second = service(tmp_path / "r2")
    assert len(second) == len(first) and not any(c.changed for c in second)
    assert [c.old for c in second] == [c.new for c in first]
    again = tmp_path / "check2"
    wim.extract(work, 2, ["Windows/Setup/Scripts/SetupComplete.cmd"], again)
    assert (again / "Windows/Setup/Scripts/SetupComplete.cmd").read_bytes() == \
        (out / "Windows/Setup/Scripts/SetupComplete.cmd").read_bytes()

