"""Create a code-signing test certificate for ``signing_policy: test`` media.

The certificate (``.cer``, DER) is what the Guest Tools media ship and what setup
adds to Root and TrustedPublisher. The private key (``.pfx`` for signtool, PEM for
osslsigncode) stays with whoever signs the drivers; the build refuses to put it on
media. ``<name>.cert.pem`` is the same certificate in PEM, for ``osslsigncode
-certs`` and ``verify -CAfile``.

What Windows 7 test signing needs (docs/windows7.md#test-signing): a self-signed RSA-2048
certificate with the code-signing EKU (1.3.6.1.5.5.7.3.3), trusted through the
Root store in test mode, valid when the files are signed and when they are
installed.

The certificate's own signature is **sha1WithRSA** by default: a SHA-256-signed
certificate can fail on stock Windows 7 SP1 without KB3033929, and in Windows 7
Setup (WinPE has no SHA-2), even when the file digests are SHA-1. ``cryptography``'s
``CertificateBuilder`` refuses SHA-1 signatures ("not supported for signatures"),
but its RSA primitive still signs SHA-1 digests, so the TBSCertificate is
assembled with asn1crypto and signed with the ``cryptography`` key.
``cert_hash="sha256"`` gives a sha256WithRSA certificate for targets that have
KB3033929.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import UsageError
from ..fsutil import staging_dir
from ..paths import GENERATED_CERT, Run
from ..win7.certs import thumbprint

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

CODE_SIGNING_EKU = "1.3.6.1.5.5.7.3.3"
CertHash = Literal["sha1", "sha256"]


@dataclass(frozen=True)
class TestCert:
    """Paths of a freshly made test certificate and its keys."""

    cer: Path
    key_pem: Path
    pfx: Path
    thumbprint: str
    """Upper-case hex (:func:`aero_media.win7.certs.thumbprint`)."""
    cert_pem: Path
    """The certificate as PEM (what ``osslsigncode -certs`` and ``-CAfile`` read)."""


def _when(value: int | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(value, dt.UTC)


MAX_DAYS = 36500
"""A century: far past any test build's life, and far inside X.509's year 9999."""


def validity(days: int, not_before: int | dt.datetime | None = None,
             now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """The (not before, not after) a test certificate gets.

    It starts at ``not_before`` (Unix seconds or a datetime; default: one day ago,
    so clock skew never makes a new certificate "not yet valid"), and ends ``days``
    after today. A build signs at ``SOURCE_DATE_EPOCH``, which may be decades old
    (default 1980-01-01), while Windows checks an untimestamped signature's
    certificate at install time: passing the epoch as ``not_before`` makes one
    certificate valid at both moments.
    """
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"--days {days} must be from 1 to {MAX_DAYS}",
                         "give the certificate's lifetime in days (X.509 dates end in 9999)")
    now = now or dt.datetime.now(dt.UTC)
    start = _when(not_before) if not_before is not None else now - dt.timedelta(days=1)
    end = max(now, start) + dt.timedelta(days=days)
    # X.509 has one-second resolution; drop microseconds so the stored times equal these.
    return start.replace(microsecond=0), end.replace(microsecond=0)


def make_test_cert(out_dir: Path, name: str = "aero-test", subject: str = "Aero virtio test signing",
                   days: int = 3650, pfx_password: str = "", *, not_before: int | dt.datetime | None = None,
                   cert_hash: CertHash = "sha1") -> TestCert:
    """Write ``<name>.cer``, ``<name>.cert.pem``, ``<name>.key.pem`` (0600) and ``<name>.pfx`` (0600) under
    ``out_dir``; never overwrite.

    See :func:`validity` for ``days`` and ``not_before``; ``cert_hash`` is the
    certificate's own signature hash (module docstring).
    """
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name) or name.endswith("."):
        raise UsageError(f"--name {name!r} is not a plain file name",
                         "use letters, digits, '.', '-' and '_' (the files are <name>.cer, <name>.key.pem, ...)")
    paths = [out_dir / f"{name}.cer", out_dir / f"{name}.key.pem", out_dir / f"{name}.pfx",
             out_dir / f"{name}.cert.pem"]
    existing = [p for p in paths if p.exists()]
    if existing:
        raise UsageError(f"{existing[0]} already exists", "choose another --name or --out, or remove the old files")
    start, end = validity(days, not_before)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    der = _self_signed(key, spki, subject, start, end, cert_hash)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths[0].write_bytes(der)
    import ssl

    paths[3].write_text(ssl.DER_cert_to_PEM_cert(der), encoding="ascii")
    _write_private(paths[1], key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    enc = (serialization.BestAvailableEncryption(pfx_password.encode()) if pfx_password
           else serialization.NoEncryption())
    cert = cx509.load_der_x509_certificate(der)
    _write_private(paths[2], pkcs12.serialize_key_and_certificates(name.encode(), key, cert, None, enc))
    return TestCert(paths[0], paths[1], paths[2], thumbprint(der), paths[3])


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start (no window where the key is world-readable); O_EXCL never overwrites.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fp:
        fp.write(data)


def _time(when: dt.datetime) -> dict[str, dt.datetime]:
    # RFC 5280: UTCTime through 2049, GeneralizedTime from 2050.
    return {"utc_time": when} if when.year < 2050 else {"general_time": when}


def _self_signed(key: RSAPrivateKey, spki_der: bytes, subject: str, start: dt.datetime, end: dt.datetime,
                 cert_hash: CertHash) -> bytes:
    """DER of a self-signed code-signing certificate for ``key``, signed with ``cert_hash``."""
    from asn1crypto import keys, x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    spki = keys.PublicKeyInfo.load(spki_der)
    who = x509.Name.build({"common_name": subject})
    algorithm = {"algorithm": f"{cert_hash}_rsa"}
    tbs = x509.TbsCertificate({
        "version": "v3",
        "serial_number": int.from_bytes(os.urandom(16), "big") >> 1,  # positive, at most 127 bits
        "signature": algorithm,
        "issuer": who,
        "validity": {"not_before": x509.Time(_time(start)), "not_after": x509.Time(_time(end))},
        "subject": who,
        "subject_public_key_info": spki,
        "extensions": [
            # An end-entity certificate that is its own root: test mode trusts it from the Root store.
            {"extn_id": "basic_constraints", "critical": True, "extn_value": {"ca": False}},
            {"extn_id": "key_usage", "critical": True, "extn_value": {"digital_signature"}},
            {"extn_id": "extended_key_usage", "critical": False, "extn_value": [CODE_SIGNING_EKU]},
            # RFC 5280 method 1: SHA-1 of the public key bits.
            {"extn_id": "key_identifier", "critical": False,
             "extn_value": hashlib.sha1(spki["public_key"].contents[1:]).digest()},
        ],
    })
    digest = hashes.SHA1() if cert_hash == "sha1" else hashes.SHA256()
    try:
        signature = key.sign(tbs.dump(), padding.PKCS1v15(), digest)
    except UnsupportedAlgorithm:
        raise UsageError(f"this 'cryptography' build refuses {cert_hash} RSA signatures",
                         "make the certificate with cert_hash='sha256' (Windows 7 then needs KB3033929)") from None
    cert = x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": algorithm,
                             "signature_value": signature})
    return bytes(cert.dump())


def generate_signing_pair(run: Run) -> Path:
    """The ``signing_cert`` task of a ``signing: {generate: true}`` spec: a throwaway pair in build/<spec>/signing/.

    Valid from the build epoch (the signing time) for ten years from today. It never
    leaves build/: the certificate goes onto the media, the key only to osslsigncode.
    Replaced as a whole, so a half-written pair never stands beside an old one.
    """
    paths = run.paths
    sig = run.spec.signing.signer
    if sig is not None and sig.from_pfx:
        from cryptography.hazmat.primitives import serialization

        from ..stage.pfx import load_pfx

        pair = load_pfx(run.spec, run.ctx.root)
        if pair is not None:  # the user's PFX: only its certificate (public) is written
            with staging_dir(paths.signing_dir) as tmp:
                (tmp / f"{GENERATED_CERT}.cer").write_bytes(pair.cert.public_bytes(serialization.Encoding.DER))
                (tmp / f"{GENERATED_CERT}.cert.pem").write_bytes(pair.cert.public_bytes(serialization.Encoding.PEM))
            return paths.signing_dir / f"{GENERATED_CERT}.cer"
    with staging_dir(paths.signing_dir) as tmp:
        made = make_test_cert(tmp, GENERATED_CERT, subject=f"Aero virtio test signing {run.spec.name} (throwaway)",
                              not_before=run.epoch)
    return paths.signing_dir / made.cer.name
