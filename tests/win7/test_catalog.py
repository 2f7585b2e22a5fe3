"""Catalog reader: real upstream viostor catalogs, generated ones, placeholders and garbage."""

from __future__ import annotations

import hashlib
import re
import subprocess
from datetime import UTC, datetime

import pytest

from aero_media.devtools.pestub import build_pe
from aero_media.errors import ValidationError
from aero_media.win7.catalog import CatalogError, is_placeholder, load_catalog, parse_catalog
from aero_media.win7.pe import MACHINE_AMD64, authenticode_hash
from tests.lib.drivers_fixtures import CatMember, build_ctl, make_catalog, member_for, signed_data, wrap_catalog
from tests.lib.needs import need_tool

INF = b"[Version]\r\nSignature=\"$Windows NT$\"\r\n"
SYS = build_pe(MACHINE_AMD64, marker=b"catalog test")


# --- real upstream catalogs ------------------------------------------------------------------


@pytest.mark.parametrize("arch, os_attr", [("x86", "7X86"), ("amd64", "7X64,Server2008R2X64")])
def test_real_sha1_catalog_build_17300(realdata, arch, os_attr):
    cat = load_catalog(realdata / "cat" / "viostor" / arch / "viostor.win7.build17300.cat")
    assert cat.signed and not cat.placeholder
    assert cat.digest_algorithms == ("sha1",)
    signer = cat.primary
    assert "Red Hat, Inc" in signer.subject and "DigiCert Assured ID Code Signing CA-1" in signer.issuer
    assert signer.not_before == datetime(2019, 2, 15, tzinfo=UTC)
    assert signer.not_after == datetime(2019, 12, 31, 12, tzinfo=UTC)
    assert signer.timestamp == "authenticode" and signer.cert_hash_algorithm == "sha1"
    assert signer.content_digest_ok is True
    assert cat.subject_algorithm == "sha1" and cat.os_attr == os_attr
    assert cat.attribute("hwid4") == "pci\\ven_1af4&dev_1042"
    assert sorted((m.file, m.kind, m.digest_algorithm, m.os_attr) for m in cat.members) == [
        ("viostor.inf", "flat", "sha1", "2:6.1"), ("viostor.sys", "pe", "sha1", "2:6.1")]
    inf = (realdata / "inf" / "viostor" / arch / "viostor.win7.61.80.104.17300.inf").read_bytes()
    member = cat.find(hashlib.sha1(inf).digest())
    assert member is not None and member.file == "viostor.inf"
    assert member.tag == hashlib.sha1(inf).hexdigest().upper()
    # The newest INF (build 172) is a different file: not in the 173 catalog.
    newest = (realdata / "inf" / "viostor" / arch / "viostor.inf").read_bytes()
    assert cat.find(hashlib.sha1(newest).digest()) is None


@pytest.mark.parametrize("arch", ["x86", "amd64"])
def test_real_sha256_only_catalog_build_17600(realdata, arch):
    cat = load_catalog(realdata / "cat" / "viostor" / arch / "viostor.win7.build17600.cat")
    assert cat.digest_algorithms == ("sha256",)
    assert cat.primary.timestamp == "rfc3161"
    assert cat.primary.cert_hash_algorithm == "sha256"
    assert "Symantec Class 3 SHA256 Code Signing CA - G2" in cat.primary.issuer
    assert cat.primary.not_after.year == 2022
    assert cat.member_algorithms == ("sha1",)  # members stay SHA-1 even here
    inf = (realdata / "inf" / "viostor" / arch / "viostor.win7.61.81.104.17600.inf").read_bytes()
    assert cat.find(hashlib.sha1(inf).digest()).file == "viostor.inf"
    json = cat.to_json()
    assert json["digest_algorithms"] == ["sha256"] and json["signed"] is True and json["members"] == 2


def test_editing_a_member_hash_breaks_the_signed_digest(realdata):
    data = bytearray((realdata / "cat" / "viostor" / "amd64" / "viostor.win7.build17300.cat").read_bytes())
    tag = "4F7062F46C9C2243230770D45767FB2238F777CB".encode("utf-16-le")  # viostor.sys member tag
    pos = data.index(tag)
    data[pos:pos + 2] = "0".encode("utf-16-le")
    cat = parse_catalog(bytes(data), "viostor.cat")
    assert cat.primary.content_digest_ok is False


def test_truncated_real_catalog_is_a_catalog_error(realdata):
    data = (realdata / "cat" / "viostor" / "x86" / "viostor.win7.build17300.cat").read_bytes()
    with pytest.raises(CatalogError, match=r"viostor\.cat is not a valid catalog"):
        parse_catalog(data[: len(data) // 2], "viostor.cat")


# --- generated catalogs -----------------------------------------------------------------------


def test_generated_catalog_round_trips_members_and_attributes():
    ctl = build_ctl([member_for("a.inf", INF), member_for("a.sys", SYS)], os_attr="7X86",
                    hwids=("PCI\\VEN_1AF4&DEV_1042",))
    cat = parse_catalog(wrap_catalog(ctl), "a.cat")
    assert not cat.signed and cat.primary is None and cat.digest_algorithms == ()
    assert cat.os_attr == "7X86" and cat.attribute("HWID1") == "pci\\ven_1af4&dev_1042"
    assert cat.find(hashlib.sha1(INF).digest()).kind == "flat"
    assert cat.find(authenticode_hash(SYS)).file == "a.sys"
    assert cat.find(hashlib.sha1(SYS).digest()) is None  # PE files are listed by image hash, not file hash


def test_generated_signed_catalogs_report_signer_and_algorithms():
    sha1 = parse_catalog(make_catalog({"a.inf": INF}), "a.cat")
    assert sha1.digest_algorithms == ("sha1",) and sha1.primary.content_digest_ok
    assert sha1.primary.subject == "Common Name: Aero Test Signer, Organization: Aero tests"
    sha256 = parse_catalog(make_catalog({"a.inf": INF}, digest="sha256", cert_hash="sha256", timestamped=False), "b")
    assert sha256.digest_algorithms == ("sha256",) and sha256.primary.cert_hash_algorithm == "sha256"
    assert sha256.primary.timestamp is None


def test_sha256_member_list():
    ctl = build_ctl([member_for("a.inf", INF, "sha256")], algo="sha256")
    cat = parse_catalog(wrap_catalog(ctl), "a.cat")
    assert cat.subject_algorithm == "sha256" and cat.member_algorithms == ("sha256",)
    assert cat.find(hashlib.sha256(INF).digest()) is not None


def test_member_without_indirect_data_falls_back_to_its_hex_tag():
    member = CatMember("x", hashlib.sha1(b"x").digest(), "flat")
    ctl = build_ctl([member])
    cat = parse_catalog(wrap_catalog(ctl), "a.cat")
    assert cat.members[0].tag == member.digest.hex().upper()


def test_placeholder_is_recognised_and_carries_its_text():
    data = b"AERO-PLACEHOLDER-CATALOG\r\nThis is not a signed Windows catalog.\r\n"
    assert is_placeholder(data)
    cat = parse_catalog(data, "viostor.cat")
    assert cat.placeholder and not cat.signed and cat.members == ()
    assert cat.placeholder_text == "This is not a signed Windows catalog."
    assert cat.to_json()["placeholder"] is True
    assert not is_placeholder(b"aero-placeholder-catalog")


@pytest.mark.parametrize("data, needle", [
    (b"", "is empty"),
    (b"\x30\x82\x01", "is not a valid catalog"),
    (b"AERO" * 50, "is not a valid catalog"),
    (signed_data("1.2.840.113549.1.7.1", b"\x04\x03abc", None), "not a certificate trust list"),
    (bytes.fromhex("3011 06092a864886f70d010701 a004040261 62"), "not signed data"),  # PKCS#7 "data"
])
def test_garbage_raises_catalog_error(data, needle):
    with pytest.raises(CatalogError) as exc:
        parse_catalog(data, "bad.cat")
    assert needle in exc.value.message and "bad.cat" in exc.value.message
    assert isinstance(exc.value, ValidationError) and exc.value.hint


def test_trust_list_that_is_not_a_catalog_is_rejected():
    ctl = bytearray(build_ctl([member_for("a.inf", INF)]))
    usage = bytes.fromhex("060a2b0601040182370c0101")  # szOID_CATALOG_LIST
    pos = ctl.index(usage)
    ctl[pos + len(usage) - 1] = 0x02
    with pytest.raises(CatalogError, match="not a catalog"):
        parse_catalog(wrap_catalog(bytes(ctl)), "x.cat")




def test_osslsigncode_finds_the_pe_hash_in_a_generated_catalog(tmp_path):
    sys_path = tmp_path / "d.sys"
    cat_path = tmp_path / "d.cat"
    sys_path.write_bytes(SYS)
    cat_path.write_bytes(make_catalog({"d.inf": INF, "d.sys": SYS}))
    out = subprocess.run([need_tool("osslsigncode"), "verify", "-in", str(sys_path), "-catalog", str(cat_path)],
                         capture_output=True, text=True).stdout
    current = re.search(r"Current message digest\s*:\s*([0-9A-F]+)", out)
    calculated = re.search(r"Calculated message digest\s*:\s*([0-9A-F]+)", out)
    assert current and calculated, out
    assert current.group(1) == calculated.group(1) == authenticode_hash(SYS).hex().upper()


@pytest.mark.parametrize("build", ["17300", "17600"])
def test_real_signatures_and_chains_verify_and_one_changed_bit_breaks_them(realdata, build):
    from aero_media.win7.sigverify import Verdict

    path = realdata / "cat" / "viostor" / "amd64" / f"viostor.win7.build{build}.cat"
    primary = load_catalog(path).primary
    assert (primary.check.signature, primary.check.chain) == (Verdict.VALID, Verdict.VALID)
    raw = path.read_bytes()
    sig = primary_signature_offset(raw)
    broken = parse_catalog(raw[:sig] + bytes([raw[sig] ^ 1]) + raw[sig + 1:], "x.cat").primary
    assert broken.check.signature is Verdict.INVALID and "does not verify" in (broken.check.problem or "")


def primary_signature_offset(raw: bytes) -> int:
    """Where the first signer's RSA signature bytes start (found by value, so the test needs no DER walker)."""
    from asn1crypto import cms

    sd = cms.ContentInfo.load(raw)["content"]
    value = sd["signer_infos"][0]["signature"].native
    return raw.index(value) + len(value) // 2


def test_a_changed_certificate_breaks_the_chain(realdata):
    from asn1crypto import cms

    from aero_media.win7.sigverify import Verdict

    raw = (realdata / "cat" / "viostor" / "amd64" / "viostor.win7.build17300.cat").read_bytes()
    sd = cms.ContentInfo.load(raw)["content"]
    certs = [c.chosen for c in sd["certificates"] if c.name == "certificate"]
    issued = [c for c in certs if any(o.subject == c.issuer for o in certs if o is not c) and c.self_signed == "no"]
    assert issued, "the catalog carries an issuer for at least one certificate"
    value = issued[0]["signature_value"].native
    at = raw.index(value) + len(value) // 2
    broken = parse_catalog(raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1:], "x.cat").primary
    assert broken.check.chain is Verdict.INVALID and "is not signed by its issuer" in (broken.check.problem or "")
