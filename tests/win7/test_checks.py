"""Package checks: good packages pass clean, each Windows 7 failure mode gives its finding."""

from __future__ import annotations

import json
import shutil
from datetime import UTC
from pathlib import Path

import pytest

from aero_media.errors import UsageError, ValidationError
from aero_media.spec.contract import Contract
from aero_media.spec.load import load_contract
from aero_media.spec.types import Arch, PlaceholderPolicy, SigningPolicy, WarningPolicy
from aero_media.win7.checks import check_package
from aero_media.win7.findings import CheckPolicy, Finding, PackageReport, format_table, gate
from aero_media.win7.folders import check_folder
from aero_media.win7.pnp import windows_ids
from tests.conftest import REPO
from tests.lib.drivers_fixtures import (
    crlf,
    embed_signature,
    make_catalog,
    make_inf,
    stand_in_dll,
    stand_in_sys,
    write_package,
)
from tests.lib.project import expanded_sample

ALLOW_PLACEHOLDERS = CheckPolicy(placeholder_catalogs=PlaceholderPolicy.ALLOW)


@pytest.fixture(scope="module")
def contract() -> Contract:
    return load_contract(REPO / "specs" / "devices.yaml")


def codes(report: PackageReport) -> dict[str, Finding]:
    return {f.code: f for f in report.findings}


def blk_package(tmp_path: Path, contract: Contract, arch: str = "amd64", **kw) -> Path:
    return write_package(tmp_path / arch / "viostor", "viostor", contract.device("virtio-blk"), arch, **kw)


def run(pkg: Path, contract: Contract, device: str = "virtio-blk", arch: str = "amd64",
        policy: CheckPolicy | None = None) -> PackageReport:
    return check_package(pkg, Arch(arch), contract.device(device), policy or CheckPolicy())


# --- good packages ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["x86", "amd64"])
@pytest.mark.parametrize("driver, device", [("viostor", "virtio-blk"), ("netkvm", "virtio-net"),
                                            ("vioinput", "virtio-input"), ("viosnd", "virtio-snd")])
def test_good_package_passes_clean(tmp_path, contract, arch, driver, device):
    pkg = write_package(tmp_path / driver, driver, contract.device(device), arch)
    report = check_package(pkg, Arch(arch), contract.device(device), CheckPolicy())
    assert report.findings == (), format_table([report])
    facts = report.facts
    dev = contract.device(device)
    assert facts["models_sections"] == [f"Models.NT{arch}.6.1"]
    assert [b["rank"] for b in facts["binding"]] == [1] * len(dev.subsystems)
    assert facts["service"] == dev.service and facts["start_type"] == (0 if dev.boot_critical else 3)
    assert facts["catalog"]["digest_algorithms"] == ["sha1"]
    assert set(facts["catalog"]["matched"]) == {f"{driver}.inf", f"{driver}.sys"}
    assert facts["pe"][f"{driver}.sys"]["machine"] == hex(Arch(arch).pe_machine)
    json.dumps(report.to_json())  # JSON-safe


def test_vioinput_with_coinstaller_and_child_driver(tmp_path, contract):
    dev = contract.device("virtio-input")
    text = make_inf("vioinput", dev, "amd64").replace(
        "[vioinput_inst]\nCopyFiles = vioinput_files\n",
        "[vioinput_inst]\nCopyFiles = vioinput_files\n"
        "[vioinput_inst.CoInstallers]\nAddReg = co_reg\nCopyFiles = co_files\n"
        '[co_reg]\nHKR,,CoInstallers32,0x00010000, "WdfCoInstaller01009.dll,WdfCoInstaller"\n'
        "[co_files]\nWdfCoInstaller01009.dll\n",
    ).replace("vioinput.sys = 1,,\n", "vioinput.sys = 1,,\nWdfCoInstaller01009.dll = 1\n")
    pkg = write_package(tmp_path / "vioinput", "vioinput", dev, "amd64", inf=crlf(text),
                        extra={"WdfCoInstaller01009.dll": stand_in_dll("amd64")})
    report = run(pkg, contract, "virtio-input")
    assert report.findings == (), format_table([report])
    assert report.facts["coinstallers"] == ["WdfCoInstaller01009.dll"]
    (pkg / "WdfCoInstaller01009.dll").unlink()
    missing = codes(run(pkg, contract, "virtio-input"))["file-missing"]
    assert (missing.file, missing.severity) == ("vioinput.inf", "error") and missing.line
    assert missing.message.startswith("WdfCoInstaller01009.dll is missing from the package")


# --- INF-level negatives ------------------------------------------------------------------------


def test_windows10_inf_in_the_w7_folder(tmp_path, contract):
    inf = crlf(make_inf("viostor", contract.device("virtio-blk"), "amd64", decoration="NTamd64.10.0"))
    report = run(blk_package(tmp_path, contract, inf=inf), contract)
    f = codes(report)["inf-no-win7-models"]
    assert (f.severity, f.file) == ("error", "viostor.inf")
    assert f.line == crlf_line(inf, "%VENDOR% = Models")
    assert f.message.startswith("the INF only has NTamd64.10.0 models: this is a Windows 10 driver (wrong OS folder?)")
    assert f.render().startswith(f"error: [inf-no-win7-models] viostor.inf:{f.line}: the INF only has")
    assert "w7/amd64" in f.fix


def test_x86_inf_in_the_amd64_folder(tmp_path, contract):
    inf = crlf(make_inf("viostor", contract.device("virtio-blk"), "x86"))
    f = codes(run(blk_package(tmp_path, contract, inf=inf), contract))["inf-no-win7-models"]
    assert "only has NTx86.6.1 models: this is an x86 driver (wrong arch folder?)" in f.message


def crlf_line(data: bytes, needle: str) -> int:
    lines = data.decode("cp1252").split("\r\n")
    return next(i for i, ln in enumerate(lines, start=1) if needle in ln)


def test_missing_catalogfile(tmp_path, contract):
    inf = crlf(make_inf("viostor", contract.device("virtio-blk"), "amd64", catalog=None))
    report = run(blk_package(tmp_path, contract, inf=inf), contract)
    f = codes(report)["inf-no-catalogfile"]
    assert f.severity == "error" and f.file == "viostor.inf" and f.line == 2
    assert "unsigned" in f.message and "CatalogFile=viostor.cat" in f.fix
    assert "catalog-missing" not in codes(report)


def test_catalogfile_names_a_missing_file_case_insensitively(tmp_path, contract):
    inf = crlf(make_inf("viostor", contract.device("virtio-blk"), "amd64", catalog="VIOSTOR.CAT"))
    ok = run(blk_package(tmp_path, contract, inf=inf), contract)
    assert "catalog-missing" not in codes(ok)  # the file is viostor.cat: same name on Windows
    inf = crlf(make_inf("viostor", contract.device("virtio-blk"), "amd64", catalog="other.cat"))
    f = codes(run(blk_package(tmp_path / "b", contract, inf=inf), contract))["catalog-missing"]
    assert (f.file, f.line, f.severity) == ("viostor.inf", 8, "error")
    assert f.message == "CatalogFile names other.cat, which is missing from the package"


def test_legacy_only_ids_against_the_modern_contract(tmp_path, contract):
    ids = ["PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00"]  # a 2015-era viostor INF
    inf = crlf(make_inf("viostor", contract.device("virtio-blk"), "amd64", ids=ids))
    report = run(blk_package(tmp_path, contract, inf=inf), contract)
    f = codes(report)["binding-no-match"]
    assert f.severity == "error" and f.file == "viostor.inf"
    assert "PCI\\VEN_1AF4&DEV_1042&SUBSYS_00021AF4&REV_01" in f.message
    assert "legacy transitional DEV_1001" in f.message and "modern-only DEV_1042" in f.message
    assert report.facts["binding"] == []


def test_best_ranked_match_is_reported(tmp_path, contract):
    ids = ["PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01, PCI\\VEN_1AF4&DEV_1042"]  # upstream's modern line
    inf = crlf(make_inf("viostor", contract.device("virtio-blk"), "amd64", ids=ids))
    report = run(blk_package(tmp_path, contract, inf=inf), contract)
    assert report.findings == ()
    assert report.facts["binding"][0]["hwid"] == "PCI\\VEN_1AF4&DEV_1042" and report.facts["binding"][0]["rank"] == 4


def test_generic_class_match_is_a_warning(tmp_path, contract):
    inf = crlf(make_inf("viostor", contract.device("virtio-blk"), "amd64", ids=["PCI\\CC_0100"]))
    f = codes(run(blk_package(tmp_path, contract, inf=inf), contract))["binding-generic"]
    assert f.severity == "warning" and "rank 11 of 11" in f.message


def test_every_virtio_input_function_must_bind(tmp_path, contract):
    dev = contract.device("virtio-input")
    kbd = windows_ids(dev, dev.subsystems[0])[0]
    inf = crlf(make_inf("vioinput", dev, "amd64", ids=[kbd]))
    pkg = write_package(tmp_path / "vioinput", "vioinput", dev, "amd64", inf=inf)
    report = run(pkg, contract, "virtio-input")
    misses = [f for f in report.findings if f.code == "binding-no-match"]
    assert [("(mouse)" in f.message, "(tablet)" in f.message) for f in misses] == [(True, False), (False, True)]
    assert [b["subsystem"] for b in report.facts["binding"]] == ["keyboard"]


def test_undefined_string_key(tmp_path, contract):
    text = make_inf("viostor", contract.device("virtio-blk"), "amd64").replace(
        'Dev.DeviceDesc = "Test device"\n', "")
    report = run(blk_package(tmp_path, contract, inf=crlf(text)), contract)
    f = codes(report)["inf-undefined-string"]
    assert f.severity == "warning" and f.line == crlf_line(crlf(text), "%Dev.DeviceDesc% = viostor_inst")
    assert f.message.startswith("%Dev.DeviceDesc% is not defined in [Strings]") and f.where == f"viostor.inf:{f.line}"
    assert not report.errors


def test_utf16le_inf_and_continuation_lines_pass(tmp_path, contract):
    dev = contract.device("virtio-blk")
    text = make_inf("viostor", dev, "amd64").replace(
        "%Dev.DeviceDesc% = viostor_inst, ", "%Dev.DeviceDesc% = viostor_inst, \\\n    ")
    assert "\\\n" in text
    utf16 = b"\xff\xfe" + text.replace("\n", "\r\n").encode("utf-16-le")
    report = run(blk_package(tmp_path, contract, inf=utf16), contract)
    assert report.findings == (), format_table([report])
    assert report.facts["inf_encoding"] == "utf-16-le"
    assert report.facts["binding"][0]["rank"] == 1


def test_wrong_class_and_bad_signature(tmp_path, contract):
    text = make_inf("viostor", contract.device("virtio-blk"), "amd64", class_name="Net").replace(
        '"$Windows NT$"', '"$Windows 10$"')
    report = run(blk_package(tmp_path, contract, inf=crlf(text)), contract)
    found = codes(report)
    assert found["inf-class-mismatch"].line == 4 and "setup class SCSIAdapter" in found["inf-class-mismatch"].message
    assert found["inf-bad-signature"].line == 3


def test_boot_driver_must_be_boot_start_and_service_names_must_match(tmp_path, contract):
    inf = crlf(make_inf("viostor", contract.device("virtio-blk"), "amd64", start_type=3, service="vioblk"))
    found = codes(run(blk_package(tmp_path, contract, inf=inf), contract))
    assert found["service-not-boot-start"].severity == "error"
    assert "StartType is 3" in found["service-not-boot-start"].message
    assert found["service-name-mismatch"].severity == "error"  # boot-critical: setup pre-seeds by name
    net = contract.device("virtio-net")
    pkg = write_package(tmp_path / "net", "netkvm", net, "amd64",
                        inf=crlf(make_inf("netkvm", net, "amd64", service="netkvm2")))
    assert codes(run(pkg, contract, "virtio-net"))["service-name-mismatch"].severity == "warning"


def test_missing_service_binary_and_missing_sys(tmp_path, contract):
    pkg = blk_package(tmp_path, contract)
    (pkg / "viostor.sys").unlink()
    report = run(pkg, contract)
    f = codes(report)["file-missing"]
    assert (f.severity, f.file) == ("error", "viostor.inf") and f.line
    assert f.message.startswith("viostor.sys is missing from the package") and "copy viostor.sys" in f.fix
    assert report.errors == (f,)  # nothing else: no PE, and the catalog check skips the absent file


def test_junk_inf_is_an_error_not_a_crash(tmp_path, contract):
    pkg = blk_package(tmp_path, contract, inf=bytes(range(256)) * 8)
    report = run(pkg, contract)
    assert [f.code for f in report.errors] == ["inf-encoding"]


# --- files and PE ----------------------------------------------------------------------------


def test_wrong_arch_sys(tmp_path, contract):
    pkg = blk_package(tmp_path, contract, sys=embed_signature(stand_in_sys("x86", b"x86 build")))
    f = codes(run(pkg, contract))["pe-wrong-machine"]
    assert (f.severity, f.file) == ("error", "viostor.sys")
    assert "x86 (Machine 0x14c)" in f.message and "amd64 package (needs 0x8664)" in f.message


def test_non_pe_and_non_native_sys(tmp_path, contract):
    pkg = blk_package(tmp_path, contract, sys=b"MZ this is not really a driver")
    f = codes(run(pkg, contract))["pe-invalid"]
    assert f.severity == "error" and "not a valid PE image" in f.message
    pkg2 = blk_package(tmp_path / "2", contract, sys=embed_signature(stand_in_dll("amd64")))
    assert "pe-not-native" in codes(run(pkg2, contract))


def test_boot_driver_needs_an_embedded_signature_on_amd64(tmp_path, contract):
    unsigned = stand_in_sys("amd64", b"unsigned build")
    f = codes(run(blk_package(tmp_path, contract, sys=unsigned), contract))["pe-boot-unsigned"]
    assert f.severity == "error"
    relaxed = run(blk_package(tmp_path / "t", contract, sys=unsigned), contract,
                  policy=CheckPolicy(signing_policy=SigningPolicy.TEST))
    assert codes(relaxed)["pe-boot-unsigned"].severity == "warning"
    x86 = run(blk_package(tmp_path / "x", contract, "x86", sys=stand_in_sys("x86", b"u")), contract, arch="x86")
    assert "pe-boot-unsigned" not in codes(x86)  # Windows 7 x86 does not enforce kernel signing
    sha256 = run(blk_package(tmp_path / "s", contract, sys=embed_signature(unsigned, "sha256")), contract)
    assert codes(sha256)["pe-sha256-only"].severity == "error"


def test_unreferenced_executable_and_pdb(tmp_path, contract):
    net = contract.device("virtio-net")
    pkg = write_package(tmp_path / "netkvm", "netkvm", net, "amd64",
                        extra={"netkvmco.dll": stand_in_dll("amd64"), "netkvm.pdb": b"symbols"},
                        catalog_files=("netkvm.inf", "netkvm.sys"))
    found = codes(run(pkg, contract, "virtio-net"))
    assert found["file-unreferenced"].severity == "warning" and found["file-unreferenced"].file == "netkvmco.dll"
    assert found["file-pdb"].severity == "info"
    assert "catalog-missing-file" not in found  # unreferenced files need no catalog entry


# --- catalogs ------------------------------------------------------------------------------


def test_catalog_whose_members_miss_the_sys(tmp_path, contract):
    pkg = blk_package(tmp_path, contract, catalog_files=("viostor.inf",))
    report = run(pkg, contract)
    f = codes(report)["catalog-missing-file"]
    assert (f.severity, f.file) == ("error", "viostor.sys")
    assert "Authenticode PE sha1" in f.message and "is not in viostor.cat" in f.message
    assert report.facts["catalog"]["matched"] == {"viostor.inf": "viostor.inf"}


def test_catalog_that_misses_the_inf_matches_by_hash_not_name(tmp_path, contract):
    pkg = blk_package(tmp_path, contract)
    inf = (pkg / "viostor.inf").read_bytes()
    sys = (pkg / "viostor.sys").read_bytes()
    # Member named like upstream netkvm.cat's "netkvm_no_rsc.inf": still matches by hash.
    (pkg / "viostor.cat").write_bytes(make_catalog({"viostor_no_rsc.inf": inf, "viostor.sys": sys}))
    ok = run(pkg, contract)
    assert ok.findings == () and ok.facts["catalog"]["matched"]["viostor.inf"] == "viostor_no_rsc.inf"
    (pkg / "viostor.inf").write_bytes(inf.replace(b"Test device", b"Edited device"))
    f = codes(run(pkg, contract))["catalog-missing-inf"]
    assert f.severity == "error" and "edited after signing" in f.message


@pytest.mark.parametrize("arch, severity", [("amd64", "error"), ("x86", "warning")])
def test_sha256_only_catalog(tmp_path, contract, arch, severity):
    pkg = blk_package(tmp_path, contract, arch, catalog="sha256")
    report = run(pkg, contract, arch=arch)
    f = codes(report)["catalog-sha256-only"]
    assert (f.severity, f.file) == (severity, "viostor.cat")
    assert "KB3033929" in f.message and "Windows 7 Setup" in f.message
    assert "0.1.173" in f.fix
    allowed = run(pkg, contract, arch=arch, policy=CheckPolicy(allow_sha256_only=True))
    assert codes(allowed)["catalog-sha256-only"].severity == "info" and not allowed.errors


def test_sha1_signature_with_a_sha256_certificate_chain(tmp_path, contract):
    pkg = blk_package(tmp_path, contract)
    files = {n: (pkg / n).read_bytes() for n in ("viostor.inf", "viostor.sys")}
    (pkg / "viostor.cat").write_bytes(make_catalog(files, cert_hash="sha256"))
    f = codes(run(pkg, contract))["catalog-sha256-chain"]
    assert f.severity == "error" and "KB3033929" in f.message


def test_unsigned_catalog_depends_on_signing_policy(tmp_path, contract):
    pkg = blk_package(tmp_path, contract, catalog="unsigned")
    assert codes(run(pkg, contract))["catalog-unsigned"].severity == "error"
    test = run(pkg, contract, policy=CheckPolicy(signing_policy=SigningPolicy.TEST))
    assert codes(test)["catalog-unsigned"].severity == "warning"


def test_placeholder_catalog_and_stand_in_binary(tmp_path, contract):
    placeholder = b"AERO-PLACEHOLDER-CATALOG\r\nThis is not a signed Windows catalog.\r\n"
    pkg = blk_package(tmp_path, contract, catalog=placeholder, sys=stand_in_sys("amd64"))
    strict = codes(run(pkg, contract))
    assert strict["catalog-placeholder"].severity == "error"
    assert "placeholder catalog" in strict["catalog-placeholder"].message
    assert strict["pe-stand-in"].severity == "error"
    allowed = run(pkg, contract, policy=ALLOW_PLACEHOLDERS)
    assert {f.code: f.severity for f in allowed.findings} == {"catalog-placeholder": "warning",
                                                              "pe-stand-in": "warning"}
    assert "checks.placeholder_catalogs: allow" in codes(allowed)["catalog-placeholder"].message
    assert allowed.facts["catalog"]["placeholder"] is True


def test_truncated_and_tampered_catalogs(tmp_path, contract):
    pkg = blk_package(tmp_path, contract)
    good = (pkg / "viostor.cat").read_bytes()
    (pkg / "viostor.cat").write_bytes(good[:100])
    f = codes(run(pkg, contract))["catalog-invalid"]
    assert f.severity == "error" and "viostor.cat is not a valid catalog" in f.message
    tampered = bytearray(good)
    pos = tampered.index("viostor.sys".encode("utf-16-le"))
    tampered[pos] = ord("V")
    (pkg / "viostor.cat").write_bytes(bytes(tampered))
    assert codes(run(pkg, contract))["catalog-tampered"].severity == "error"


def test_catalog_os_attribute_and_expiry(tmp_path, contract):
    pkg = blk_package(tmp_path, contract)
    files = {n: (pkg / n).read_bytes() for n in ("viostor.inf", "viostor.sys")}
    (pkg / "viostor.cat").write_bytes(make_catalog(files, os_attr="_v100_X64"))
    assert codes(run(pkg, contract))["catalog-os-mismatch"].severity == "warning"
    from datetime import datetime
    expired = datetime(2019, 12, 31, tzinfo=UTC)
    (pkg / "viostor.cat").write_bytes(make_catalog(files, not_after=expired))
    report = run(pkg, contract)
    assert "catalog-cert-expired" not in codes(report)  # timestamped: never judged by today's date
    assert report.facts["catalog"]["expiry"] == "covered by timestamp"
    assert report.facts["catalog"]["not_after"].startswith("2019-12-31")
    (pkg / "viostor.cat").write_bytes(make_catalog(files, not_after=expired, timestamped=False))
    # Not timestamped: valid only while the certificate is. Said as a note, never judged by the clock.
    f = codes(run(pkg, contract))["catalog-not-timestamped"]
    assert f.severity == "info" and "until 2019-12-31" in f.message


# --- folders, table, gate --------------------------------------------------------------------


def test_check_folder_walks_a_pack_and_infers_arch_and_device(tmp_path, contract):
    root = tmp_path / "pack"
    for arch in ("x86", "amd64"):
        write_package(root / "win7" / arch / "viostor", "viostor", contract.device("virtio-blk"), arch)
        write_package(root / "win7" / arch / "netkvm", "netkvm", contract.device("virtio-net"), arch)
    reports = check_folder(root, contract, CheckPolicy())
    assert sorted((r.driver, r.arch, r.device) for r in reports) == [
        ("netkvm", "amd64", "virtio-net"), ("netkvm", "x86", "virtio-net"),
        ("viostor", "amd64", "virtio-blk"), ("viostor", "x86", "virtio-blk")]
    assert all(r.findings == () for r in reports)
    only = check_folder(root, contract, CheckPolicy(), arch=Arch.X86, device="virtio-blk")
    assert [(r.driver, r.arch) for r in only] == [("viostor", "x86")]


def test_check_folder_infers_arch_from_pe_and_driver_from_inf(tmp_path, contract):
    pkg = write_package(tmp_path / "x64" / "a" / "b" / "c" / "w7", "viostor", contract.device("virtio-blk"), "x86")
    (report,) = check_folder(pkg, contract, CheckPolicy())  # x64 is too far up to count
    assert (report.driver, report.arch, report.device) == ("viostor", "x86", "virtio-blk")
    upstream = write_package(tmp_path / "viostor" / "w7" / "amd64", "viostor", contract.device("virtio-blk"), "amd64")
    (report,) = check_folder(upstream, contract, CheckPolicy())
    assert (report.driver, report.arch) == ("viostor", "amd64") and report.findings == ()


def test_check_folder_usage_errors(tmp_path, contract):
    with pytest.raises(UsageError, match=r"no \.inf file found"):
        check_folder(tmp_path, contract, CheckPolicy())
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "x.inf").write_bytes(b"[Version]\r\n")
    with pytest.raises(UsageError) as exc:
        check_folder(pkg, contract, CheckPolicy())
    assert "cannot tell the arch" in exc.value.message and "--arch" in exc.value.hint
    with pytest.raises(UsageError) as exc:
        check_folder(pkg, contract, CheckPolicy(), arch=Arch.X86)
    assert "cannot tell which contract device x.inf drives" in exc.value.message
    assert "virtio-blk" in exc.value.hint
    with pytest.raises(UsageError, match="unknown device 'virtio-gpu'"):
        check_folder(pkg, contract, CheckPolicy(), arch=Arch.X86, device="virtio-gpu")
    with pytest.raises(UsageError, match="not a directory"):
        check_folder(pkg / "x.inf", contract, CheckPolicy())


def test_format_table_and_gate(tmp_path, contract):
    good = run(blk_package(tmp_path, contract), contract)
    bad = run(blk_package(tmp_path / "b", contract, catalog="sha256"), contract)
    warn = run(blk_package(tmp_path / "w", contract, "x86", catalog="sha256"), contract, arch="x86")
    table = format_table([good, bad, warn])
    lines = table.splitlines()
    assert lines[0].split() == ["severity", "package", "file:line", "message"]
    assert any(ln.startswith("ok") and "viostor/amd64" in ln and "virtio-blk ok" in ln for ln in lines)
    assert any(ln.startswith("error") and "viostor.cat" in ln and "sha256 only" in ln for ln in lines)
    assert any(ln.strip().startswith("fix: use a SHA-1-signed") for ln in lines)
    gate([good, warn])  # warnings pass by default
    with pytest.raises(ValidationError) as exc:
        gate([good, warn], warnings=WarningPolicy.ERROR)
    assert "viostor/x86: viostor.cat: signed with sha256 only" in exc.value.message
    with pytest.raises(ValidationError):
        gate([bad])
    assert format_table([]) == "no driver packages checked\n"


def test_the_repo_sample_pack_passes_only_through_the_placeholder_policy(contract, tmp_path):
    sample = expanded_sample(tmp_path / "sample" / "pack")
    strict = check_folder(sample, contract, CheckPolicy())
    assert all({f.code for f in r.errors} == {"catalog-placeholder", "pe-stand-in"} for r in strict)
    allowed = check_folder(sample, contract, ALLOW_PLACEHOLDERS)
    assert all(not r.errors for r in allowed) and len(allowed) == 6


# --- real upstream INFs and catalogs -------------------------------------------------------------


def test_real_tree(realdata, tmp_path, contract):
    """Real INFs and catalogs with stand-in .sys files, laid out as win7/<arch>/<driver>/.

    The real catalogs hash the real viostor.sys, which we do not have, so the
    stand-in must be reported as exactly that mismatch while the INF matches by
    hash. For drivers without a real catalog here, we sign our own over the real INF.
    """
    root = tmp_path / "pack"
    for arch in ("x86", "amd64"):
        machine_sys = stand_in_sys(arch)
        for build, cat_name in (("61.80.104.17300", "viostor.win7.build17300.cat"),
                                ("61.81.104.17600", "viostor.win7.build17600.cat")):
            pkg = root / build / "win7" / arch / "viostor"
            pkg.mkdir(parents=True)
            shutil.copy(realdata / "inf" / "viostor" / arch / f"viostor.win7.{build}.inf", pkg / "viostor.inf")
            shutil.copy(realdata / "cat" / "viostor" / arch / cat_name, pkg / "viostor.cat")
            (pkg / "viostor.sys").write_bytes(machine_sys)
        for driver, extra in (("netkvm", {}), ("vioinput", {"viohidkmdf.sys": stand_in_sys(arch),
                                                             "WdfCoInstaller01009.dll": stand_in_dll(arch)})):
            pkg = root / "61.80.104.17300" / "win7" / arch / driver
            pkg.mkdir(parents=True)
            inf = (realdata / "inf" / driver / arch / f"{driver}.win7.61.80.104.17300.inf").read_bytes()
            files = {f"{driver}.inf": inf, f"{driver}.sys": machine_sys, **extra}
            named = {("netkvm_no_rsc.inf" if n == "netkvm.inf" else n): d for n, d in files.items()}
            for name, data in files.items():
                (pkg / name).write_bytes(data)
            (pkg / f"{driver}.cat").write_bytes(make_catalog(named, arch=arch))

    good = {(r.driver, r.arch): r for r in check_folder(root / "61.80.104.17300", contract, ALLOW_PLACEHOLDERS)}
    assert len(good) == 6
    for (driver, _arch), r in good.items():
        found = {(f.code, f.severity) for f in r.findings}
        stand_ins = {("pe-stand-in", "warning")}
        if driver == "viostor":
            # Real 17300 catalog: SHA-1, INF matched by hash, the stand-in .sys is the only mismatch.
            assert found == stand_ins | {("catalog-missing-file", "error")}, r
            assert r.facts["catalog"]["matched"] == {"viostor.inf": "viostor.inf"}
            assert r.facts["binding"][0] == {"subsystem": "blk", "hwid": "PCI\\VEN_1AF4&DEV_1042", "rank": 4,
                                             "line": 53, "install": "scsi_inst"}
            assert r.facts["catalog"]["digest_algorithms"] == ["sha1"]
            assert r.facts["start_type"] == 0
        elif driver == "netkvm":
            assert found == stand_ins, r
            assert r.facts["catalog"]["matched"]["netkvm.inf"] == "netkvm_no_rsc.inf"
        else:
            # Upstream's service is VirtioInput, an accepted alias of the contract's vioinput.
            assert found == stand_ins, r
            assert r.facts["service"] == "VirtioInput"
            assert r.facts["coinstallers"] == ["WdfCoInstaller01009.dll"]
            assert [b["rank"] for b in r.facts["binding"]] == [4, 4, 4]

    sha256 = {r.arch: r for r in check_folder(root / "61.81.104.17600", contract, ALLOW_PLACEHOLDERS)}
    assert codes(sha256["amd64"])["catalog-sha256-only"].severity == "error"
    assert codes(sha256["x86"])["catalog-sha256-only"].severity == "warning"
    assert "catalog-missing-inf" not in codes(sha256["amd64"])
    print(format_table(list(good.values()) + list(sha256.values())))


def test_corrupted_packages_never_crash(tmp_path, contract):
    """Untrusted input: random damage to any file gives findings, never a traceback."""
    import random

    pkg = blk_package(tmp_path, contract)
    originals = {p.name: p.read_bytes() for p in pkg.iterdir()}
    rnd = random.Random(1234)
    seen: set[str] = set()
    for _ in range(60):
        for name, data in originals.items():
            (pkg / name).write_bytes(data)
        name = rnd.choice(sorted(originals))
        data = bytearray(originals[name])
        if rnd.random() < 0.5:
            data = data[: rnd.randrange(len(data))]
        for _ in range(rnd.randrange(1, 8)):
            if data:
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        (pkg / name).write_bytes(bytes(data))
        report = run(pkg, contract)
        json.dumps(report.to_json())
        seen.update(f.code for f in report.errors)
    assert {"catalog-invalid", "pe-invalid"} <= seen  # the damage was real and was reported
