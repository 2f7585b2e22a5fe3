"""Signing catalogs and drivers with osslsigncode: verified by osslsigncode and by our own reader and checks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from aero_media.devtools import testcert
from aero_media.devtools.pestub import build_pe
from aero_media.errors import ToolError, UsageError
from aero_media.spec.contract import Contract
from aero_media.spec.load import load_contract
from aero_media.spec.types import Arch, SigningPolicy
from aero_media.win7.catalog import CatalogError, load_catalog, parse_catalog
from aero_media.win7.catalogmake import CatalogMemberFile, make_catalog
from aero_media.win7.certs import PEM_KEY_MARKER
from aero_media.win7.checks import check_package
from aero_media.win7.findings import CheckPolicy, PackageReport, format_table
from aero_media.win7.pe import authenticode_hash, image_checksum, pe_info
from aero_media.win7.signing import (
    Osslsigncode,
    SigningKey,
    check_signing_time,
    key_inside,
    refuse_key_inside,
    sign_catalog,
    sign_pe,
)
from tests.conftest import REPO
from tests.lib.needs import need_tool
from tests.lib.trees import inf_for

EPOCH = 315532800  # 1980-01-01: SOURCE_DATE_EPOCH's default, long before "now"
VERIFY_CATALOG = (2, 8)  # `verify` of a .cat and `verify -catalog` need osslsigncode 2.8


def tool() -> Osslsigncode:
    found = Osslsigncode.find(need_tool("osslsigncode"))
    if found.version < VERIFY_CATALOG:
        pytest.skip(f"osslsigncode {found.version} cannot verify catalogs (needs 2.8)")
    return found


def verify(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool().path, "verify", *map(str, args)], capture_output=True, text=True)


@dataclass(frozen=True)
class Signed:
    """One test-signed package folder: INF, unsigned and embed-signed .sys, signed catalog."""

    arch: Arch
    pkg: Path
    cert: testcert.TestCert
    key: SigningKey

    @property
    def cat(self) -> Path:
        return self.pkg / "viostor.cat"

    @property
    def unsigned(self) -> Path:
        """The .sys before embedded signing, kept outside the package folder (the checks scan all of it)."""
        return self.pkg.parent / "unsigned" / "viostor.sys"

    @property
    def pe_files(self) -> list[Path]:
        return [self.pkg / "viostor.sys", self.unsigned]


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> testcert.TestCert:
    # Valid from the build epoch, so signatures made "at" 1980 are inside its validity.
    return testcert.make_test_cert(tmp_path_factory.mktemp("keys"), not_before=EPOCH)


def unsigned_sys(arch: Arch) -> bytes:
    """Not the stand-in marker (the checks would call it a placeholder); odd-sized, so its hash is padded."""
    image = bytearray(build_pe(arch.pe_machine, marker=b"test driver viostor " + arch.value.encode()) + b"\1\2\3")
    offset = int.from_bytes(image[0x3C:0x40], "little") + 24 + 64
    image[offset:offset + 4] = image_checksum(bytes(image), offset).to_bytes(4, "little")
    return bytes(image)


def make_signed(root: Path, arch: Arch, cert: testcert.TestCert) -> Signed:
    """What the pipeline does: embed-sign the boot driver, catalog the package, sign the catalog."""
    key = SigningKey(cert.cert_pem, cert.key_pem)
    pkg = root / arch.value / "viostor"
    unsigned = root / arch.value / "unsigned" / "viostor.sys"
    pkg.mkdir(parents=True)
    unsigned.parent.mkdir()
    (pkg / "viostor.inf").write_bytes(inf_for("viostor", arch.value))
    unsigned.write_bytes(unsigned_sys(arch))
    sign_pe(unsigned, pkg / "viostor.sys", key, signing_time=EPOCH, tool=tool())
    catalog = make_catalog([CatalogMemberFile(n, pkg / n) for n in ("viostor.inf", "viostor.sys")], arch,
                           this_update=EPOCH)
    sign_catalog(catalog, pkg / "viostor.cat", key, signing_time=EPOCH, tool=tool())
    return Signed(arch, pkg, cert, key)


@pytest.fixture(scope="module", params=[Arch.AMD64, Arch.X86], ids=str)
def signed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           cert: testcert.TestCert) -> Signed:
    return make_signed(tmp_path_factory.mktemp("pkg"), request.param, cert)


@pytest.fixture(scope="module")
def contract() -> Contract:
    return load_contract(REPO / "specs" / "devices.yaml")


def check(pkg: Path, arch: Arch, contract: Contract) -> PackageReport:
    return check_package(pkg, arch, contract.device("virtio-blk"), CheckPolicy(signing_policy=SigningPolicy.TEST))


# --- osslsigncode as the oracle ----------------------------------------------------------------------


def test_osslsigncode_verifies_the_catalog_against_the_test_root(signed):
    done = verify("-CAfile", signed.cert.cert_pem, "-in", signed.cat)
    assert done.returncode == 0 and "Signature verification: ok" in done.stdout, done.stdout + done.stderr
    assert "Message digest algorithm: SHA1" in done.stdout


def test_osslsigncode_finds_every_pe_member_signed_or_not(signed):
    for sys_file in signed.pe_files:
        done = verify("-CAfile", signed.cert.cert_pem, "-catalog", signed.cat, "-in", sys_file)
        assert done.returncode == 0, done.stdout + done.stderr
        current = re.search(r"Current message digest\s*:\s*([0-9A-F]+)", done.stdout)
        calculated = re.search(r"Calculated message digest\s*:\s*([0-9A-F]+)", done.stdout)
        assert current and calculated
        assert current.group(1) == calculated.group(1) == authenticode_hash(sys_file).hex().upper()


def test_embedded_signature_verifies_and_keeps_the_image_hash(signed):
    sys_file = signed.pkg / "viostor.sys"
    done = verify("-CAfile", signed.cert.cert_pem, "-in", sys_file)
    assert done.returncode == 0 and "Signature verification: ok" in done.stdout, done.stdout
    info = pe_info(sys_file)
    assert info.has_signature and info.signature_digest == "sha1" and info.checksum_ok
    assert info.machine == signed.arch.pe_machine
    assert authenticode_hash(sys_file) == authenticode_hash(signed.unsigned)
    assert pe_info(signed.unsigned).checksum_ok and len(signed.unsigned.read_bytes()) % 8


# --- our own reader and checks -----------------------------------------------------------------------


def test_our_reader_sees_a_sha1_signed_windows_7_catalog(signed):
    cat = load_catalog(signed.cat)
    assert cat.signed and cat.digest_algorithms == ("sha1",) and cat.subject_algorithm == "sha1"
    primary = cat.primary
    assert primary is not None and primary.content_digest_ok is True and primary.cert_hash_algorithm == "sha1"
    assert primary.certificate == signed.cert.cer.read_bytes()
    assert primary.subject == "Common Name: Aero virtio test signing" and primary.timestamp is None
    assert cat.os_attr == signed.arch.catalog_os and cat.attribute("OSAttr") == "2:6.1"
    assert sorted((m.file, m.kind, m.os_attr) for m in cat.members) == [
        ("viostor.inf", "flat", "2:6.1"), ("viostor.sys", "pe", "2:6.1")]
    # osslsigncode cannot check INF membership ("unsupported file type"): our SHA-1 is the check.
    import hashlib

    inf = (signed.pkg / "viostor.inf").read_bytes()
    member = cat.find(hashlib.sha1(inf).digest())
    assert member is not None and member.file == "viostor.inf"


def test_check_package_accepts_the_test_signed_package(signed, contract):
    report = check(signed.pkg, signed.arch, contract)
    assert report.errors == () and report.warnings == (), format_table([report])
    assert set(report.facts["catalog"]["matched"]) == {"viostor.inf", "viostor.sys"}
    assert report.facts["catalog"]["digest_algorithms"] == ["sha1"]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_changed_sys_fails_osslsigncode_and_our_check(signed, contract, tmp_path):
    pkg = tmp_path / "viostor"
    shutil.copytree(signed.pkg, pkg)
    unsigned = tmp_path / "unsigned.sys"
    shutil.copy(signed.unsigned, unsigned)
    _flip(pkg / "viostor.sys", 0x210)  # a byte of the .text section
    _flip(unsigned, 0x210)
    for sys_file in (pkg / "viostor.sys", unsigned):
        assert verify("-CAfile", signed.cert.cert_pem, "-catalog", pkg / "viostor.cat", "-in", sys_file).returncode
    assert verify("-CAfile", signed.cert.cert_pem, "-in", pkg / "viostor.sys").returncode  # embedded, too
    report = check(pkg, signed.arch, contract)
    finding = {f.code: f for f in report.errors}["catalog-missing-file"]
    assert finding.file == "viostor.sys" and "is not in viostor.cat" in finding.message


def test_a_changed_inf_fails_our_check(signed, contract, tmp_path):
    pkg = tmp_path / "viostor"
    shutil.copytree(signed.pkg, pkg)
    inf = (pkg / "viostor.inf").read_bytes()
    (pkg / "viostor.inf").write_bytes(inf.replace(b"StartType", b"Starttype", 1))  # same meaning, other bytes
    report = check(pkg, signed.arch, contract)
    assert [f.code for f in report.errors] == ["catalog-missing-inf"], format_table([report])


def test_a_changed_catalog_fails_osslsigncode_and_our_check(signed, contract, tmp_path):
    pkg = tmp_path / "viostor"
    shutil.copytree(signed.pkg, pkg)
    data = (pkg / "viostor.cat").read_bytes()
    pos = data.index("File".encode("utf-16-be"))  # inside the signed trust list
    (pkg / "viostor.cat").write_bytes(data[:pos] + b"\0f" + data[pos + 2:])
    assert verify("-CAfile", signed.cert.cert_pem, "-in", pkg / "viostor.cat").returncode
    assert "catalog-tampered" in {f.code for f in check(pkg, signed.arch, contract).errors}


# --- reproducibility ---------------------------------------------------------------------------------

_REBUILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    time.tzset()
    from tests.win7.test_signing import EPOCH, make_signed
    from aero_media.devtools.testcert import TestCert
    from aero_media.spec.types import Arch
    c = sys.argv[2:]
    cert = TestCert(Path(c[0]), Path(c[1]), Path(c[2]), c[3], Path(c[4]))
    make_signed(Path(sys.argv[1]), Arch.AMD64, cert)
""")


def test_same_key_and_inputs_give_the_same_bytes_in_other_folders_and_time_zones(cert, tmp_path):
    tool()
    first = make_signed(tmp_path / "one", Arch.AMD64, cert)
    env = {**os.environ, "TZ": "Pacific/Kiritimati", "PYTHONPATH": str(REPO)}
    other = tmp_path / "two" / "deeper"
    subprocess.run([sys.executable, "-c", _REBUILD, str(other), str(cert.cer), str(cert.key_pem), str(cert.pfx),
                    cert.thumbprint, str(cert.cert_pem)], check=True, env=env, cwd=tmp_path, capture_output=True)
    for name in ("viostor.cat", "viostor.sys"):
        assert (other / "amd64" / "viostor" / name).read_bytes() == (first.pkg / name).read_bytes(), name
    # Re-signing an already signed driver gives the same bytes as signing the unsigned one.
    again = tmp_path / "again.sys"
    sign_pe(first.pkg / "viostor.sys", again, first.key, signing_time=EPOCH, tool=tool())
    assert again.read_bytes() == (first.pkg / "viostor.sys").read_bytes()
    # Signing in place works and is atomic: only the finished files are left.
    sign_catalog(first.cat, first.cat, first.key, signing_time=EPOCH, tool=tool())
    assert first.cat.read_bytes() == (other / "amd64" / "viostor" / "viostor.cat").read_bytes()
    assert sorted(p.name for p in first.pkg.iterdir()) == ["viostor.cat", "viostor.inf", "viostor.sys"]


# --- refusals ----------------------------------------------------------------------------------------


def test_signing_time_outside_the_certificate_is_refused(cert, tmp_path):
    need_tool("osslsigncode", "sign_catalog looks for it before it checks the time")
    check_signing_time(cert.cert_pem, EPOCH)
    check_signing_time(cert.cer, EPOCH)  # DER works too
    for when in (EPOCH - 1, 4102444799):  # before notBefore; 2099, after notAfter
        with pytest.raises(UsageError) as exc:
            sign_catalog(make_catalog([CatalogMemberFile("a.inf", b"x")], Arch.AMD64, this_update=EPOCH),
                         tmp_path / "a.cat", SigningKey(cert.cert_pem, cert.key_pem), signing_time=when)
        text = exc.value.render()
        assert "is outside the validity of certificate 'Common Name: Aero virtio test signing'" in text
        assert "\n" not in text and "; fix: " in text
    assert list(tmp_path.iterdir()) == []


def test_a_certificate_not_for_code_signing_is_refused(tmp_path):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(dt.datetime(1979, 1, 1)).not_valid_after(dt.datetime(2040, 1, 1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    path = tmp_path / "web.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(UsageError, match="is not for code signing"):
        check_signing_time(path, EPOCH)


def test_inputs_that_are_not_catalogs_are_refused(cert, tmp_path):
    key = SigningKey(cert.cert_pem, cert.key_pem)
    with pytest.raises(CatalogError, match="placeholder catalog cannot be signed"):
        sign_catalog(b"AERO-PLACEHOLDER-CATALOG\r\nnot signed\r\n", tmp_path / "p.cat", key, signing_time=EPOCH,
                     tool=tool())
    with pytest.raises(CatalogError, match="not a valid catalog"):
        sign_catalog(b"\x30\x03abc", tmp_path / "p.cat", key, signing_time=EPOCH, tool=tool())
    assert list(tmp_path.iterdir()) == []


def _fake(tmp_path: Path, body: str) -> str:
    path = tmp_path / "osslsigncode"
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return str(path)


def test_missing_or_old_osslsigncode_is_a_one_line_tool_error(tmp_path, monkeypatch):
    with pytest.raises(ToolError) as exc:
        Osslsigncode.find(str(tmp_path / "nowhere" / "osslsigncode"))
    assert "is not installed" in exc.value.render() and "apt-get install osslsigncode" in exc.value.render()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolError, match="osslsigncode is not installed"):
        sign_pe(b"MZ", tmp_path / "x.sys", SigningKey(tmp_path / "c", tmp_path / "k"), signing_time=EPOCH)
    old = _fake(tmp_path, "print('osslsigncode 2.3, using:')\nprint('\\tOpenSSL 3.0.13')\n")
    with pytest.raises(ToolError) as exc:
        Osslsigncode.find(old)
    text = exc.value.render()
    assert "is osslsigncode 2.3, too old" in text and "2.4 or newer" in text and "apt-get install osslsigncode" in text
    assert "\n" not in text
    mute = _fake(tmp_path, "print('something else')\n")
    with pytest.raises(ToolError, match="does not say which osslsigncode version"):
        Osslsigncode.find(mute)


def test_a_wrong_pe_checksum_from_the_tool_is_fixed(cert, tmp_path):
    """Should an osslsigncode leave the CheckSum stale, sign_pe recomputes it (outside hash and signature)."""
    real = tool().path
    wrapper = _fake(tmp_path, textwrap.dedent(f"""
        import subprocess, sys
        rc = subprocess.run([{real!r}, *sys.argv[1:]]).returncode
        if rc == 0 and "-out" in sys.argv:
            out = sys.argv[sys.argv.index("-out") + 1]
            data = bytearray(open(out, "rb").read())
            pe = int.from_bytes(data[0x3C:0x40], "little")
            data[pe + 88:pe + 92] = b"\\x11\\x11\\x11\\x11"
            open(out, "wb").write(data)
        sys.exit(rc)
    """))
    key = SigningKey(cert.cert_pem, cert.key_pem)
    out = tmp_path / "out" / "viostor.sys"
    sign_pe(unsigned_sys(Arch.AMD64), out, key, signing_time=EPOCH, tool=Osslsigncode.find(wrapper))
    assert pe_info(out).checksum_ok
    assert verify("-CAfile", cert.cert_pem, "-in", out).returncode == 0
    reference = tmp_path / "ref.sys"
    sign_pe(unsigned_sys(Arch.AMD64), reference, key, signing_time=EPOCH, tool=tool())
    assert out.read_bytes() == reference.read_bytes()


def test_the_private_key_never_shows_and_a_failed_signing_leaves_the_old_file(cert, tmp_path):
    other = testcert.make_test_cert(tmp_path / "other", "other", not_before=EPOCH)
    mismatched = SigningKey(cert.cert_pem, other.key_pem)  # the key of another certificate
    dest = tmp_path / "out" / "viostor.cat"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    catalog = make_catalog([CatalogMemberFile("a.inf", b"x")], Arch.AMD64, this_update=EPOCH)
    with pytest.raises(ToolError) as exc:
        sign_catalog(catalog, dest, mismatched, signing_time=EPOCH, tool=tool())
    text = exc.value.render()
    assert text.startswith("osslsigncode could not sign viostor.cat") and "\n" not in text
    body = [ln for ln in other.key_pem.read_text().splitlines() if not ln.startswith("-----")]
    assert not any(ln in text for ln in body) and PEM_KEY_MARKER not in text
    assert dest.read_bytes() == b"old" and sorted(p.name for p in dest.parent.iterdir()) == ["viostor.cat"]
    with pytest.raises(UsageError, match="the private key does not exist"):
        sign_catalog(catalog, dest, SigningKey(cert.cert_pem, tmp_path / "gone.pem"), signing_time=EPOCH,
                     tool=tool())
    # A successful signing copies the key nowhere either.
    sign_catalog(catalog, dest, SigningKey(cert.cert_pem, cert.key_pem), signing_time=EPOCH, tool=tool())
    assert sorted(p.name for p in dest.parent.iterdir()) == ["viostor.cat"]
    assert PEM_KEY_MARKER.encode() not in dest.read_bytes()
    assert parse_catalog(dest.read_bytes()).signed


def test_a_key_inside_the_checkout_is_refused(tmp_path):
    checkout = tmp_path / "repo"
    (checkout / "keys").mkdir(parents=True)
    inside = checkout / "keys" / "test.key.pem"
    inside.write_text("not really a key")
    outside = tmp_path / "home" / ".config" / "aero" / "test.key.pem"
    outside.parent.mkdir(parents=True)
    outside.write_text("not really a key")
    with pytest.raises(UsageError) as exc:
        refuse_key_inside(inside, checkout, "signing.key in the spec")
    assert exc.value.render() == (
        f"{inside}: the private key is inside the checkout ({checkout}); a committed key is a leaked key; "
        "fix: keep it outside (e.g. ~/.config/aero-virtio-media/test.key.pem) and point signing.key in the spec at it")
    refuse_key_inside(outside, checkout)
    assert key_inside(checkout / "keys" / ".." / "keys" / "test.key.pem", checkout)
    assert not key_inside(checkout / ".." / "home" / ".config" / "aero" / "test.key.pem", checkout)
    # Through links, either way: a link outside to a key in the tree, a link in the tree to a key outside.
    (tmp_path / "link.pem").symlink_to(inside)
    (checkout / "keys" / "out.pem").symlink_to(outside)
    assert key_inside(tmp_path / "link.pem", checkout) and key_inside(checkout / "keys" / "out.pem", checkout)
    assert key_inside(inside, checkout / "keys" / "..")


def test_expired_by_names_the_certificates_past_their_end(tmp_path: Path) -> None:
    import datetime as dt

    from aero_media.win7.signing import expired_by

    made = testcert.make_test_cert(tmp_path / "c", days=10, not_before=315532800)
    now = dt.datetime.now(dt.UTC)
    assert expired_by(made.cer, now) == []
    ((subject, end),) = expired_by(made.cer, now + dt.timedelta(days=11))
    assert "Aero virtio test signing" in subject and now < end < now + dt.timedelta(days=11)


@pytest.mark.parametrize(("days", "name", "message"), [
    (10_000_000, "aero-test", "--days 10000000 must be from 1 to 36500"),
    (10, "../evil", "--name '../evil' is not a plain file name"),
    (10, "", "--name '' is not a plain file name"),
])
def test_make_test_cert_refuses_bad_days_and_names(tmp_path: Path, days: int, name: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        testcert.make_test_cert(tmp_path / "c", name=name, days=days)
    assert not (tmp_path / "c").exists() or list((tmp_path / "c").iterdir()) == []
    assert not (tmp_path / "evil.cer").exists()
