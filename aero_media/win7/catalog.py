"""Read Windows security catalogs (.cat): PKCS#7 SignedData around a certificate trust list.

Parsed with asn1crypto, not signify: signify needs oscrypto, which fails to import
on OpenSSL 3.0.10 and later without a ctypes shim (docs/upstream.md#libraries-and-tools).
We read what decides whether Windows 7 can use the catalog (docs/windows7.md#catalogs):
signer digest algorithms, the signing certificate, member hashes and the OS attributes;
each signer's signature and chain are checked by :mod:`aero_media.win7.sigverify`.

Catalogs are untrusted input: anything malformed raises :class:`CatalogError`
with a one-line reason, never a traceback.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from asn1crypto import algos, cms, core, x509

from ..errors import ValidationError
from .sigverify import SignatureCheck, Verdict, check_signer

PLACEHOLDER_MAGIC = b"AERO-PLACEHOLDER-CATALOG"

OID_CTL = "1.3.6.1.4.1.311.10.1"
OID_CATALOG_LIST = "1.3.6.1.4.1.311.12.1.1"
SUBJECT_ALGORITHMS = {"1.3.6.1.4.1.311.12.1.2": "sha1", "1.3.6.1.4.1.311.12.1.3": "sha256"}
OID_CAT_NAMEVALUE = "1.3.6.1.4.1.311.12.2.1"
OID_CAT_MEMBERINFO = "1.3.6.1.4.1.311.12.2.2"
OID_SPC_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"
OID_SPC_PE_IMAGE_DATA = "1.3.6.1.4.1.311.2.1.15"
OID_SPC_CAB_DATA = "1.3.6.1.4.1.311.2.1.25"  # what Inf2Cat uses for flat (non-PE) file hashes
OID_NESTED_SIGNATURE = "1.3.6.1.4.1.311.2.4.1"
OID_RFC3161_TIMESTAMP = "1.3.6.1.4.1.311.3.3.1"
OID_COUNTERSIGNATURE = "1.2.840.113549.1.9.6"
MEMBER_KINDS = {OID_SPC_PE_IMAGE_DATA: "pe", OID_SPC_CAB_DATA: "flat"}


class CatalogError(ValidationError):
    """The bytes are not a catalog we can read; the message says why."""



# --- ASN.1 shapes (Microsoft's, not in asn1crypto) -------------------------------------


class _AlgorithmIdentifier(core.Sequence):
    _fields = [("algorithm", core.ObjectIdentifier), ("parameters", core.Any, {"optional": True})]


class _CatNameValue(core.Sequence):
    _fields = [("tag", core.BMPString), ("flags", core.Integer), ("value", core.OctetString)]


class _CatMemberInfo(core.Sequence):
    _fields = [("subject_guid", core.BMPString), ("cert_version", core.Integer)]


class _SpcAttributeTypeAndOptionalValue(core.Sequence):
    _fields = [("type", core.ObjectIdentifier), ("value", core.Any, {"optional": True})]


class _SpcIndirectDataContent(core.Sequence):
    _fields = [("data", _SpcAttributeTypeAndOptionalValue), ("message_digest", algos.DigestInfo)]


class _AnySet(core.SetOf):
    _child_spec = core.Any


class _CtlAttribute(core.Sequence):
    _fields = [("type", core.ObjectIdentifier), ("values", _AnySet)]


class _CtlAttributes(core.SetOf):
    _child_spec = _CtlAttribute


class _TrustedSubject(core.Sequence):
    _fields = [("identifier", core.OctetString), ("attributes", _CtlAttributes, {"optional": True})]


class _TrustedSubjects(core.SequenceOf):
    _child_spec = _TrustedSubject


class _OidSequence(core.SequenceOf):
    _child_spec = core.ObjectIdentifier


class _CtlExtension(core.Sequence):
    _fields = [
        ("extn_id", core.ObjectIdentifier),
        ("critical", core.Boolean, {"default": False}),
        ("extn_value", core.OctetString),
    ]


class _CtlExtensions(core.SequenceOf):
    _child_spec = _CtlExtension


class CertificateTrustList(core.Sequence):
    """szOID_CTL content (RFC-less; layout from wincrypt.h CTL_INFO)."""

    _fields = [
        ("version", core.Integer, {"default": 0}),
        ("subject_usage", _OidSequence),
        ("list_identifier", core.OctetString, {"optional": True}),
        ("sequence_number", core.Integer, {"optional": True}),
        ("this_update", x509.Time),
        ("next_update", x509.Time, {"optional": True}),
        ("subject_algorithm", _AlgorithmIdentifier),
        ("trusted_subjects", _TrustedSubjects, {"optional": True}),
        ("extensions", _CtlExtensions, {"explicit": 0, "optional": True}),
    ]


# --- Model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """One signature on the catalog (the primary one, or a nested one)."""

    digest_algorithm: str
    signature_algorithm: str
    subject: str | None
    issuer: str | None
    not_before: datetime | None
    not_after: datetime | None
    cert_hash_algorithm: str | None
    """Hash algorithm of the signing certificate's own signature (a SHA-256 chain also needs KB3033929)."""
    timestamp: str | None
    """'authenticode' (countersignature), 'rfc3161', or None when not timestamped."""
    nested: bool
    content_digest_ok: bool | None
    """The signed messageDigest matches the trust list (False = catalog edited after signing)."""
    certificate: bytes | None = field(default=None, compare=False, repr=False)
    """DER of the signing certificate (what setup pre-trusts as publisher), when the catalog carries it."""
    check: SignatureCheck = field(default=SignatureCheck(Verdict.UNSUPPORTED, Verdict.UNSUPPORTED), compare=False)
    """Whether the signature verifies with the certificate's key, and the chain with its issuers' keys."""

    def to_json(self) -> dict[str, object]:
        """JSON-safe summary for manifests."""
        return {
            "digest_algorithm": self.digest_algorithm,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "cert_hash_algorithm": self.cert_hash_algorithm,
            "timestamp": self.timestamp,
            "nested": self.nested,
        }


@dataclass(frozen=True)
class Member:
    """One catalog entry: a file hash plus its name/value attributes."""

    tag: str
    digest: bytes
    digest_algorithm: str
    kind: str
    """'pe' (Authenticode image hash), 'flat' (hash of the bytes) or 'unknown'."""
    attributes: tuple[tuple[str, str], ...] = ()
    subject_guid: str | None = None
    """CAT_MEMBERINFO's subject interface GUID (PE or flat file), when the member has one."""

    def attribute(self, name: str) -> str | None:
        """Return a name/value attribute (case-insensitive name), e.g. 'File' or 'OSAttr'."""
        return _lookup(self.attributes, name)

    @property
    def file(self) -> str | None:
        return self.attribute("File")

    @property
    def os_attr(self) -> str | None:
        return self.attribute("OSAttr")


@dataclass(frozen=True)
class Catalog:
    """What a .cat says; ``placeholder`` catalogs carry only their explanation text."""

    placeholder: bool = False
    placeholder_text: str | None = None
    signers: tuple[Signer, ...] = ()
    subject_algorithm: str | None = None
    this_update: datetime | None = None
    members: tuple[Member, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()
    _by_digest: dict[bytes, Member] = field(default_factory=dict, repr=False, compare=False)

    @property
    def signed(self) -> bool:
        return bool(self.signers)

    @property
    def primary(self) -> Signer | None:
        """The signature Windows 7 evaluates (nested signatures are ignored without updates)."""
        return self.signers[0] if self.signers else None

    @property
    def digest_algorithms(self) -> tuple[str, ...]:
        """Digest algorithms of all signatures, primary first, without repeats."""
        return tuple(dict.fromkeys(s.digest_algorithm for s in self.signers))

    def attribute(self, name: str) -> str | None:
        """Return a catalog-level attribute (case-insensitive name), e.g. 'OS' or 'HWID1'."""
        return _lookup(self.attributes, name)

    @property
    def os_attr(self) -> str | None:
        return self.attribute("OS")

    def find(self, digest: bytes) -> Member | None:
        """Return the member with this hash (members are matched by hash, never by name)."""
        return self._by_digest.get(digest)

    @property
    def member_algorithms(self) -> tuple[str, ...]:
        return tuple(sorted({m.digest_algorithm for m in self.members}))

    def to_json(self) -> dict[str, object]:
        """JSON-safe summary for manifests."""
        primary = self.primary
        return {
            "placeholder": self.placeholder,
            "signed": self.signed,
            "digest_algorithms": list(self.digest_algorithms),
            "signer_subject": primary.subject if primary else None,
            "not_before": primary.not_before.isoformat() if primary and primary.not_before else None,
            "not_after": primary.not_after.isoformat() if primary and primary.not_after else None,
            "timestamp": primary.timestamp if primary else None,
            "os_attr": self.os_attr,
            "member_algorithms": list(self.member_algorithms),
            "members": len(self.members),
        }


def _lookup(pairs: tuple[tuple[str, str], ...], name: str) -> str | None:
    low = name.lower()
    for key, value in pairs:
        if key.lower() == low:
            return value
    return None


# --- Parsing -----------------------------------------------------------------------------


def is_placeholder(data: bytes) -> bool:
    """True for the sample pack's stand-in catalog (not a real catalog)."""
    return data.startswith(PLACEHOLDER_MAGIC)


def _items(value: core.Asn1Value) -> list[core.Asn1Value]:
    """Children of an optional SET/SEQUENCE OF; an absent field (Void) has none.

    Avoids ``.native``, which would recurse into Any values asn1crypto cannot decode.
    """
    return [] if isinstance(value, core.Void) else list(value)


def _utf16z(raw: bytes) -> str:
    return raw.decode("utf-16-le", errors="replace").rstrip("\0")


def _name_value(der: bytes) -> tuple[str, str]:
    nv = _CatNameValue.load(der)
    return nv["tag"].native.rstrip("\0"), _utf16z(nv["value"].native)


def _member_guid(der: bytes) -> str | None:
    # Informational only: a member info we cannot read must not make an otherwise readable catalog fail.
    try:
        return str(_CatMemberInfo.load(der)["subject_guid"].native).rstrip("\0")
    except Exception:  # asn1crypto raises many types on bad DER
        return None


def _member(subject: _TrustedSubject) -> Member:
    tag_raw = subject["identifier"].native
    attrs: list[tuple[str, str]] = []
    digest: bytes | None = None
    algo = "unknown"
    kind = "unknown"
    guid: str | None = None
    for attr in _items(subject["attributes"]):
        oid = attr["type"].dotted
        for value in attr["values"]:
            if oid == OID_CAT_NAMEVALUE:
                attrs.append(_name_value(value.dump()))
            elif oid == OID_CAT_MEMBERINFO:
                guid = _member_guid(value.dump())
            elif oid == OID_SPC_INDIRECT_DATA:
                ind = _SpcIndirectDataContent.load(value.dump())
                kind = MEMBER_KINDS.get(ind["data"]["type"].dotted, "unknown")
                algo = ind["message_digest"]["digest_algorithm"]["algorithm"].native
                digest = ind["message_digest"]["digest"].native
    tag = _utf16z(tag_raw) if len(tag_raw) % 2 == 0 and tag_raw[1:2] == b"\0" else tag_raw.hex().upper()
    if digest is None:
        # Without SpcIndirectData the tag itself is the hex hash (older MakeCat output).
        try:
            digest = bytes.fromhex(tag)
        except ValueError:
            digest = b""
        algo = {20: "sha1", 32: "sha256"}.get(len(digest), "unknown")
    return Member(tag=tag, digest=digest, digest_algorithm=algo, kind=kind, attributes=tuple(attrs),
                  subject_guid=guid)


def _cert_for(sd: cms.SignedData, sid: cms.SignerIdentifier) -> x509.Certificate | None:
    for choice in _items(sd["certificates"]):
        if choice.name != "certificate":
            continue
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            want = sid.chosen
            if cert.serial_number == want["serial_number"].native and cert.issuer == want["issuer"]:
                return cert
        elif cert.key_identifier == sid.chosen.native:
            return cert
    return None


def _signers(sd: cms.SignedData, content: bytes, nested: bool) -> list[Signer]:
    out: list[Signer] = []
    for si in sd["signer_infos"]:
        algo = si["digest_algorithm"]["algorithm"].native
        cert = _cert_for(sd, si["sid"])
        digest_ok: bool | None = None
        for attr in _items(si["signed_attrs"]):
            if attr["type"].native == "message_digest":
                try:
                    digest_ok = hashlib.new(algo, content).digest() == attr["values"][0].native
                except ValueError:  # a digest name hashlib does not know
                    digest_ok = None
        timestamp = None
        nested_blobs: list[bytes] = []
        for attr in _items(si["unsigned_attrs"]):
            oid = attr["type"].dotted
            if oid == OID_COUNTERSIGNATURE:
                timestamp = "authenticode"
            elif oid == OID_RFC3161_TIMESTAMP:
                timestamp = "rfc3161"
            elif oid == OID_NESTED_SIGNATURE:
                nested_blobs.extend(v.dump() for v in attr["values"])
        validity = cert["tbs_certificate"]["validity"] if cert is not None else None
        out.append(Signer(
            digest_algorithm=algo,
            signature_algorithm=si["signature_algorithm"]["algorithm"].native,
            subject=cert.subject.human_friendly if cert is not None else None,
            issuer=cert.issuer.human_friendly if cert is not None else None,
            not_before=validity["not_before"].native if validity is not None else None,
            not_after=validity["not_after"].native if validity is not None else None,
            cert_hash_algorithm=_cert_hash(cert),
            timestamp=timestamp,
            nested=nested,
            content_digest_ok=digest_ok,
            certificate=cert.dump() if cert is not None else None,
            check=check_signer(sd, si, cert, content),
        ))
        for blob in nested_blobs:
            inner = cms.ContentInfo.load(blob)["content"]
            out.extend(_signers(inner, inner["encap_content_info"]["content"].contents, nested=True))
    return out


def _cert_hash(cert: x509.Certificate | None) -> str | None:
    if cert is None:
        return None
    try:
        return str(cert["signature_algorithm"].hash_algo)
    except ValueError:  # e.g. ed25519: no separate hash
        return None


def _signed_data(data: bytes, what: str, fix: str | None = None) -> cms.SignedData:
    # Not strict: WIN_CERTIFICATE blobs carry zero padding after the DER.
    info = cms.ContentInfo.load(data)
    if info["content_type"].native != "signed_data":
        raise CatalogError(f"{what} is PKCS#7 {info['content_type'].native!r}, not signed data", fix)
    return info["content"]


def parse_catalog(data: bytes, name: str = "catalog") -> Catalog:
    """Parse a .cat file's bytes; raise :class:`CatalogError` when it is not a catalog."""
    if is_placeholder(data):
        text = data[len(PLACEHOLDER_MAGIC):].decode("utf-8", errors="replace").strip(" :-\r\n\t")
        return Catalog(placeholder=True, placeholder_text=text or None)
    fix = "replace it with the .cat shipped next to the INF in the same virtio-win folder"
    if not data:
        raise CatalogError(f"{name} is empty", fix)
    try:
        sd = _signed_data(data, name, fix)
        eci = sd["encap_content_info"]
        if eci["content_type"].dotted != OID_CTL:
            raise CatalogError(f"{name} signs {eci['content_type'].dotted}, not a certificate trust list", fix)
        content = eci["content"]
        if content is None or isinstance(content, core.Void):
            raise CatalogError(f"{name} has an empty certificate trust list", fix)
        # The signed messageDigest covers the CTL's content octets; read them before
        # parse(), which rebinds the Any's contents to the explicit [0] wrapper.
        signed_bytes = content.contents
        ctl = content.parse(CertificateTrustList)
        usage = [o.dotted for o in ctl["subject_usage"]]
        if OID_CATALOG_LIST not in usage:
            raise CatalogError(f"{name} is a certificate trust list but not a catalog (usage {', '.join(usage)})", fix)
        sub_oid = ctl["subject_algorithm"]["algorithm"].dotted
        members = tuple(_member(s) for s in _items(ctl["trusted_subjects"]))
        attrs: list[tuple[str, str]] = []
        for ext in _items(ctl["extensions"]):
            if ext["extn_id"].dotted == OID_CAT_NAMEVALUE:
                attrs.append(_name_value(ext["extn_value"].native))
        signers = tuple(_signers(sd, signed_bytes, nested=False))
        this_update = ctl["this_update"].native
    except CatalogError:
        raise
    except Exception as exc:  # asn1crypto parses lazily and raises many types on bad DER
        raise CatalogError(f"{name} is not a valid catalog ({type(exc).__name__}: {_short(exc)})", fix) from None
    by_digest: dict[bytes, Member] = {}
    for m in members:
        by_digest.setdefault(m.digest, m)
    return Catalog(
        signers=signers,
        subject_algorithm=SUBJECT_ALGORITHMS.get(sub_oid, sub_oid),
        this_update=this_update,
        members=members,
        attributes=tuple(attrs),
        _by_digest=by_digest,
    )


def load_catalog(path: Path) -> Catalog:
    """Read and parse a .cat file."""
    return parse_catalog(path.read_bytes(), path.name)


@dataclass(frozen=True)
class EmbeddedSignature:
    """The first signer of a PE's embedded signature, and what it signs."""

    digest_algorithm: str
    image_digest: bytes | None
    """The Authenticode image hash SpcIndirectDataContent carries (what the PE must hash to)."""
    image_digest_algorithm: str | None
    content_digest_ok: bool | None
    check: SignatureCheck
    certificate: bytes | None


def embedded_signer(blob: bytes) -> EmbeddedSignature | None:
    """Read the first signer of an embedded PE signature (None: no signer); CatalogError when unreadable."""
    try:
        sd = _signed_data(blob, "the embedded signature")
        infos = list(sd["signer_infos"])
        if not infos:
            return None
        si = infos[0]
        content = sd["encap_content_info"]["content"]
        signed = content.contents  # the messageDigest covers these octets; read before parse() rebinds them
        ind = content.parse(_SpcIndirectDataContent)
        algo = si["digest_algorithm"]["algorithm"].native
        cert = _cert_for(sd, si["sid"])
        digest_ok = None
        for attr in _items(si["signed_attrs"]):
            if attr["type"].native == "message_digest":
                digest_ok = _digest(algo, signed) == attr["values"][0].native
        return EmbeddedSignature(
            digest_algorithm=algo,
            image_digest=ind["message_digest"]["digest"].native,
            image_digest_algorithm=ind["message_digest"]["digest_algorithm"]["algorithm"].native,
            content_digest_ok=digest_ok,
            check=check_signer(sd, si, cert, signed),
            certificate=cert.dump() if cert is not None else None)
    except CatalogError:
        raise
    except Exception as exc:  # untrusted bytes: asn1crypto raises many types
        raise CatalogError(f"the embedded signature is not valid PKCS#7 ({type(exc).__name__}: {_short(exc)})",
                           None) from None


def _digest(algo: str, data: bytes) -> bytes | None:
    try:
        return hashlib.new(algo, data).digest()
    except ValueError:
        return None


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 120 else text[:117] + "..."
