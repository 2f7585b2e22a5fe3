"""Check the RSA signatures of a PKCS#7 SignedData (a catalog, or a PE's embedded signature).

Windows checks three things before it trusts a signer: the signed ``messageDigest``
matches the content (the catalog and PE readers check that), the signature over the
signed attributes verifies with the signer certificate's key, and each certificate
of the chain is signed by its issuer. This module checks the last two, for the RSA
PKCS#1 v1.5 signatures every Windows 7 driver carries, with the standard library's
modular arithmetic: verification needs no secret, so no crypto library is involved.

Trust in the chain's root is not decided here (Windows decides it from its stores;
a test-signed build names its one trusted signer): a signature that verifies by a
key proves only that whoever holds the key signed these bytes, which is what
tampering and a foreign re-signing break.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from asn1crypto import algos, cms, core, keys, x509


class Verdict(StrEnum):
    """The outcome of one signature check."""

    VALID = "valid"
    INVALID = "invalid"
    UNSUPPORTED = "unsupported"
    """Not RSA PKCS#1 v1.5, or the certificate is absent: nothing to say either way."""


@dataclass(frozen=True)
class SignatureCheck:
    """A signer's signature and its certificate chain (as far as the SignedData carries it)."""

    signature: Verdict
    chain: Verdict
    problem: str | None = None
    """Why it is invalid, for the finding (None when valid or unsupported)."""


def rsa_pkcs1_verify(public_key: keys.PublicKeyInfo, digest_algorithm: str, message: bytes,
                     signature: bytes) -> Verdict:
    """Verify an RSASSA-PKCS1-v1_5 ``signature`` of ``message`` (hashed with ``digest_algorithm``)."""
    if public_key.algorithm != "rsa":
        return Verdict.UNSUPPORTED
    try:
        parsed = public_key["public_key"].parsed
        n, e = int(parsed["modulus"].native), int(parsed["public_exponent"].native)
        digest = hashlib.new(digest_algorithm, message).digest()
    except (ValueError, TypeError):
        return Verdict.UNSUPPORTED
    k = (n.bit_length() + 7) // 8
    s = int.from_bytes(signature, "big")
    if len(signature) > k or s >= n:
        return Verdict.INVALID
    em = pow(s, e, n).to_bytes(k, "big")
    # EM = 00 01 FF..FF 00 DigestInfo (RFC 8017 9.2); some signers omit the NULL parameters.
    if not em.startswith(b"\x00\x01"):
        return Verdict.INVALID
    sep = em.find(b"\x00", 2)
    if sep < 10 or em[2:sep] != b"\xff" * (sep - 2):
        return Verdict.INVALID
    try:
        info = algos.DigestInfo.load(em[sep + 1:])
        ok = info["digest_algorithm"]["algorithm"].native == digest_algorithm and info["digest"].native == digest
    except (ValueError, TypeError):
        return Verdict.INVALID
    return Verdict.VALID if ok else Verdict.INVALID


def _hash_of(algorithm: algos.SignedDigestAlgorithm, fallback: str) -> str:
    try:
        return str(algorithm.hash_algo)
    except ValueError:  # plain "rsassa_pkcs1v15": the digest algorithm is named beside it
        return fallback


def _signed_message(si: cms.SignerInfo, content: bytes) -> bytes:
    attrs = si["signed_attrs"]
    if isinstance(attrs, core.Void) or len(attrs) == 0:
        return content
    # The signature covers the attributes as a SET OF (tag 0x31), not as the [0] they are stored under.
    encoded: bytes = attrs.dump()
    return b"\x31" + encoded[1:]


def check_chain(cert: x509.Certificate, certs: list[x509.Certificate]) -> tuple[Verdict, str | None]:
    """Each certificate from ``cert`` up is signed by its issuer, where the SignedData carries the issuer.

    A root (self-issued) ends the walk unjudged: Windows trusts a root from its
    stores, not from its own signature.
    """
    seen: set[bytes] = set()
    while cert.dump() not in seen and cert.self_signed == "no":
        seen.add(cert.dump())
        candidates = [c for c in certs if c.subject == cert.issuer and c.dump() != cert.dump()]
        if not candidates:
            return Verdict.VALID, None
        algo = cert["signature_algorithm"]
        if algo.signature_algo != "rsassa_pkcs1v15":
            return Verdict.UNSUPPORTED, None
        results = [(rsa_pkcs1_verify(c.public_key, _hash_of(algo, "sha1"), cert["tbs_certificate"].dump(),
                                     cert["signature_value"].native), c) for c in candidates]
        valid = [c for v, c in results if v is Verdict.VALID]
        if not valid:
            if all(v is Verdict.INVALID for v, _ in results):
                return Verdict.INVALID, f"certificate {cert.subject.human_friendly!r} is not signed by its issuer"
            return Verdict.UNSUPPORTED, None
        cert = valid[0]
    return Verdict.VALID, None


def check_signer(sd: cms.SignedData, si: cms.SignerInfo, cert: x509.Certificate | None,
                 content: bytes) -> SignatureCheck:
    """Verify one signer of ``sd`` over ``content`` (the bytes its messageDigest covers)."""
    if cert is None:
        return SignatureCheck(Verdict.UNSUPPORTED, Verdict.UNSUPPORTED)
    algo = si["signature_algorithm"]
    if algo.signature_algo != "rsassa_pkcs1v15":
        return SignatureCheck(Verdict.UNSUPPORTED, Verdict.UNSUPPORTED)
    digest = _hash_of(algo, si["digest_algorithm"]["algorithm"].native)
    try:
        message = _signed_message(si, content)
    except (ValueError, TypeError):
        return SignatureCheck(Verdict.INVALID, Verdict.UNSUPPORTED, "its signed attributes cannot be read")
    verdict = rsa_pkcs1_verify(cert.public_key, digest, message, si["signature"].native)
    if verdict is Verdict.INVALID:
        return SignatureCheck(verdict, Verdict.UNSUPPORTED,
                              f"the signature does not verify with the key of {cert.subject.human_friendly!r}")
    certs = [c.chosen for c in (sd["certificates"] or []) if c.name == "certificate"]
    chain, problem = check_chain(cert, certs)
    return SignatureCheck(verdict, chain, problem)
