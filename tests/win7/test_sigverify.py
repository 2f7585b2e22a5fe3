"""Signature checks refuse what was signed without the private key, and what they cannot check.

The forgeries are Bleichenbacher's (2006) against RSA keys with public exponent 3:
a cube root of ``00 01 FF.. 00 DigestInfo || garbage``, made with integer
arithmetic and no private key. A verifier that parses the decrypted block and stops
after the DigestInfo takes it as valid; a verifier that rebuilds the whole block
(RFC 8017 8.2.2) does not.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from asn1crypto import algos, cms, keys, x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from aero_media.spec.load import load_contract
from aero_media.spec.types import Arch
from aero_media.win7.catalog import parse_catalog
from aero_media.win7.checks import check_package
from aero_media.win7.findings import CheckPolicy
from aero_media.win7.sigverify import Verdict, check_chain
from tests.conftest import REPO
from tests.lib.drivers_fixtures import (
    Signer,
    build_ctl,
    member_for,
    self_signed,
    wrap_catalog,
    write_package,
)

INF = b"[Version]\r\nSignature=\"$Windows NT$\"\r\n"


@cache
def e3_key() -> rsa.RSAPrivateKey:
    """An RSA key with public exponent 3 (2048 bits: room enough for the garbage)."""
    return rsa.generate_private_key(public_exponent=3, key_size=2048)


def icbrt(n: int) -> int:
    """The integer cube root of ``n`` (largest x with x**3 <= n), by Newton's method from above."""
    if n == 0:
        return 0
    x = 1 << -(-n.bit_length() // 3)
    while True:
        y = (2 * x + n // (x * x)) // 3
        if y >= x:
            break
        x = y
    while x ** 3 > n:
        x -= 1
    while (x + 1) ** 3 <= n:
        x += 1
    return x


def digest_info(digest: str, message: bytes) -> bytes:
    return algos.DigestInfo({"digest_algorithm": {"algorithm": digest},
                             "digest": hashlib.new(digest, message).digest()}).dump()


def forge(modulus_bytes: int, digest: str, message: bytes) -> bytes:
    """A 'signature' of ``message`` for any e=3 key of this size, made without the key."""
    prefix = b"\x00\x01" + b"\xff" * 8 + b"\x00" + digest_info(digest, message)
    garbage = modulus_bytes - len(prefix)
    s = icbrt(int.from_bytes(prefix + b"\x00" * garbage, "big")) + 1
    block = (s ** 3).to_bytes(modulus_bytes, "big")
    # The cube keeps the prefix and leaves non-zero garbage after the DigestInfo: what a
    # block parser that stops reading after the DigestInfo accepts.
    assert block.startswith(prefix) and block[len(prefix):] != b"\x00" * garbage
    assert algos.DigestInfo.load(block[11:])["digest"].native == hashlib.new(digest, message).digest()
    return s.to_bytes(modulus_bytes, "big")


def e3_catalog(files: dict[str, bytes]) -> bytes:
    return wrap_catalog(build_ctl([member_for(n, d) for n, d in files.items()]), self_signed(e3_key()))


def forged_catalog(honest: bytes) -> bytes:
    """``honest`` with its signer's signature replaced by a forgery over the same signed attributes."""
    si = cms.ContentInfo.load(honest)["content"]["signer_infos"][0]
    signed_attrs = b"\x31" + si["signed_attrs"].dump()[1:]  # signed as a SET OF, stored as [0]
    real = si["signature"].native
    fake = forge(len(real), si["digest_algorithm"]["algorithm"].native, signed_attrs)
    assert fake != real
    return honest.replace(real, fake)


def test_an_e3_forgery_of_the_catalog_signature_is_refused():
    honest = e3_catalog({"d.inf": INF})
    assert parse_catalog(honest, "d.cat").primary.check.signature is Verdict.VALID
    forged = parse_catalog(forged_catalog(honest), "d.cat").primary
    assert forged.content_digest_ok is True  # only the signature is fake
    assert forged.check.signature is Verdict.INVALID


def test_the_package_check_reports_the_forged_catalog(tmp_path):
    contract = load_contract(REPO / "specs" / "devices.yaml")
    device = contract.device("virtio-blk")
    pkg = write_package(tmp_path / "viostor", "viostor", device, "amd64")
    files = {n: (pkg / n).read_bytes() for n in ("viostor.inf", "viostor.sys")}
    honest = e3_catalog(files)

    def errors(cat: bytes) -> set[str]:
        (pkg / "viostor.cat").write_bytes(cat)
        return {f.code for f in check_package(pkg, Arch.AMD64, device, CheckPolicy()).errors}

    assert "catalog-bad-signature" not in errors(honest)
    assert "catalog-bad-signature" in errors(forged_catalog(honest))


def _spki(key: rsa.RSAPrivateKey) -> keys.PublicKeyInfo:
    return keys.PublicKeyInfo.load(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def issued_by(ca: Signer, subject_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """A code-signing certificate for ``subject_key``, signed (honestly) by ``ca``."""
    tbs = x509.TbsCertificate({
        "version": "v3",
        "serial_number": 0x5678,
        "signature": {"algorithm": "sha1_rsa"},
        "issuer": ca.cert.subject,
        "validity": {"not_before": x509.Time({"utc_time": datetime(2018, 1, 1, tzinfo=UTC)}),
                     "not_after": x509.Time({"utc_time": datetime(2039, 1, 1, tzinfo=UTC)})},
        "subject": x509.Name.build({"common_name": "Aero Test Leaf"}),
        "subject_public_key_info": _spki(subject_key),
    })
    signature = ca.key.sign(tbs.dump(), padding.PKCS1v15(), hashes.SHA1())
    return x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": {"algorithm": "sha1_rsa"},
                             "signature_value": signature})


def test_an_e3_forgery_of_a_certificate_in_the_chain_is_refused():
    ca = self_signed(e3_key(), subject="Aero Test CA")
    leaf = issued_by(ca, rsa.generate_private_key(public_exponent=65537, key_size=1024))
    assert check_chain(leaf, [leaf, ca.cert]) == (Verdict.VALID, None)
    tbs = leaf["tbs_certificate"].dump()
    fake = forge(len(leaf["signature_value"].native), "sha1", tbs)
    forged = x509.Certificate({"tbs_certificate": leaf["tbs_certificate"],
                               "signature_algorithm": leaf["signature_algorithm"], "signature_value": fake})
    verdict, problem = check_chain(forged, [forged, ca.cert])
    assert verdict is Verdict.INVALID and problem


# rsaEncryption, and RSASSA-PSS: the same length, so the DER around it stays valid.
OID_RSA = bytes.fromhex("06092a864886f70d010101")
OID_PSS = bytes.fromhex("06092a864886f70d01010a")


def test_a_signature_algorithm_that_is_not_verified_fails_closed(tmp_path: Path):
    contract = load_contract(REPO / "specs" / "devices.yaml")
    device = contract.device("virtio-blk")
    pkg = write_package(tmp_path / "viostor", "viostor", device, "amd64")
    files = {n: (pkg / n).read_bytes() for n in ("viostor.inf", "viostor.sys")}
    ctl = build_ctl([member_for(n, d) for n, d in files.items()])
    cat = wrap_catalog(ctl, self_signed(e3_key()), timestamped=False)
    at = cat.rindex(OID_RSA)  # the signer info's algorithm: it follows the certificate's key
    pss = cat[:at] + OID_PSS + cat[at + len(OID_RSA):]
    primary = parse_catalog(pss, "viostor.cat").primary
    assert primary.check.signature is Verdict.UNSUPPORTED and primary.check.problem
    (pkg / "viostor.cat").write_bytes(pss)
    errors = {f.code for f in check_package(pkg, Arch.AMD64, device, CheckPolicy()).errors}
    assert "catalog-unverifiable-signature" in errors
    (pkg / "viostor.cat").write_bytes(cat)
    errors = {f.code for f in check_package(pkg, Arch.AMD64, device, CheckPolicy()).errors}
    assert "catalog-unverifiable-signature" not in errors


def test_icbrt_is_exact():
    for n in (0, 1, 7, 8, 26, 27, 28, 10 ** 30, 10 ** 30 - 1, (1 << 2000) + 12345):
        r = icbrt(n)
        assert r ** 3 <= n < (r + 1) ** 3
