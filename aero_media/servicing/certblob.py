r"""Certificates as an offline registry store holds them: CryptoAPI's serialized form, and where it goes.

A machine certificate store in the registry is
``SOFTWARE\Microsoft\SystemCertificates\<STORE>\Certificates\<SHA-1 thumbprint>``
with one value, ``Blob`` (REG_BINARY). The Blob is not the DER: it is the
*serialized certificate* that ``CertSerializeCertificateStoreElement`` writes, a
run of property entries, each::

    u32 property id | u32 reserved (always 1) | u32 length | length bytes of data

ending with the certificate itself, property 0x20 (``CERT_CERT_PROP_ID``), the
DER. Wine's crypt32 loads a store whose Blob holds only that entry, and loads
nothing from a Blob that is the raw DER (docs/windows7.md#certificate-blobs).

We write two entries: the SHA-1 hash (``CERT_SHA1_HASH_PROP_ID``, 3), then the
certificate (0x20). Why the hash: it is the first entry of every Blob Windows
writes, it is what the key name says (so a reader that compares the two, as
Wine's does, finds them equal), and a store that finds certificates by
thumbprint need not hash each DER. It is computed from the DER, so it cannot
disagree with it. Why no more: the other properties Windows writes (key
identifier 20, signature hash 15, MD5 hashes 4/24/25, friendly name 11...) are
caches CryptoAPI derives from the DER when asked, or user-set names; a wrong
one would be worse than none, and which of them Windows 7 needs is unconfirmed.
The certificate entry comes last because a reader stops at the element it
delivers (0x20 for a certificate) and applies the properties read before it.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import StrEnum

from ..errors import SourceError

CERT_SHA1_HASH_PROP_ID = 3
CERT_CERT_PROP_ID = 0x20
_RESERVED = 1
_HEADER = struct.Struct("<III")

BLOB_VALUE = "Blob"
STORES_KEY = "Microsoft\\SystemCertificates"


class Store(StrEnum):
    """The machine stores servicing writes: trusted roots and trusted publishers."""

    ROOT = "ROOT"
    TRUSTED_PUBLISHER = "TrustedPublisher"


@dataclass(frozen=True)
class Property:
    """One entry of a serialized element."""

    id: int
    data: bytes


def _entry(prop_id: int, data: bytes) -> bytes:
    return _HEADER.pack(prop_id, _RESERVED, len(data)) + data


def serialized_cert(der: bytes) -> bytes:
    """The ``Blob`` for a certificate: its SHA-1 hash property, then the DER (property 0x20)."""
    if not der or der[0] != 0x30:
        raise SourceError("a certificate for the registry store is not DER (no ASN.1 SEQUENCE)",
                          "give the certificate as a .cer file (DER or PEM)")
    return _entry(CERT_SHA1_HASH_PROP_ID, hashlib.sha1(der).digest()) + _entry(CERT_CERT_PROP_ID, der)


def parse_serialized(blob: bytes) -> list[Property]:
    """Split a serialized element into its entries; raise ``ValueError`` unless the layout is exact."""
    out = []
    at = 0
    while at < len(blob):
        if len(blob) - at < _HEADER.size:
            raise ValueError(f"{len(blob) - at} stray bytes at offset {at}")
        prop_id, reserved, length = _HEADER.unpack_from(blob, at)
        if reserved != _RESERVED:
            raise ValueError(f"entry at offset {at}: reserved field is {reserved}, not 1")
        at += _HEADER.size
        if length > len(blob) - at:
            raise ValueError(f"entry {prop_id:#x} at offset {at - _HEADER.size} runs past the end")
        out.append(Property(prop_id, blob[at:at + length]))
        at += length
    return out
