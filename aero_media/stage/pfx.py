"""A signing PFX the user gives (``signing: {pfx: ...}`` or ``{pfx_env: ...}``), as Aero's stable signing PFX.

Aero's ``ci/sign-drivers.ps1`` signs with the PFX in ``AERO_DRIVER_PFX_BASE64`` (base64) and
``AERO_DRIVER_PFX_PASSWORD`` when both are set, and with a fresh self-signed pair otherwise. Here the
variable may hold the PFX's path or its base64 text, and ``generate: true`` beside ``pfx_env`` is
that fallback. The certificate (public) is written into ``build/<spec>/signing/``; the key is
only ever handed to osslsigncode from a file in memory.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12

from ..errors import UsageError
from ..spec.model import Signer, Spec
from ..win7.signing import refuse_key_inside


@dataclass(frozen=True)
class PfxPair:
    """The certificate and key of a PFX."""

    cert: x509.Certificate
    key: PrivateKeyTypes

    def key_pem(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM, for osslsigncode (from memory only)."""
        return self.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _pfx_bytes(spec: Spec, sig: Signer, root: Path) -> tuple[bytes, str] | None:
    """The PFX's bytes and what named it; None when ``pfx_env`` is unset and ``generate`` stands in."""
    if sig.pfx is not None:
        refuse_key_inside(sig.pfx, root, f"signing.pfx in {spec.display}")
        try:
            return sig.pfx.read_bytes(), f"signing.pfx {sig.pfx}"
        except OSError as exc:
            raise UsageError(f"{spec.display}: signing.pfx {sig.pfx}: {exc.strerror}",
                             "point signing.pfx at the PFX that holds the signing certificate and key") from None
    assert sig.pfx_env is not None
    value = os.environ.get(sig.pfx_env, "").strip()
    where = f"{spec.display}: signing.pfx_env {sig.pfx_env}"
    if not value:
        if sig.generate:
            return None
        raise UsageError(f"{where} is not set",
                         f"export {sig.pfx_env}=<the PFX's path, or the PFX in base64> and run again")
    path = Path(value).expanduser()
    if _is_file(path):
        refuse_key_inside(path, root, f"the {sig.pfx_env} environment variable")
        return path.read_bytes(), where
    try:
        return base64.b64decode("".join(value.split()), validate=True), where
    except (binascii.Error, ValueError):
        raise UsageError(f"{where} is neither a file nor base64 text",
                         f"set {sig.pfx_env} to the PFX's path or to the PFX in base64") from None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # base64 text longer than a file name can be
        return False


def load_pfx(spec: Spec, root: Path) -> PfxPair | None:
    """The spec's PFX, read and decrypted; None when the spec signs with a generated pair instead."""
    sig = spec.signing.signer
    assert sig is not None and sig.from_pfx
    found = _pfx_bytes(spec, sig, root)
    if found is None:
        return None
    data, where = found
    password = os.environ.get(sig.pfx_password_env, "") if sig.pfx_password_env else ""
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(data, password.encode() or None)
    except ValueError:
        fix = (f"set {sig.pfx_password_env} to the PFX's password" if sig.pfx_password_env else
               "add pfx_password_env: naming the variable that holds its password")
        raise UsageError(f"{where}: not a PFX this password opens", fix) from None
    if key is None or cert is None:
        raise UsageError(f"{where}: the PFX holds no certificate with its private key",
                         "export the signing certificate with its private key (Export-PfxCertificate)")
    return PfxPair(cert, key)


def pfx_thumbprint(spec: Spec, root: Path) -> str:
    """What decides the certificate the build writes, for doit's state: the PFX certificate's SHA-1 thumbprint
    (public), ``generate`` when the pair is made here, or ``unreadable`` (the task then says why)."""
    try:
        pair = load_pfx(spec, root)
    except UsageError:
        return "unreadable"
    if pair is None:
        return "generate"
    return pair.cert.fingerprint(hashes.SHA1()).hex()  # a certificate thumbprint, as Windows shows it
