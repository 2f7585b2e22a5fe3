"""Check the RSA signatures of a PKCS#7 SignedData (a catalog, or a PE's embedded signature).

Windows checks three things before it trusts a signer: the signed ``messageDigest``
matches the content (the catalog and PE readers check that), the signature over the
signed attributes verifies with the signer certificate's key, and each certificate
of the chain is signed by its issuer. This module checks the last two, for the RSA
PKCS#1 v1.5 signatures every Windows 7 driver carries.

The arithmetic is ``cryptography``'s (OpenSSL's RSASSA-PKCS1-v1_5 verify, RFC 8017
8.2.2), not ours: it rebuilds the whole encoded block from the digest and compares it,
where parsing the decrypted block leaves room for Bleichenbacher's 2006 forgery
(with public exponent 3, a cube root of ``00 01 FF.. 00 DigestInfo || garbage``
passes a parser that stops reading after the DigestInfo). asn1crypto only takes the
structures apart.

A signature this module does not verify (another algorithm than RSA PKCS#1 v1.5,
a digest outside :data:`HASHES`, a missing certificate) is :attr:`Verdict.UNSUPPORTED`
with a reason, and the package checks turn that into an error: what cannot be
checked is not taken as good.

Trust in the chain's root is not decided here (Windows decides it from its stores;
a test-signed build names its one trusted signer): a signature that verifies by a
key proves only that whoever holds the key signed these bytes, which is what
tampering and a foreign re-signing break.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from asn1crypto import algos, cms, core, keys, x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
"""The digests a signature or a certificate may be checked with (asn1crypto's names).

SHA-1 and SHA-2 are what Authenticode uses; MD5 (very old chains) is left out on
purpose, so such a chain is reported as not verifiable rather than trusted.
"""


class Verdict(StrEnum):
    """The outcome of one signature check."""

    VALID = "valid"
    INVALID = "invalid"
    UNSUPPORTED = "unsupported"
    """Not a signature this module verifies (the problem says why): the checks fail closed on it."""


@dataclass(frozen=True)
class SignatureCheck:
    """A signer's signature and its certificate chain (as far as the SignedData carries it)."""

    signature: Verdict
    chain: Verdict
    problem: str | None = None
    """Why it is invalid or cannot be verified, for the finding (None when valid)."""


def rsa_pkcs1_verify(public_key: keys.PublicKeyInfo, digest_algorithm: str, message: bytes,
                     signature: bytes) -> tuple[Verdict, str | None]:
    """Verify an RSASSA-PKCS1-v1_5 ``signature`` of ``message`` (hashed with ``digest_algorithm``).

    Returns the verdict and, unless valid, a reason fit for a finding.
    """
    if public_key.algorithm != "rsa":
        return Verdict.UNSUPPORTED, f"the key is {public_key.algorithm}, not RSA"
    hash_type = HASHES.get(digest_algorithm)
    if hash_type is None:
        return Verdict.UNSUPPORTED, f"the digest {digest_algorithm} is not one this check verifies"
    try:
        key = serialization.load_der_public_key(public_key.dump())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return Verdict.UNSUPPORTED, "the RSA key cannot be read"
    if not isinstance(key, rsa.RSAPublicKey):
        return Verdict.UNSUPPORTED, "the key is not RSA"
    try:
        key.verify(signature, message, padding.PKCS1v15(), hash_type())
    except (InvalidSignature, ValueError):
        return Verdict.INVALID, None
    return Verdict.VALID, None


def _hash_of(algorithm: algos.SignedDigestAlgorithm, fallback: str) -> str:
    try:
        return str(algorithm.hash_algo)
    except ValueError:  # plain "rsassa_pkcs1v15": the digest algorithm is named beside it
        return fallback


def _not_rsa_pkcs1(algorithm: algos.SignedDigestAlgorithm) -> str | None:
    """Why ``algorithm`` is not one this module verifies (None: it is RSA PKCS#1 v1.5)."""
    try:
        name = algorithm.signature_algo
    except ValueError:  # an OID asn1crypto does not know
        return f"it uses the signature algorithm {algorithm['algorithm'].dotted}, which is not verified here"
    if name != "rsassa_pkcs1v15":
        return f"it uses {name}, not RSA PKCS#1 v1.5 (what Windows 7 driver signing uses), so it is not verified"
    return None


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
        name = cert.subject.human_friendly
        algo = cert["signature_algorithm"]
        unsupported = _not_rsa_pkcs1(algo)
        if unsupported:
            return Verdict.UNSUPPORTED, f"certificate {name!r}: {unsupported}"
        results = [(rsa_pkcs1_verify(c.public_key, _hash_of(algo, "sha1"), cert["tbs_certificate"].dump(),
                                     cert["signature_value"].native), c) for c in candidates]
        valid = [c for (v, _), c in results if v is Verdict.VALID]
        if not valid:
            reasons = [why for (v, why), _ in results if v is Verdict.UNSUPPORTED]
            if reasons:
                return Verdict.UNSUPPORTED, f"certificate {name!r} cannot be checked against its issuer: {reasons[0]}"
            return Verdict.INVALID, f"certificate {name!r} is not signed by its issuer"
        cert = valid[0]
    return Verdict.VALID, None


def check_signer(sd: cms.SignedData, si: cms.SignerInfo, cert: x509.Certificate | None,
                 content: bytes) -> SignatureCheck:
    """Verify one signer of ``sd`` over ``content`` (the bytes its messageDigest covers)."""
    if cert is None:
        return SignatureCheck(Verdict.UNSUPPORTED, Verdict.UNSUPPORTED,
                              "the signer's certificate is not in the signature, so it cannot be verified")
    algo = si["signature_algorithm"]
    unsupported = _not_rsa_pkcs1(algo)
    if unsupported:
        return SignatureCheck(Verdict.UNSUPPORTED, Verdict.UNSUPPORTED, f"the signature: {unsupported}")
    digest = _hash_of(algo, si["digest_algorithm"]["algorithm"].native)
    try:
        message = _signed_message(si, content)
    except (ValueError, TypeError):
        return SignatureCheck(Verdict.INVALID, Verdict.UNSUPPORTED, "its signed attributes cannot be read")
    verdict, why = rsa_pkcs1_verify(cert.public_key, digest, message, si["signature"].native)
    if verdict is Verdict.INVALID:
        return SignatureCheck(verdict, Verdict.UNSUPPORTED,
                              f"the signature does not verify with the key of {cert.subject.human_friendly!r}")
    if verdict is Verdict.UNSUPPORTED:
        return SignatureCheck(verdict, Verdict.UNSUPPORTED, f"the signature cannot be verified: {why}")
    certs = [c.chosen for c in (sd["certificates"] or []) if c.name == "certificate"]
    chain, problem = check_chain(cert, certs)
    return SignatureCheck(verdict, chain, problem)
