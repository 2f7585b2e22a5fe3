"""Create a code-signing test certificate for ``signing_policy: testsigning`` media.

The certificate (``.cer``, DER) is what the Guest Tools media ship and what setup
adds to Root and TrustedPublisher. The private key (``.pfx`` for signtool, PEM for
osslsigncode) stays with whoever signs the drivers; the build refuses to put it on
media.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError


@dataclass(frozen=True)
class TestCert:
    """Paths of a freshly made test certificate and its keys."""

    cer: Path
    key_pem: Path
    pfx: Path
    thumbprint: str


def make_test_cert(out_dir: Path, name: str = "aero-test", subject: str = "Aero virtio test signing",
                   days: int = 3650, pfx_password: str = "") -> TestCert:
    """Write ``<name>.cer``, ``<name>.key.pem`` (0600) and ``<name>.pfx`` under ``out_dir``; never overwrite."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise UsageError("make-test-cert needs the 'cryptography' package",
                         "pip install 'aero-virtio-media[certs]'") from None
    paths = [out_dir / f"{name}.cer", out_dir / f"{name}.key.pem", out_dir / f"{name}.pfx"]
    existing = [p for p in paths if p.exists()]
    if existing:
        raise UsageError(f"{existing[0]} already exists", "choose another --name or --out, or remove the old files")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    who = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(who).issuer_name(who)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        # Windows 7 verifies SHA-1 and SHA-256 certificate signatures alike once KB3033929 is in;
        # test mode needs no chain beyond this self-signed root.
        .sign(key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    der = cert.public_bytes(serialization.Encoding.DER)
    paths[0].write_bytes(der)
    fd = os.open(paths[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fp:
        fp.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    from cryptography.hazmat.primitives.serialization import pkcs12

    enc = (serialization.BestAvailableEncryption(pfx_password.encode()) if pfx_password
           else serialization.NoEncryption())
    fd = os.open(paths[2], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fp:
        fp.write(pkcs12.serialize_key_and_certificates(name.encode(), key, cert, None, enc))
    import hashlib

    return TestCert(paths[0], paths[1], paths[2], hashlib.sha1(der).hexdigest())
