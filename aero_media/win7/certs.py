"""Certificates for the Guest Tools media, and the rule that no private key ever ships.

Publisher certificates come out of the staged catalogs (the signer's certificate),
so setup can pre-trust the publisher; test certificates come from the spec. Every
file is checked: key containers (.pfx, .p12, .key, .pvk, .snk) and anything holding a
PEM private key are refused, and a ``.cer`` must really be a certificate.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import pem, x509

from ..errors import SourceError

KEY_SUFFIXES = (".pfx", ".p12", ".key", ".pvk", ".snk")
# Spelled in two pieces so that no file of the repository holds the marker itself: a
# search of the tree for committed keys (`git grep`) then finds only real ones.
PEM_KEY_MARKER = "PRIVATE" + " KEY"
"""What every PEM private key's armour line says (``-----BEGIN ... <marker>-----``)."""
_PRIVATE_PEM = re.compile(rb"-----BEGIN [A-Z0-9 ]*" + PEM_KEY_MARKER.encode() + rb"-----")
_SCAN_SUFFIXES = (".pem", ".cer", ".crt", ".der", ".txt", ".key")


@dataclass(frozen=True)
class Cert:
    """A certificate to ship: file name on the media, DER bytes, and what it is."""

    name: str
    der: bytes
    subject: str
    thumbprint: str
    """As :func:`thumbprint` gives it (upper-case hex)."""


def thumbprint(der: bytes) -> str:
    """A certificate's SHA-1 thumbprint in upper-case hex, as Windows prints it (certutil, the store's key names).

    The one place a thumbprint is computed; a consumer that wants another case derives it where it uses it.
    """
    return hashlib.sha1(der).hexdigest().upper()


def private_key_problem(name: str, head: bytes) -> str | None:
    """Why a file (by name and first bytes) must not ship, or None."""
    low = name.lower()
    if low.endswith(KEY_SUFFIXES):
        return f"{name} is a private-key container ({low.rsplit('.', 1)[-1]})"
    if low.endswith(_SCAN_SUFFIXES) and _PRIVATE_PEM.search(head):
        return f"{name} holds a PEM private key"
    return None


def refuse_private_keys(files: list[tuple[str, Path]], where: str) -> None:
    """Raise when any (media path, file) would put a private key on the media."""
    problems = []
    for media_path, path in files:
        with open(path, "rb") as fp:
            problem = private_key_problem(media_path, fp.read(256 * 1024))
        if problem:
            problems.append(f"{where}: {problem}")
    if problems:
        raise SourceError("\n".join(problems) + "\nprivate keys never go on the media",
                          "ship only the public certificate (.cer); keep keys out of packs and certs:")


def _cert_from_der(der: bytes, name: str) -> Cert:
    cert = x509.Certificate.load(der)
    _ = cert.native  # parse now: a broken certificate fails here, not on Windows
    return Cert(name=name, der=der, subject=cert.subject.human_friendly,
                thumbprint=thumbprint(der))


def load_cert_file(path: Path, display: str) -> Cert:
    """Load a .cer/.crt/.pem/.der certificate (PEM or DER); refuse keys and non-certificates."""
    data = path.read_bytes()
    problem = private_key_problem(path.name, data)
    if problem:
        raise SourceError(f"{display}: {problem}; private keys never go on the media",
                          "export only the certificate (e.g. certutil / openssl x509 -outform der)")
    try:
        if pem.detect(data):
            kind, _headers, der = pem.unarmor(data)
            if kind != "CERTIFICATE":
                raise ValueError(f"PEM block is {kind}")
        else:
            der = data
        cert = _cert_from_der(der, "")
    except (ValueError, TypeError) as exc:
        raise SourceError(f"{display}: not an X.509 certificate ({exc})",
                          "give a .cer file, e.g. from `aero-media make-test-cert`") from None
    return Cert(name=safe_cert_name(path.stem, cert.thumbprint), der=der, subject=cert.subject,
                thumbprint=cert.thumbprint)


def safe_cert_name(stem: str, thumbprint: str) -> str:
    """A media file name for a certificate: plain characters, unique by thumbprint."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:40] or "cert"
    # Lower case: the names shipped media have always carried (and a user types), kept so media stay the same.
    return f"{base}-{thumbprint[:8].lower()}.cer"


def publisher_cert(der: bytes) -> Cert:
    """A publisher certificate taken from a catalog's signer, named after its common name."""
    cert = x509.Certificate.load(der)
    cn = cert.subject.native.get("common_name", "publisher")
    base = _cert_from_der(der, "")
    return Cert(name=safe_cert_name(str(cn), base.thumbprint), der=der, subject=base.subject,
                thumbprint=base.thumbprint)
