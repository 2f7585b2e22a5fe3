"""Guest Tools scripts run for real under Wine's cmd.exe, with stub system tools that log their command lines.

Needs Wine (skipped outside CI when it is missing; .ci/run installs it and requires it).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pipeline.spec.contract import Contract
from pipeline.win7.pnp import contract_ids
from tests.lib.gtscripts import (
    CBS,
    CDD,
    MUTATING,
    SERVICES,
    TEST_THUMB,
    TRUST_THUMB,
    build_media,
    inf_text,
    load_repo_contract,
    make_drivers,
    media_files,
    render,
)
from tests.lib.needs import need
from tests.lib.wine import FakeWindows, WinePrefix, WineResult, wine_unavailable_reason

pytestmark = [pytest.mark.integration, pytest.mark.wine]


@pytest.fixture(scope="module")
def contract() -> Contract:
    return load_repo_contract()


@pytest.fixture(scope="session")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WinePrefix]:
    """One booted Wine prefix for the whole session (booting takes ~10 s); decided when a test needs it."""
    reason = wine_unavailable_reason()
    need("wine", f"Wine tests skipped: {reason}" if reason else None)
    prefix = WinePrefix(tmp_path_factory.mktemp("wine") / "prefix")
    prefix.boot()
    yield prefix
    prefix.shutdown()
    shutil.rmtree(prefix.prefix, ignore_errors=True)


class Scenario:
    """A media tree, the fake Windows it runs on, and the Wine prefix."""

    def __init__(self, wine: WinePrefix, root: Path, contract: Contract, *, arches: Sequence[str] = ("x86", "amd64"),
                 media_name: str = "Guest Tools (1) new!", **render_kw: object) -> None:
        wine.reset()
        self.wine = wine
        self.drivers = make_drivers(arches)
        self.media = build_media(root / media_name, render(contract, self.drivers, **render_kw), self.drivers)
        self.fake = FakeWindows(root / "fake")
        self.fake.set_certificates({"aero-test.cer": TEST_THUMB, "redhat.cer": TRUST_THUMB})
        self.fake.set_testsigning(False)
        self.rehash()

    def rehash(self) -> None:
        """Let the certutil stub hash the media files as they are now."""
        self.fake.hash_media(self.media, media_files(self.media))

    def add_kb3033929(self) -> None:
        self.fake.add_reg_key(CBS + r"\Package_for_KB3033929~31bf3856ad364e35~amd64~~6.1.1.2")

    def run(self, script: str, *args: str, arch: str | None = None) -> WineResult:
        return self.wine.run_script(self.media / script, args, fake=self.fake, processor_architecture=arch)

    @property
    def state(self) -> Path:
        return self.wine.drive_c / "AeroGuestTools"

    def record(self, name: str) -> list[str]:
        p = self.state / name
        return p.read_text(encoding="ascii").splitlines() if p.exists() else []


def mutating(calls: Sequence[str]) -> list[str]:
    return [c for c in calls if MUTATING.search(" " + c)]


READ_ONLY = re.compile(
    r"^(fsutil dirty query C:|bcdedit /enum \{current\}|reg query .*|wmic qfe get HotFixID|"
    r"certutil -(store|dump|hashfile) .*|pnputil -e|sc query \S+)$"
)


def expected_storage_calls(contract: Contract, arch: str) -> list[str]:
    """The reg add lines of the storage pre-seed, built from the contract."""
    blk = contract.device("virtio-blk")
    svc = f"{SERVICES}\\viostor"
    calls = [
        f'reg add "{svc}" /v Type /t REG_DWORD /d "1" /f',
        f'reg add "{svc}" /v Start /t REG_DWORD /d "0" /f',
        f'reg add "{svc}" /v ErrorControl /t REG_DWORD /d "1" /f',
        f'reg add "{svc}" /v Group /t REG_SZ /d "SCSI miniport" /f',
        f'reg add "{svc}" /v ImagePath /t REG_EXPAND_SZ /d "system32\\drivers\\viostor.sys" /f',
        f'reg add "{svc}\\Parameters" /v BusType /t REG_DWORD /d "1" /f',
        f'reg add "{svc}\\Parameters\\PnpInterface" /v 5 /t REG_DWORD /d "1" /f',
    ]
    for hwid in contract_ids(blk):
        for suffix in ("", "&CC_010000", "&CC_0100"):
            key = f"{CDD}\\" + (hwid + suffix).replace("\\", "#").lower()
            calls += [
                f'reg add "{key}" /v Service /t REG_SZ /d "viostor" /f',
                f'reg add "{key}" /v ClassGUID /t REG_SZ /d "{blk.class_guid}" /f',
                f'reg add "{key}" /v Class /t REG_SZ /d "SCSIAdapter" /f',
            ]
    return calls


def expected_install_calls(contract: Contract, arch: str, *, testsigning: bool = True,
                           storage: bool = True) -> list[str]:
    """Every command a full /force setup runs on a clean system, in order."""
    calls = ['certutil -addstore -f TrustedPublisher "certs\\redhat.cer"']
    if testsigning:
        calls += ['certutil -addstore -f Root "certs\\aero-test.cer"',
                  'certutil -addstore -f TrustedPublisher "certs\\aero-test.cer"']
        if arch == "amd64":
            calls.append("bcdedit /set testsigning on")
    for name in ("viostor", "netkvm", "vioinput"):
        inf = f"drivers\\{arch}\\{name}\\{name}.inf"
        calls += [f'pnputil -a "{inf}"', f'pnputil -i -a "{inf}"']
    if storage:
        calls += expected_storage_calls(contract, arch)
    return calls


def test_wine_check_reports_and_changes_nothing(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract, sha256_only=True)
    sc.add_kb3033929()
    r = sc.run("setup.cmd", "/check", "/verify-media")
    assert r.returncode == 0, r.stdout
    assert [c for c in r.calls if not READ_ONLY.match(c)] == []
    assert not sc.state.exists(), "/check created the state folder"
    assert not (wine.drive_c / "windows" / "system32" / "drivers" / "viostor.sys").exists()
    assert sc.fake.cert_store() == set() and sc.fake.driver_store() == {} and sc.fake.testsigning() == "No"
    # The plan lists exactly what a real run would do.
    would = [ln.split("would run: ", 1)[1] for ln in r.stdout.splitlines() if "would run: " in ln]
    copy = 'copy /y "drivers\\amd64\\viostor\\viostor.sys" "C:\\windows\\System32\\drivers\\viostor.sys"'
    expected = expected_install_calls(contract, "amd64")
    expected.insert(expected.index(expected_storage_calls(contract, "amd64")[0]), copy)
    assert would == expected
    assert "KB3033929:            installed" in r.stdout
    assert f"{len(media_files(sc.media))} file(s) checked, 0 problem(s)" in r.stdout
    assert "would ask:" in r.stdout and "Check finished" in r.stdout


def test_wine_check_as_non_admin_reports_exit_10(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract)
    sc.fake.set_admin(False)
    r = sc.run("setup.cmd", "/check")
    assert r.returncode == 10, r.stdout
    assert "not running as Administrator" in r.stdout and "Test mode:            unknown" in r.stdout
    assert [c for c in r.calls if not READ_ONLY.match(c)] == []
    assert not sc.state.exists()


def test_wine_full_install_lifecycle_amd64(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    """setup /force, setup again, verify, uninstall /cleanupstorage: exact commands and state."""
    sc = Scenario(wine, tmp_path, contract, sha256_only=True)
    sc.add_kb3033929()
    r = sc.run("setup.cmd", "/force", "/verify-media")
    assert r.returncode == 0, r.stdout
    assert mutating(r.calls) == expected_install_calls(contract, "amd64")
    assert [c for c in r.calls if c not in mutating(r.calls) and not READ_ONLY.match(c)] == []
    assert sc.record("installed-driver-packages.txt") == [
        "oem10.inf drivers\\amd64\\viostor\\viostor.inf",
        "oem11.inf drivers\\amd64\\netkvm\\netkvm.inf",
        "oem12.inf drivers\\amd64\\vioinput\\vioinput.inf",
    ]
    assert sc.record("installed-certs.txt") == [
        f"TrustedPublisher {TRUST_THUMB} redhat.cer",
        f"Root {TEST_THUMB} aero-test.cer",
        f"TrustedPublisher {TEST_THUMB} aero-test.cer",
    ]
    assert sc.record("testsigning-enabled-by-setup.txt") == ["testsigning on"]
    assert sc.record("storage-preseed.txt") == ["viostor viostor.sys"]
    assert "arch=amd64" in sc.record("setup-state.txt")
    sys_copy = wine.drive_c / "windows" / "system32" / "drivers" / "viostor.sys"
    assert sys_copy.read_bytes() == (sc.media / "drivers/amd64/viostor/viostor.sys").read_bytes()
    assert sc.fake.reg_values(f"{SERVICES}\\viostor") == {
        "ErrorControl": ("REG_DWORD", "1"), "Group": ("REG_SZ", "SCSI miniport"),
        "ImagePath": ("REG_EXPAND_SZ", "system32\\drivers\\viostor.sys"), "Start": ("REG_DWORD", "0"),
        "Type": ("REG_DWORD", "1"),
    }
    assert sc.fake.testsigning() == "Yes"
    log = (sc.state / "install.log").read_text(encoding="ascii")
    assert log.count("running: ") == len(mutating(r.calls)) + 1  # + the copy
    assert "Published name :            oem10.inf" in log

    # Again: nothing is added twice, records do not grow.
    records = {n: sc.record(n) for n in ("installed-driver-packages.txt", "installed-certs.txt", "storage-preseed.txt")}
    r2 = sc.run("setup.cmd", "/force")
    assert r2.returncode == 0, r2.stdout
    assert not [c for c in r2.calls if c.startswith(("certutil -addstore", "bcdedit /set"))]
    assert "already in TrustedPublisher (added by an earlier run)" in r2.stdout
    assert "test mode is already on" in r2.stdout
    assert {n: sc.record(n) for n in records} == records
    assert sorted(sc.fake.driver_store()) == ["oem10.inf", "oem11.inf", "oem12.inf"]

    # verify.cmd: writes its report and passes.
    sc.fake.set_reg_value(f"{SERVICES}\\viostor\\Enum", "Count", "REG_DWORD", "1")
    r3 = sc.run("verify.cmd")
    report = (sc.state / "report.txt").read_text(encoding="ascii")
    assert "RESULT: PASS" in report, report
    assert r3.returncode == 0, r3.stdout
    assert "all 12 CriticalDeviceDatabase entries map virtio-blk to viostor" in report
    assert "oem10.inf is in the driver store" in report and "test mode is on" in report
    assert "virtio-blk: service viostor (start type 0) drives 1 device(s)" in report
    assert mutating(r3.calls) == []

    # uninstall /check lists what it would remove, and removes nothing.
    before = (sc.fake.driver_store(), sc.fake.cert_store(), sorted(p.name for p in sc.state.iterdir()))
    rc = sc.run("uninstall.cmd", "/check", "/cleanupstorage", "/cleanupstorageforce")
    assert rc.returncode == 0, rc.stdout
    assert [c for c in rc.calls if not READ_ONLY.match(c)] == []
    assert (sc.fake.driver_store(), sc.fake.cert_store(), sorted(p.name for p in sc.state.iterdir())) == before
    assert "would run: pnputil -d oem10.inf" in rc.stdout and "would run: bcdedit /set testsigning off" in rc.stdout
    assert f"would run: certutil -delstore Root {TEST_THUMB}" in rc.stdout
    assert 'would run: reg delete "' + CDD + '\\pci#ven_1af4&dev_1042" /f' in rc.stdout

    # uninstall /cleanupstorage refuses while viostor drives a device ...
    r4 = sc.run("uninstall.cmd", "/force", "/cleanupstorage")
    assert r4.returncode == 13, r4.stdout
    assert "REFUSED" in r4.stdout
    assert not [c for c in mutating(r4.calls) if c.startswith("reg ")]
    # ... and undoes everything once it does not.
    sc.fake.set_reg_value(f"{SERVICES}\\viostor\\Enum", "Count", "REG_DWORD", "0")
    r5 = sc.run("uninstall.cmd", "/force", "/cleanupstorage")
    assert r5.returncode == 0, r5.stdout
    blk = contract.device("virtio-blk")
    keys = [f"{CDD}\\" + (h + s).replace("\\", "#").lower()
            for h in contract_ids(blk) for s in ("", "&CC_010000", "&CC_0100")]
    # The packages were removed by r4 already (it only refused the storage part).
    assert mutating(r5.calls) == [
        f'reg add "{SERVICES}\\viostor" /v Start /t REG_DWORD /d "3" /f',
        *[f'reg delete "{k}" /f' for k in keys],
    ]
    assert mutating(r4.calls) == [
        "pnputil -d oem10.inf", "pnputil -d oem11.inf", "pnputil -d oem12.inf",
        f"certutil -delstore TrustedPublisher {TRUST_THUMB}",
        f"certutil -delstore Root {TEST_THUMB}",
        f"certutil -delstore TrustedPublisher {TEST_THUMB}",
        "bcdedit /set testsigning off",
    ]
    assert sc.fake.driver_store() == {} and sc.fake.cert_store() == set() and sc.fake.testsigning() == "No"
    assert sc.fake.reg_values(f"{SERVICES}\\viostor")["Start"] == ("REG_DWORD", "3")
    assert all(sc.fake.reg_values(k) is None for k in keys)
    assert sorted(p.name for p in sc.state.iterdir()) == ["install.log", "report.txt", "uninstall.log"]


def test_wine_x86_install_without_test_mode(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract, arches=["x86"], sha256_only=True)
    r = sc.run("setup.cmd", "/force", arch="x86")
    assert r.returncode == 0, r.stdout
    # SHA-256-only without KB3033929 on x86: a warning, but the pre-seed still
    # runs (32-bit Windows does not enforce signatures of boot drivers).
    assert "KB3033929 is not installed" in r.stdout
    assert mutating(r.calls) == expected_install_calls(contract, "x86")
    assert "32-bit Windows 7 does not enforce kernel-mode driver signatures" in r.stdout
    assert (wine.drive_c / "windows/system32/drivers/viostor.sys").read_bytes() == (
        sc.media / "drivers/x86/viostor/viostor.sys").read_bytes()


def test_wine_sha256_only_without_kb_skips_storage_on_amd64(wine: WinePrefix, tmp_path: Path,
                                                           contract: Contract) -> None:
    # No thumbprints in config\media.cmd: setup reads them from certutil -dump.
    sc = Scenario(wine, tmp_path, contract, sha256_only=True, signing_policy="none", certs=[], cert_thumbprints=None)
    r = sc.run("setup.cmd", "/quiet", "/stageonly")
    assert r.returncode == 0, r.stdout
    assert r.calls_to("certutil")[:2] == ['certutil -dump "certs\\redhat.cer"',
                                          f"certutil -store TrustedPublisher {TRUST_THUMB.lower()}"]
    assert sc.record("installed-certs.txt") == [f"TrustedPublisher {TRUST_THUMB.lower()} redhat.cer"]
    assert mutating(r.calls) == [
        'certutil -addstore -f TrustedPublisher "certs\\redhat.cer"',
        'pnputil -a "drivers\\amd64\\viostor\\viostor.inf"',
        'pnputil -a "drivers\\amd64\\netkvm\\netkvm.inf"',
        'pnputil -a "drivers\\amd64\\vioinput\\vioinput.inf"',
    ]
    assert "storage pre-seed skipped: without KB3033929" in r.stdout
    assert "wmic qfe get HotFixID" in r.calls  # the second opinion was asked
    assert sc.record("storage-preseed.txt") == []


def test_wine_certificate_trusted_before_setup_is_left_alone(wine: WinePrefix, tmp_path: Path,
                                                             contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract, signing_policy="production", certs=[],
                  cert_thumbprints={"redhat.cer": TRUST_THUMB})
    sc.fake.add_to_cert_store("TrustedPublisher", TRUST_THUMB, "redhat.cer")
    r = sc.run("setup.cmd", "/force", "/skipstorage")
    assert r.returncode == 0, r.stdout
    assert "was in TrustedPublisher before setup" in r.stdout
    assert not [c for c in r.calls if "-addstore" in c] and sc.record("installed-certs.txt") == []
    assert not [c for c in r.calls if c.startswith(("reg add", "bcdedit /set"))]
    r2 = sc.run("uninstall.cmd", "/force")
    assert r2.returncode == 0, r2.stdout
    assert not [c for c in r2.calls if "-delstore" in c or c.startswith("bcdedit /set")]
    assert sc.fake.cert_store() == {("TrustedPublisher", TRUST_THUMB.lower())}


def test_wine_uninstall_keeps_what_it_cannot_remove(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract)
    assert sc.run("setup.cmd", "/force", "/skipstorage").returncode == 0
    sc.fake.mark_in_use("oem10.inf")
    r = sc.run("uninstall.cmd", "/force")
    assert r.returncode == 1, r.stdout
    assert sc.record("installed-driver-packages.txt") == ["oem10.inf drivers\\amd64\\viostor\\viostor.inf"]
    assert sc.record("installed-certs.txt") == [] and sc.record("testsigning-enabled-by-setup.txt") == []
    assert "setup-state.txt" in {p.name for p in sc.state.iterdir()}


@pytest.mark.parametrize(
    ("damage", "code", "message"),
    [
        ("tamper", 14, "CHANGED  drivers\\amd64\\netkvm\\netkvm.sys"),
        ("truncate", 14, "SIZE     drivers\\amd64\\netkvm\\netkvm.sys"),
        ("delete", 14, "MISSING  drivers\\amd64\\netkvm\\netkvm.sys"),
    ],
)
def test_wine_verify_media_detects_damage(wine: WinePrefix, tmp_path: Path, contract: Contract,
                                          damage: str, code: int, message: str) -> None:
    sc = Scenario(wine, tmp_path, contract, arches=["amd64"])
    target = sc.media / "drivers/amd64/netkvm/netkvm.sys"
    data = target.read_bytes()
    if damage == "tamper":
        target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "truncate":
        target.write_bytes(data[:-1])
    else:
        target.unlink()
    sc.rehash() if damage != "delete" else sc.fake.hash_media(sc.media, [p for p in media_files(sc.media)])
    r = sc.run("setup.cmd", "/force", "/verify-media")
    assert r.returncode == code, r.stdout
    assert message in r.stdout
    assert mutating(r.calls) == [], "setup changed the system after finding damaged media"


@pytest.mark.parametrize(
    ("breakage", "code", "message"),
    [
        ("missing_inf", 11, "driver package drivers\\amd64\\netkvm\\netkvm.inf is missing"),
        ("missing_driver_dir", 11, "the driver folder drivers\\amd64 is missing"),
        ("missing_cert", 12, "certificate certs\\aero-test.cer is missing"),
        ("wrong_service", 13, "does not install service viostor"),
        ("missing_sys", 13, "driver file drivers\\amd64\\viostor\\viostor.sys is missing"),
    ],
)
def test_wine_preflight_failures_change_nothing(wine: WinePrefix, tmp_path: Path, contract: Contract,
                                                breakage: str, code: int, message: str) -> None:
    sc = Scenario(wine, tmp_path, contract)
    amd64 = sc.media / "drivers" / "amd64"
    if breakage == "missing_inf":
        (amd64 / "netkvm" / "netkvm.inf").unlink()
    elif breakage == "missing_driver_dir":
        shutil.rmtree(amd64)
    elif breakage == "missing_cert":
        (sc.media / "certs" / "aero-test.cer").unlink()
    elif breakage == "wrong_service":
        (amd64 / "viostor" / "viostor.inf").write_bytes(inf_text("vioscsi"))
    else:
        (amd64 / "viostor" / "viostor.sys").unlink()
    r = sc.run("setup.cmd", "/force")
    assert r.returncode == code, r.stdout
    assert message in r.stdout
    assert mutating(r.calls) == []
    assert "Setup stopped before changing anything" in r.stdout


def test_wine_not_admin_exits_10_and_writes_nothing(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract)
    sc.fake.set_admin(False)
    for script in ("setup.cmd", "uninstall.cmd"):
        r = sc.run(script, "/force")
        assert r.returncode == 10, r.stdout
        assert "must run as Administrator" in r.stdout
        assert r.calls == ("fsutil dirty query C:",)
    assert not sc.state.exists()


def test_wine_bad_option_and_help(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract)
    r = sc.run("setup.cmd", "/bogus")
    assert r.returncode == 2 and 'unknown option "/bogus"' in r.stdout and r.calls == ()
    r = sc.run("setup.cmd", "/?")
    assert r.returncode == 0 and "/verify-media" in r.stdout and r.calls == ()
    assert sc.run("uninstall.cmd", "-bogus").returncode == 2
    assert sc.run("verify.cmd", "/bogus").returncode == 3
