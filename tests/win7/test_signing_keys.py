"""Windows 7 code signing is RSA: other signing keys are refused, small RSA keys refused or warned about, and a
catalog signed by an ECDSA or DSA key (intact or with one bit flipped) is never taken as validly signed."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms, core
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aero_media.errors import UsageError
from aero_media.spec.load import load_contract
from aero_media.spec.types import Arch
from aero_media.win7.catalog import parse_catalog
from aero_media.win7.catalogmake import CatalogMemberFile, make_catalog
from aero_media.win7.checks import check_package
from aero_media.win7.findings import CheckPolicy
from aero_media.win7.signing import SigningKey, check_key_type, sign_catalog
from aero_media.win7.sigverify import Verdict
from tests.conftest import REPO
from tests.lib.drivers_fixtures import OID_CTL, _tlv, build_ctl, member_for, write_package

EPOCH = 1700000000


def code_signing_cert(subject_public: Any, signer: Any) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Aero key test")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(subject_public)
            .serial_number(7).not_valid_before(dt.datetime(2018, 1, 1)).not_valid_after(dt.datetime(2039, 1, 1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .sign(signer, hashes.SHA256()))


def write_pair(folder: Path, key: Any, cert: x509.Certificate) -> SigningKey:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "c.cer").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return SigningKey(folder / "c.cer", folder / "k.pem")


def self_signed_pair(folder: Path, key: Any) -> SigningKey:
    return write_pair(folder, key, code_signing_cert(key.public_key(), key))


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def dsa_key() -> dsa.DSAPrivateKey:
    return dsa.generate_private_key(key_size=2048)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@pytest.mark.parametrize("make_key", [ec_key, dsa_key], ids=["ecdsa-p256", "dsa"])
def test_a_non_rsa_signing_key_is_refused_before_anything_is_signed(tmp_path: Path, make_key: Any) -> None:
    pair = self_signed_pair(tmp_path / "pair", make_key())
    with pytest.raises(UsageError) as refused:
        check_key_type(pair.cert, "signing.cert")
    assert "signing.cert" in refused.value.render()
    member = tmp_path / "d.inf"
    member.write_bytes(b"[Version]\r\n")
    dest = tmp_path / "out" / "d.cat"
    with pytest.raises(UsageError):
        sign_catalog(make_catalog([CatalogMemberFile("d.inf", member)], Arch.AMD64, this_update=EPOCH), dest, pair,
                     signing_time=EPOCH)
    assert not dest.exists()


def small_rsa_public(bits: int) -> rsa.RSAPublicKey:
    """An RSA public key of ``bits`` bits (cryptography will not generate keys this small; any odd modulus will do
    for a certificate that is only read)."""
    n = (1 << (bits - 1)) | (hashlib.sha256(b"n").digest()[0] << 8) | 0xC5
    return rsa.RSAPublicNumbers(65537, n).public_key()


def test_rsa_under_1024_bits_is_refused_and_under_2048_warned(tmp_path: Path) -> None:
    issuer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tiny = tmp_path / "tiny.cer"
    tiny.write_bytes(code_signing_cert(small_rsa_public(768), issuer).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(UsageError) as refused:
        check_key_type(tiny, "signing.cert")
    assert "signing.cert" in refused.value.render()
    weak = self_signed_pair(tmp_path / "weak", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    warnings = check_key_type(weak.cert, "signing.cert")
    assert len(warnings) == 1 and "signing.cert" in warnings[0]
    good = self_signed_pair(tmp_path / "good", issuer)
    assert check_key_type(good.cert, "signing.cert") == []


def signed_catalog(ctl: bytes, key: Any, algorithm: str) -> bytes:
    """A catalog whose one signer signs with ``key`` (ECDSA or DSA), shaped as signtool shapes an RSA one."""
    cert = a_x509.Certificate.load(code_signing_cert(key.public_key(), key).public_bytes(serialization.Encoding.DER))
    signed_attrs = cms.CMSAttributes([
        {"type": "content_type", "values": ["1.3.6.1.4.1.311.10.1"]},
        {"type": "message_digest", "values": [hashlib.sha1(ctl_octets(ctl)).digest()]},
    ])
    der = signed_attrs.dump()
    signature = key.sign(der, ec.ECDSA(hashes.SHA1())) if isinstance(key, ec.EllipticCurvePrivateKey) \
        else key.sign(der, hashes.SHA1())
    return build_signed(ctl, cert, signed_attrs, algorithm, signature)


def ctl_octets(ctl: bytes) -> bytes:
    return bytes(core.Sequence.load(ctl).contents)


def build_signed(ctl: bytes, cert: a_x509.Certificate, attrs: cms.CMSAttributes, algorithm: str,
                 signature: bytes) -> bytes:
    si = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": {"issuer": cert.issuer,
                                                                  "serial_number": cert.serial_number}}),
        "digest_algorithm": {"algorithm": "sha1"},
        "signed_attrs": attrs,
        "signature_algorithm": {"algorithm": algorithm},
        "signature": signature,
    })
    encap = _tlv(0x30, core.ObjectIdentifier(OID_CTL).dump() + _tlv(0xA0, ctl))
    body = _tlv(0x30, core.Integer(1).dump() + cms.DigestAlgorithms([{"algorithm": "sha1"}]).dump() + encap
                + _tlv(0xA0, cert.dump()) + cms.SignerInfos([si]).dump())
    return _tlv(0x30, core.ObjectIdentifier("1.2.840.113549.1.7.2").dump() + _tlv(0xA0, body))


def flip_signature_bit(cat: bytes) -> bytes:
    real = cms.ContentInfo.load(cat)["content"]["signer_infos"][0]["signature"].native
    at = cat.index(real) + len(real) - 1
    return cat[:at] + bytes([cat[at] ^ 0x01]) + cat[at + 1:]


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@pytest.mark.parametrize(("make_key", "algorithm"), [(ec_key, "sha1_ecdsa"), (dsa_key, "sha1_dsa")],
                         ids=["ecdsa-p256", "dsa"])
def test_an_ecdsa_or_dsa_signed_catalog_is_not_valid_intact_or_flipped(tmp_path: Path, make_key: Any,
                                                                        algorithm: str) -> None:
    contract = load_contract(REPO / "specs" / "devices.yaml")
    device = contract.device("virtio-blk")
    pkg = write_package(tmp_path / "viostor", "viostor", device, "amd64")
    files = {n: (pkg / n).read_bytes() for n in ("viostor.inf", "viostor.sys")}
    intact = signed_catalog(build_ctl([member_for(n, d) for n, d in files.items()]), make_key(), algorithm)
    for cat in (intact, flip_signature_bit(intact)):
        primary = parse_catalog(cat, "viostor.cat").primary
        assert primary is not None and primary.content_digest_ok is True  # only the signer's algorithm is at issue
        assert primary.check.signature is not Verdict.VALID and primary.check.problem
        (pkg / "viostor.cat").write_bytes(cat)
        errors = {f.code for f in check_package(pkg, Arch.AMD64, device, CheckPolicy()).errors}
        assert "catalog-unverifiable-signature" in errors
