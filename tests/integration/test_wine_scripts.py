"""Guest Tools scripts run for real under Wine's cmd.exe, with stub system tools that log their command lines.

Needs Wine (skipped outside CI when it is missing; .ci/run installs it and requires it).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from aero_media.media import scripts
from aero_media.spec.contract import Contract
from aero_media.win7.pnp import contract_ids
from tests.lib.gtscripts import (
    CBS,
    CDD,
    MUTATING,
    SERVICES,
    TEST_THUMB,
    TRUST_THUMB,
    all_files,
    build_media,
    inf_text,
    load_repo_contract,
    make_drivers,
    media_files,
    render,
    write_hashes,
    write_manifest,
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
        self.fake.hash_media(self.media, all_files(self.media))

    def add_kb3033929(self) -> None:
        self.fake.add_reg_key(CBS + r"\Package_for_KB3033929~31bf3856ad364e35~amd64~~6.1.1.2")

    def add_sha2_updates(self) -> None:
        """All the SHA-2 updates: KB3033929 as a CBS package, the other two only in wmic qfe."""
        self.add_kb3033929()
        self.fake.set_hotfixes(["KB2479943", "KB4474419", "KB4490628"])

    def manifest_sha256(self) -> str:
        return hashlib.sha256((self.media / "manifest.json").read_bytes()).hexdigest()

    def run(self, script: str, *args: str, arch: str | None = None, timeout: float = 180) -> WineResult:
        return self.wine.run_script(self.media / script, args, fake=self.fake, processor_architecture=arch,
                                    timeout=timeout)

    @property
    def state(self) -> Path:
        return self.wine.drive_c / "AeroGuestTools"

    def record(self, name: str) -> list[str]:
        p = self.state / name
        return p.read_text(encoding="ascii").splitlines() if p.exists() else []


def _production(wine: WinePrefix, root: Path, contract: Contract) -> Scenario:
    """Media with signing_policy production (no test certificate), on a Windows 7 with the SHA-2 updates."""
    sc = Scenario(wine, root, contract, signing_policy="production", certs=[],
                  cert_thumbprints={"redhat.cer": TRUST_THUMB})
    sc.add_sha2_updates()
    return sc


# What setup.cmd /nointegritychecks without storage pre-seeding changes on such media (any spelling of it).
NOINTEGRITYCHECKS_CALLS = [
    'certutil -addstore -f TrustedPublisher "certs\\redhat.cer"',
    "bcdedit /set nointegritychecks on",
    *[f'pnputil {a}"drivers\\amd64\\{n}\\{n}.inf"' for n in ("viostor", "netkvm", "vioinput")
      for a in ("-a ", "-i -a ")],
]


def mutating(calls: Sequence[str]) -> list[str]:
    return [c for c in calls if MUTATING.search(" " + c)]


REPORT_FINDING = re.compile(r"^  (OK  |WARN|FAIL)  (.*)$")


def report_findings(text: str) -> list[tuple[str, str]]:
    """(status, text) of each finding in report.txt, continuation lines joined with a space."""
    out: list[list[str]] = []
    last_was_finding = False
    for line in text.splitlines():
        if line.startswith("RESULT: "):
            break
        m = REPORT_FINDING.match(line)
        if m:
            out.append([{"OK  ": "PASS"}.get(m[1], m[1]), m[2]])
            last_was_finding = True
        elif line.startswith("        ") and line.strip() and last_was_finding:
            out[-1][1] += " " + line.strip()
        else:
            last_was_finding = False
    return [(a, b) for a, b in out]


def verify_report(sc: Scenario, r: WineResult) -> dict[str, Any]:
    """report.json, checked against report.txt and the exit code of the verify.cmd run ``r``."""
    text = (sc.state / "report.txt").read_text(encoding="ascii")
    report = json.loads((sc.state / "report.json").read_bytes().decode("ascii"))
    findings = report["findings"]
    assert [(f["status"], f["detail"]) for f in findings] == report_findings(text)
    assert all(set(f) == {"id", "status", "detail"} and re.fullmatch(r"[a-z][a-z0-9:.-]*", f["id"], re.I)
               for f in findings), findings
    counts = {s: sum(f["status"] == s for f in findings) for s in ("PASS", "WARN", "FAIL")}
    assert report["counts"] == counts
    verdict = "FAIL" if counts["FAIL"] else "WARN" if counts["WARN"] else "PASS"
    assert report["result"] == verdict and f"RESULT: {verdict} (" in text
    assert report["exit_code"] == r.returncode == {"PASS": 0, "WARN": 1, "FAIL": 2}[verdict]
    return report


def statuses(report: dict[str, Any]) -> dict[str, str]:
    """id -> status (the last one for ids that repeat)."""
    return {f["id"]: f["status"] for f in report["findings"]}


READ_ONLY = re.compile(
    r"^(fsutil dirty query C:|bcdedit /enum \{current\}|reg query .*|wmic qfe get HotFixID|"
    r"wmic os get LocalDateTime /value|"
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
    sc.add_sha2_updates()
    r = sc.run("setup.cmd", "/check", "/verify-media")
    assert r.returncode == 0, r.stdout
    assert [c for c in r.calls if not READ_ONLY.match(c)] == []
    # The Windows checks read the updates, the clock and the manifest's hash.
    assert [c for c in r.calls if c.startswith(("reg query", "wmic"))] == [
        *[f'reg query "{CBS}" /k /f "{kb}"' for kb in ("KB3033929", "KB4474419", "KB4490628")],
        "wmic qfe get HotFixID", "wmic os get LocalDateTime /value"]
    assert r.calls.count('certutil -hashfile "manifest.json" SHA256') == 1
    assert r.calls.count('certutil -hashfile "config\\files.sha256" SHA256') == 1
    assert not sc.state.exists(), "/check created the state folder"
    assert not (wine.drive_c / "windows" / "system32" / "drivers" / "viostor.sys").exists()
    assert sc.fake.cert_store() == set() and sc.fake.driver_store() == {} and sc.fake.testsigning() == "No"
    # The plan lists exactly what a real run would do.
    would = [ln.split("would run: ", 1)[1] for ln in r.stdout.splitlines() if "would run: " in ln]
    copy = 'copy /y "drivers\\amd64\\viostor\\viostor.sys" "C:\\windows\\System32\\drivers\\viostor.sys"'
    expected = expected_install_calls(contract, "amd64")
    expected.insert(expected.index(expected_storage_calls(contract, "amd64")[0]), copy)
    assert would == expected
    for kb in ("KB3033929", "KB4474419", "KB4490628"):
        assert f"update {kb}     installed" in r.stdout
    assert "  system clock         year 2024" in r.stdout
    assert f"this media           manifest.json SHA-256 {sc.manifest_sha256()}" in r.stdout
    assert f"{len(media_files(sc.media))} file(s) checked, 0 problem(s)" in r.stdout
    assert "would ask:" in r.stdout and "Check finished: 0 warning(s)" in r.stdout


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
    sc.add_sha2_updates()
    r = sc.run("setup.cmd", "/force", "/verify-media")
    assert r.returncode == 0, r.stdout
    assert "0 warning(s)" in r.stdout
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
    installed = sc.record("installed-media.txt")
    assert installed[:5] == ["version=1.2.3", "build_id=b42", "label=AERO_GUEST_TOOLS", "signing_policy=test",
                             f"manifest_sha256={sc.manifest_sha256()}"]
    assert installed[5].startswith("date=") and len(installed) == 6
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

    assert "installed before     from this media" in r2.stdout and "other media" not in r2.stdout

    # verify.cmd: writes its reports, report.json as report.txt, and passes.
    sc.fake.set_reg_value(f"{SERVICES}\\viostor\\Enum", "Count", "REG_DWORD", "1")
    r3 = sc.run("verify.cmd")
    report = (sc.state / "report.txt").read_text(encoding="ascii")
    assert "RESULT: PASS" in report, report
    assert r3.returncode == 0, r3.stdout
    assert "all 12 CriticalDeviceDatabase entries map virtio-blk to viostor" in report
    assert "oem10.inf is in the driver store" in report and "test mode is on" in report
    assert "virtio-blk: service viostor (start type 0) drives 1 device(s)" in report
    assert f"all {len(media_files(sc.media))} files match config\\files.sha256" in report
    assert mutating(r3.calls) == []
    js = verify_report(sc, r3)
    assert js["manifest_sha256"] == sc.manifest_sha256() and js["clock_year"] == "2024"
    assert js["media"] == {"version": "1.2.3", "build_id": "b42", "label": "AERO_GUEST_TOOLS", "signing_policy": "test"}
    assert js["architecture"] == "amd64" and js["administrator"] is True
    assert statuses(js) == {
        "media": "PASS", "setup-state": "PASS", "installed-media": "PASS",
        **{f"driver-package:oem{n}.inf": "PASS" for n in (10, 11, 12)},
        "device:virtio-blk": "PASS", "storage:service": "PASS", "storage:file": "PASS", "storage:cdd": "PASS",
        "test-mode": "PASS", f"certificate:TrustedPublisher:{TRUST_THUMB}": "PASS",
        f"certificate:Root:{TEST_THUMB}": "PASS", f"certificate:TrustedPublisher:{TEST_THUMB}": "PASS",
        "publisher-certificate:redhat.cer": "PASS",
        "hotfix:KB3033929": "PASS", "hotfix:KB4474419": "PASS", "hotfix:KB4490628": "PASS", "clock": "PASS",
    }
    storage_file = next(f for f in js["findings"] if f["id"] == "storage:file")
    assert storage_file["detail"] == "C:\\windows\\System32\\drivers\\viostor.sys is present."

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
    # Every record is gone (installed-media.txt with them); the logs and reports stay.
    assert sorted(p.name for p in sc.state.iterdir()) == ["install.log", "report.json", "report.txt", "uninstall.log"]


def test_wine_x86_install_without_test_mode(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract, arches=["x86"], sha256_only=True)
    r = sc.run("setup.cmd", "/force", "/nointegritychecks", arch="x86")
    assert r.returncode == 0, r.stdout
    # 32-bit Windows does not enforce driver signatures: nothing to turn off there.
    assert "/nointegritychecks: not needed, 32-bit Windows 7" in r.stdout
    assert sc.record("nointegritychecks-enabled-by-setup.txt") == [] and sc.fake.nointegritychecks() is None
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
    assert r.calls_to("certutil")[:3] == ['certutil -hashfile "manifest.json" SHA256',
                                          'certutil -dump "certs\\redhat.cer"',
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
    assert sc.run("setup.cmd", "/force", "/skipstorage", "/nointegritychecks").returncode == 0
    assert sc.fake.testsigning() == sc.fake.nointegritychecks() == "Yes"
    sc.fake.mark_in_use("oem10.inf")
    sc.fake.lock_bcd()
    r = sc.run("uninstall.cmd", "/force")
    assert r.returncode == 1, r.stdout
    assert [c for c in r.calls if c.startswith("bcdedit")] == ["bcdedit /set testsigning off",
                                                                "bcdedit /set nointegritychecks off"]
    assert "3 item(s) could not be removed" in r.stdout
    assert "WARNING: bcdedit could not turn nointegritychecks off. It stays recorded." in r.stdout
    assert sc.record("installed-driver-packages.txt") == ["oem10.inf drivers\\amd64\\viostor\\viostor.inf"]
    assert sc.record("installed-certs.txt") == []
    assert sc.record("testsigning-enabled-by-setup.txt") == ["testsigning on"]
    assert sc.record("nointegritychecks-enabled-by-setup.txt") == ["nointegritychecks on"]
    assert {"setup-state.txt", "installed-media.txt"} <= {p.name for p in sc.state.iterdir()}
    assert sc.fake.testsigning() == sc.fake.nointegritychecks() == "Yes"


@pytest.mark.parametrize(
    ("damage", "code", "message"),
    [
        ("tamper", 14, "CHANGED  drivers\\amd64\\netkvm\\netkvm.sys"),
        ("truncate", 14, "SIZE     drivers\\amd64\\netkvm\\netkvm.sys"),
        ("delete", 14, "MISSING  drivers\\amd64\\netkvm\\netkvm.sys"),
        # files.sha256 made to match a changed file: manifest.json no longer lists it.
        ("relist", 14, "MANIFEST manifest.json does not list config\\files.sha256 with its SHA-256"),
        ("no_manifest", 14, "MANIFEST manifest.json is missing"),
        # certutil answers nothing for the file, twice: said as such, not as a changed file.
        ("unhashable", 14, "NOHASH   drivers\\amd64\\netkvm\\netkvm.sys (certutil -hashfile gave no SHA-256)"),
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
    elif damage == "delete":
        target.unlink()
    elif damage == "relist":
        target.write_bytes(data + b"!")
        write_hashes(sc.media)
    elif damage == "no_manifest":
        (sc.media / "manifest.json").unlink()
    sc.rehash()
    if damage == "unhashable":
        sc.fake.hash_media(sc.media, [p for p in all_files(sc.media) if not p.endswith("netkvm.sys")])
    r = sc.run("setup.cmd", "/force", "/verify-media")
    assert r.returncode == code, r.stdout
    assert message in r.stdout
    assert "1 problem(s)" in r.stdout
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
    assert "/nointegritychecks" in r.stdout
    assert sc.run("uninstall.cmd", "-bogus").returncode == 2
    assert sc.run("verify.cmd", "/bogus").returncode == 3


def test_wine_aero_doc_flags_force_nointegritychecks_and_skip_storage(wine: WinePrefix, tmp_path: Path,
                                                                      contract: Contract) -> None:
    """Aero's docs/windows7-guest-tools.md: setup.cmd /forcenointegritychecks and /skip-storage."""
    sc = _production(wine, tmp_path, contract)
    r = sc.run("setup.cmd", "/force", "/forcenointegritychecks", "/skip-storage")
    assert r.returncode == 0, r.stdout
    assert mutating(r.calls) == NOINTEGRITYCHECKS_CALLS
    assert sc.fake.nointegritychecks() == "Yes" and sc.record("storage-preseed.txt") == []
    assert "skipstorage=1" in sc.record("setup-state.txt")
    r2 = sc.run("uninstall.cmd", "/force")
    assert r2.returncode == 0, r2.stdout
    assert [c for c in mutating(r2.calls) if not c.startswith("pnputil -d")] == [
        f"certutil -delstore TrustedPublisher {TRUST_THUMB}", "bcdedit /set nointegritychecks off"]
    assert sc.fake.nointegritychecks() == "No"


def test_wine_aero_doc_flags_forcetestsigning_and_cleanup_storage(wine: WinePrefix, tmp_path: Path,
                                                                  contract: Contract) -> None:
    """/forcetestsigning turns test mode on under any policy; uninstall /cleanupstorage undoes the pre-seed."""
    sc = _production(wine, tmp_path, contract)
    r = sc.run("setup.cmd", "/quiet", "/noreboot", "/forcetestsigning")
    assert r.returncode == 0, r.stdout
    calls = expected_install_calls(contract, "amd64", testsigning=False)
    assert mutating(r.calls) == [calls[0], "bcdedit /set testsigning on", *calls[1:]]
    assert sc.fake.testsigning() == "Yes" and sc.record("storage-preseed.txt") == ["viostor viostor.sys"]
    sc.fake.set_reg_value(f"{SERVICES}\\viostor\\Enum", "Count", "REG_DWORD", "0")
    r2 = sc.run("uninstall.cmd", "/force", "/cleanupstorage")
    assert r2.returncode == 0, r2.stdout
    assert "bcdedit /set testsigning off" in mutating(r2.calls)
    assert f'reg add "{SERVICES}\\viostor" /v Start /t REG_DWORD /d "3" /f' in mutating(r2.calls)
    assert sc.fake.reg_values(f"{SERVICES}\\viostor")["Start"] == ("REG_DWORD", "3")
    assert sc.record("storage-preseed.txt") == [] and sc.fake.testsigning() == "No"


def test_wine_uninstall_cleanupstorage_without_enum_key_ends(wine: WinePrefix, tmp_path: Path,
                                                             contract: Contract) -> None:
    """uninstall /force /cleanupstorage when the storage service has no Enum key (it never drove a device).

    ``reg query`` of an absent key fails (exit code 1, message on stderr), so the
    ``for /f`` reading Enum\\Count sees no line: the service counts as unused and
    the pre-seed is undone. The runs are bounded: one that loops fails the test.
    """
    sc = Scenario(wine, tmp_path, contract)
    sc.add_sha2_updates()
    blk = contract.device("virtio-blk")
    keys = [f"{CDD}\\" + (h + s).replace("\\", "#").lower()
            for h in contract_ids(blk) for s in ("", "&CC_010000", "&CC_0100")]
    enum_query = f'reg query "{SERVICES}\\viostor\\Enum" /v Count'
    # Before any setup: no state, no service key, no CDD entries: nothing to undo.
    r0 = sc.run("uninstall.cmd", "/force", "/cleanupstorage", timeout=60)
    assert r0.returncode == 0, r0.stdout
    assert r0.calls == ("fsutil dirty query C:", enum_query, f'reg query "{SERVICES}\\viostor"',
                        *[f'reg query "{k}"' for k in keys])
    # After setup: the pre-seed is there, Enum still is not (no reboot onto virtio-blk yet).
    r1 = sc.run("setup.cmd", "/force")
    assert r1.returncode == 0, r1.stdout
    assert sc.fake.reg_values(f"{SERVICES}\\viostor\\Enum") is None
    assert all(sc.fake.reg_values(k) is not None for k in keys)
    r2 = sc.run("uninstall.cmd", "/force", "/cleanupstorage", timeout=60)
    assert r2.returncode == 0, r2.stdout
    assert enum_query in r2.calls and "REFUSED" not in r2.stdout
    assert [c for c in mutating(r2.calls) if c.startswith("reg ")] == [
        f'reg add "{SERVICES}\\viostor" /v Start /t REG_DWORD /d "3" /f',
        *[f'reg delete "{k}" /f' for k in keys],
    ]
    assert sc.fake.reg_values(f"{SERVICES}\\viostor")["Start"] == ("REG_DWORD", "3")
    assert all(sc.fake.reg_values(k) is None for k in keys) and sc.record("storage-preseed.txt") == []


def test_wine_forcesigningpolicy_overrides_the_media(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    """/forcesigningpolicy:none|production on test-signed media: no test certificates, no test mode."""
    sc = Scenario(wine, tmp_path, contract)
    sc.add_sha2_updates()
    without_test = expected_install_calls(contract, "amd64", testsigning=False, storage=False)
    for policy in ("none", "production", "nointegritychecks"):
        r = sc.run("setup.cmd", "/force", f"/forcesigningpolicy:{policy}", "/skipstorage")
        assert r.returncode == 0, r.stdout
        assert mutating(r.calls) == without_test, policy
        assert "set by /forcesigningpolicy; this media says test" in r.stdout
        assert sc.fake.testsigning() == "No" and sc.fake.cert_store() == {("TrustedPublisher", TRUST_THUMB.lower())}
        # The media stays what it is; the run records the policy it used.
        assert "signing_policy=test" in sc.record("installed-media.txt")
        assert f"signing_policy={'none' if policy == 'nointegritychecks' else policy}" in sc.record(
            "setup-state.txt")
        assert sc.run("uninstall.cmd", "/force").returncode == 0
    # And the other way: /forcesigningpolicy:test on production media wants test mode (/force turns it on).
    sc2 = Scenario(wine, tmp_path / "production", contract, signing_policy="production", certs=[],
                   cert_thumbprints={"redhat.cer": TRUST_THUMB})
    sc2.add_sha2_updates()
    r = sc2.run("setup.cmd", "/force", "/forcesigningpolicy:test", "/skipstorage")
    assert r.returncode == 0, r.stdout
    calls = expected_install_calls(contract, "amd64", testsigning=False, storage=False)
    assert mutating(r.calls) == [calls[0], "bcdedit /set testsigning on", *calls[1:]]


def test_wine_option_spellings_and_help_come_from_one_table(wine: WinePrefix, tmp_path: Path,
                                                           contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract)
    for script, options in (("setup.cmd", scripts.SETUP_OPTIONS), ("uninstall.cmd", scripts.UNINSTALL_OPTIONS)):
        r = sc.run(script, "/?")
        assert r.returncode == 0 and r.calls == ()
        for opt in options:
            for spelling in (opt.flag, *opt.aliases):
                if spelling not in ("/?", "/h", "/help"):
                    assert spelling in r.stdout, (script, spelling)
    # Every spelling parses (/check changes nothing); an unknown policy or a near miss does not.
    spellings = [s for o in scripts.SETUP_OPTIONS if o.variable not in ("HELP", "SIGNINGPOLICY")
                 for s in (o.flag, *o.aliases)]
    r = sc.run("setup.cmd", "/check", *(s.upper() for s in spellings), "/forcesigningpolicy:TEST")
    assert r.returncode == 0, r.stdout
    assert [c for c in r.calls if not READ_ONLY.match(c)] == []
    for bad in ("/forcesigningpolicy:bogus", "/forcesigningpolicy", "/skip_storage", "/forcetestsign"):
        r = sc.run("setup.cmd", "/check", bad)
        assert r.returncode == 2 and f'unknown option "{bad}"' in r.stdout and r.calls == (), bad
    sc.fake.set_reg_value(f"{SERVICES}\\viostor\\Enum", "Count", "REG_DWORD", "0")
    r = sc.run("uninstall.cmd", "/check", "/cleanup-storage", "/cleanup-storage-force", "/no-reboot")
    assert r.returncode == 0, r.stdout
    assert "would run: pnputil" not in r.stdout and [c for c in r.calls if not READ_ONLY.match(c)] == []


def test_wine_verify_media_needs_no_administrator(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    """/verify-media runs before the administrator check: bad media is exit 14 for anyone."""
    sc = Scenario(wine, tmp_path, contract, arches=["amd64"])
    sc.fake.set_admin(False)
    r = sc.run("setup.cmd", "/force", "/verify-media")
    assert r.returncode == 10, r.stdout
    assert f"{len(media_files(sc.media))} file(s) checked, 0 problem(s)" in r.stdout
    assert r.stdout.index("file(s) checked") < r.stdout.index("must run as Administrator")
    assert [c for c in r.calls if not c.startswith("certutil -hashfile ")] == ["fsutil dirty query C:"]
    assert len(r.calls_to("certutil")) == len(media_files(sc.media)) + 1  # + config\files.sha256 for manifest.json
    target = sc.media / "drivers/amd64/netkvm/netkvm.sys"
    target.write_bytes(target.read_bytes()[:-1] + b"?")
    sc.rehash()
    # "setup.cmd /verify-media /check" as a normal user: damaged media is 14, not 10.
    r = sc.run("setup.cmd", "/verify-media", "/check")
    assert r.returncode == 14, r.stdout
    assert "CHANGED  drivers\\amd64\\netkvm\\netkvm.sys (SHA-256 differs)" in r.stdout
    assert "not running as Administrator" not in r.stdout
    assert [c for c in r.calls if not c.startswith("certutil -hashfile ")] == ["fsutil dirty query C:"]
    assert not sc.state.exists()
    # verify.cmd needs no rights either, and says what it could not read.
    r2 = sc.run("verify.cmd")
    js = verify_report(sc, r2)
    assert js["administrator"] is False and r2.returncode == 2
    assert {i: s for i, s in statuses(js).items() if i in ("administrator", "media", "setup-state")} == {
        "administrator": "WARN", "media": "FAIL", "setup-state": "FAIL"}


def test_wine_nointegritychecks_is_undone_only_when_setup_set_it(wine: WinePrefix, tmp_path: Path,
                                                                 contract: Contract) -> None:
    sc = _production(wine, tmp_path, contract)
    r = sc.run("setup.cmd", "/force", "/nointegritychecks", "/skipstorage")
    assert r.returncode == 0, r.stdout
    assert mutating(r.calls) == NOINTEGRITYCHECKS_CALLS
    assert sc.fake.nointegritychecks() == "Yes" and sc.fake.testsigning() == "No"
    assert sc.record("nointegritychecks-enabled-by-setup.txt") == ["nointegritychecks on"]
    assert sc.record("testsigning-enabled-by-setup.txt") == []
    assert "Restart Windows to finish: boot settings take effect after a restart." in r.stdout

    # verify.cmd: works, but needs attention (WARN); the detail quotes a command.
    r3 = sc.run("verify.cmd")
    js = verify_report(sc, r3)
    assert r3.returncode == 1 and [f["id"] for f in js["findings"] if f["status"] != "PASS"] == ["integrity-checks"]
    nic = next(f for f in js["findings"] if f["id"] == "integrity-checks")
    assert nic["detail"] == (
        'nointegritychecks is on: Windows loads drivers without checking their signatures. Turn it off with '
        '"bcdedit /set nointegritychecks off" once the drivers are signed. '
        "setup.cmd /nointegritychecks turned it on; uninstall.cmd turns it off.")
    assert '\\"bcdedit /set nointegritychecks off\\"' in (sc.state / "report.json").read_text(encoding="ascii")

    # uninstall /check lists it and changes nothing; uninstall turns it off and forgets it.
    rc = sc.run("uninstall.cmd", "/check")
    assert rc.returncode == 0 and "would run: bcdedit /set nointegritychecks off" in rc.stdout
    assert "would run: bcdedit /set testsigning off" not in rc.stdout
    assert sc.record("nointegritychecks-enabled-by-setup.txt") and sc.fake.nointegritychecks() == "Yes"
    r4 = sc.run("uninstall.cmd", "/force")
    assert r4.returncode == 0, r4.stdout
    assert [c for c in mutating(r4.calls) if c.startswith("bcdedit")] == ["bcdedit /set nointegritychecks off"]
    assert "setup.cmd did not turn test mode on" in r4.stdout
    assert sc.fake.nointegritychecks() == "No" and sc.fake.testsigning() == "No"
    assert sorted(p.name for p in sc.state.iterdir()) == ["install.log", "report.json", "report.txt", "uninstall.log"]


def test_wine_nointegritychecks_set_before_setup_is_left_alone(wine: WinePrefix, tmp_path: Path,
                                                               contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract, signing_policy="production", certs=[],
                  cert_thumbprints={"redhat.cer": TRUST_THUMB})
    sc.fake.set_nointegritychecks(True)
    r = sc.run("setup.cmd", "/force", "/nointegritychecks", "/skipstorage")
    assert r.returncode == 0, r.stdout
    assert "nointegritychecks is already on" in r.stdout and not [c for c in r.calls if c.startswith("bcdedit /set")]
    assert sc.record("nointegritychecks-enabled-by-setup.txt") == []
    # Failing to record is no failure: uninstall leaves what it did not do.
    r2 = sc.run("uninstall.cmd", "/force")
    assert r2.returncode == 0, r2.stdout
    assert "setup.cmd did not set nointegritychecks" in r2.stdout
    assert not [c for c in r2.calls if c.startswith("bcdedit")] and sc.fake.nointegritychecks() == "Yes"
    # Once it is off, /check plans to set it, and changes nothing.
    sc.fake.set_nointegritychecks(False)
    r3 = sc.run("setup.cmd", "/check", "/nointegritychecks", "/skipstorage")
    assert r3.returncode == 0, r3.stdout
    assert "would run: bcdedit /set nointegritychecks on" in r3.stdout
    assert [c for c in r3.calls if not READ_ONLY.match(c)] == [] and sc.fake.nointegritychecks() == "No"


def test_wine_missing_updates_and_wrong_clock_warn(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    """Setup warns and still succeeds; verify reports WARN, and FAIL once the media is damaged."""
    sc = Scenario(wine, tmp_path, contract, arches=["amd64"])
    sc.fake.set_clock("20050301120000.000000+060")
    r = sc.run("setup.cmd", "/force", "/skipstorage")
    assert r.returncode == 0, r.stdout
    for kb, what in scripts.HOTFIXES:
        assert f"WARNING: update {kb} is not installed ({what})." in r.stdout
    assert "WARNING: the system clock says the year is 2005, which cannot be right." in r.stdout
    assert "Setup finished: 0 failed step(s), 4 warning(s)." in r.stdout
    assert [c for c in r.calls if c.startswith(("reg query", "wmic"))][:5] == [
        *[f'reg query "{CBS}" /k /f "{kb}"' for kb in ("KB3033929", "KB4474419", "KB4490628")],
        "wmic qfe get HotFixID", "wmic os get LocalDateTime /value"]
    log = (sc.state / "install.log").read_text(encoding="ascii")
    assert log.count("WARNING: update KB") == 3 and "the year is 2005" in log

    r2 = sc.run("verify.cmd")
    js = verify_report(sc, r2)
    assert r2.returncode == 1
    assert {i: s for i, s in statuses(js).items() if s != "PASS"} == {
        "hotfix:KB3033929": "WARN", "hotfix:KB4474419": "WARN", "hotfix:KB4490628": "WARN", "clock": "WARN"}
    clock = next(f for f in js["findings"] if f["id"] == "clock")
    assert clock["detail"] == ('the system clock says 2005, which cannot be right: signature checks fail on a wrong '
                               'clock. Set it in "Date and Time".')
    assert js["clock_year"] == "2005"

    # A damaged media: FAIL, with each damaged file and paths JSON-escaped.
    (sc.media / "drivers/amd64/netkvm/netkvm.inf").unlink()
    sc.rehash()
    r3 = sc.run("verify.cmd")
    js = verify_report(sc, r3)
    assert r3.returncode == 2
    bad = [f for f in js["findings"] if f["status"] == "FAIL"]
    assert bad == [
        {"id": "media-file", "status": "FAIL", "detail": "MISSING  drivers\\amd64\\netkvm\\netkvm.inf"},
        {"id": "media", "status": "FAIL",
         "detail": 'this media is damaged or was changed: 1 problem(s) above. Copy it again and check the copy '
                   'with "setup.cmd /verify-media".'},
    ]
    raw = (sc.state / "report.json").read_text(encoding="ascii")
    assert '"MISSING  drivers\\\\amd64\\\\netkvm\\\\netkvm.inf"' in raw
    assert mutating(r3.calls) == []


@pytest.mark.parametrize(
    ("clock", "expected"),
    [("20091231235959.000000+000", "CLOCK 2009 wrong"), ("20100101000000.000000+000", "CLOCK 2010 ok"),
     ("20501231235959.000000-300", "CLOCK 2050 ok"), ("20510101000000.000000+000", "CLOCK 2051 wrong"),
     ("2O24", "CLOCK unknown"), (None, "CLOCK unknown")],
)
def test_wine_checks_clock_bounds(wine: WinePrefix, tmp_path: Path, contract: Contract, clock: str | None,
                                  expected: str) -> None:
    """config\\checks.cmd clock: the year from wmic, judged against CLOCK_YEARS."""
    sc = Scenario(wine, tmp_path, contract, arches=["amd64"])
    if clock is None:
        (sc.fake.bin / "wmic.cmd").write_bytes(b"@echo off\r\nexit /b 1\r\n")  # WMI broken
    else:
        sc.fake.set_clock(clock)
    r = sc.wine.run_script(sc.media / "config" / "checks.cmd", ["clock"], fake=sc.fake)
    assert r.returncode == 0 and r.stdout.strip() == expected, r.stdout


def test_wine_checks_hotfixes_from_cbs_or_wmic(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    sc = Scenario(wine, tmp_path, contract, arches=["amd64"])
    sc.fake.add_reg_key(CBS + r"\Package_for_KB4490628~31bf3856ad364e35~amd64~~6.1.1.1")
    sc.fake.set_hotfixes(["KB3033929"])
    # Run from its own folder: it finds the media root itself.
    r = sc.wine.run_script(sc.media / "config" / "checks.cmd", ["hotfixes", "bogus", "manifest"], fake=sc.fake)
    assert r.returncode == 2
    assert r.stdout.strip().splitlines() == [
        "HOTFIX KB3033929 yes SHA-2 code signing support, 2015",
        "HOTFIX KB4474419 no SHA-2 code signing support, 2019",
        "HOTFIX KB4490628 yes servicing stack update that KB4474419 needs",
        "ERROR unknown check bogus",
        f"MANIFEST {sc.manifest_sha256()}",
    ]
    # All found in the servicing packages: wmic is not asked.
    sc.fake.add_reg_key(CBS + r"\Package_for_KB3033929~31bf3856ad364e35~amd64~~6.1.1.2")
    sc.fake.add_reg_key(CBS + r"\Package_for_KB4474419~31bf3856ad364e35~amd64~~6.1.3.1")
    r = sc.wine.run_script(sc.media / "config" / "checks.cmd", ["hotfixes"], fake=sc.fake)
    assert r.stdout.count(" yes ") == 3 and not r.calls_to("wmic")


def test_wine_installed_media_and_other_media(wine: WinePrefix, tmp_path: Path, contract: Contract) -> None:
    """installed-media.txt names the media of the last run; other media than that is a warning, not an error."""
    sc = Scenario(wine, tmp_path, contract, arches=["amd64"])
    sc.add_sha2_updates()
    assert sc.run("setup.cmd", "/force", "/skipstorage").returncode == 0
    first = sc.record("installed-media.txt")
    assert first[4] == f"manifest_sha256={sc.manifest_sha256()}"
    # A newer media: warned about, setup still succeeds, and then records the new media.
    drivers = make_drivers(["amd64"])
    other = build_media(tmp_path / "other", render(contract, drivers, version="1.2.4", build_id="b43"), drivers)
    sc.fake.hash_media(other, all_files(other))
    r = wine.run_script(other / "setup.cmd", ["/check", "/skipstorage"], fake=sc.fake)
    assert r.returncode == 0, r.stdout
    assert "WARNING: setup.cmd ran here before from other media: Guest Tools 1.2.3 (build b42)," in r.stdout
    assert f"manifest.json SHA-256 {sc.manifest_sha256()}. This media is Guest Tools 1.2.4" in r.stdout
    assert "Same version and build" not in r.stdout
    assert sc.record("installed-media.txt") == first, "/check rewrote installed-media.txt"
    # verify.cmd from the other media says so too.
    r2 = wine.run_script(other / "verify.cmd", fake=sc.fake)
    js = json.loads((sc.state / "report.json").read_bytes())
    assert r2.returncode == 1 and statuses(js)["installed-media"] == "WARN"
    # The same version and build with other files (a changed copy).
    (sc.media / "README.txt").write_bytes(b"changed\r\n")
    write_hashes(sc.media)
    write_manifest(sc.media)
    sc.rehash()
    r3 = sc.run("setup.cmd", "/force", "/skipstorage")
    assert r3.returncode == 0, r3.stdout
    assert "WARNING: setup.cmd ran here before from other media: Guest Tools 1.2.3 (build b42)," in r3.stdout
    assert "Same version and build, other files: one of the two copies was changed." in r3.stdout
    assert sc.record("installed-media.txt")[4] == f"manifest_sha256={sc.manifest_sha256()}" != first[4]


def test_stub_log_is_read_in_call_number_order_and_refused_when_broken(tmp_path: Path) -> None:
    """The harness reads calls by number (10 after 9), and a gap or an unfinished record is an error."""
    fake = FakeWindows(tmp_path / "fake")
    for n in range(1, 12):
        (fake.log / str(n)).mkdir()
        (fake.log / str(n) / "call.txt").write_bytes(f"sc query s{n}\r\n".encode("ascii"))
    assert fake.calls() == tuple(f"sc query s{n}" for n in range(1, 12))
    (fake.log / "12").mkdir()  # a number taken, its line not written
    with pytest.raises(AssertionError):
        fake.calls()
    (fake.log / "12").rmdir()
    shutil.rmtree(fake.log / "5")
    with pytest.raises(AssertionError):
        fake.calls()
    fake.clear_calls()
    assert fake.calls() == ()
