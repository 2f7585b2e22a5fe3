"""Synthetic Windows 7 driver packages for the INF / PE / catalog check tests.

Everything is generated: INF text shaped like upstream virtio-win's, stand-in PE
images from :mod:`aero_media.devtools.pestub`, and security catalogs built here with
asn1crypto (an encoder written independently of ``aero_media.win7.catalog``'s reader)
and signed with a throwaway RSA key through ``cryptography``. No upstream binary
is needed.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path

from asn1crypto import algos, cms, core, keys, x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from aero_media.devtools.pestub import build_pe
from aero_media.spec.contract import Device
from aero_media.win7.pe import (
    MACHINE_AMD64,
    MACHINE_I386,
    SUBSYSTEM_WINDOWS_GUI,
    PeError,
    authenticode_hash,
    image_checksum,
)
from aero_media.win7.pnp import windows_ids

OID_CTL = "1.3.6.1.4.1.311.10.1"

# --- INF text --------------------------------------------------------------------------------


def make_inf(driver: str, device: Device, arch: str, *, decoration: str | None = None,
             ids: list[str] | None = None, catalog: str | None = "default", service: str | None = None,
             start_type: int | None = None, class_name: str | None = None, extra_strings: str = "",
             sys_name: str | None = None) -> str:
    """INF text (LF; callers pick the line ending) modelled on upstream's Windows 7 INFs."""
    deco = decoration or f"NT{arch}.6.1"
    if ids is None:
        ids = []
        for sub in device.subsystems:
            full, _sub, _rev, bare = windows_ids(device, sub)[:4]
            ids.append(f"{full}, {bare}")
    sys_name = sys_name or f"{driver}.sys"
    cat = f"CatalogFile={driver}.cat\n" if catalog == "default" else (f"CatalogFile={catalog}\n" if catalog else "")
    start = start_type if start_type is not None else (0 if device.boot_critical else 3)
    models = "".join(f"%Dev.DeviceDesc% = {driver}_inst, {line}\n" for line in dict.fromkeys(ids))
    return (
        "; synthetic test INF\n"
        "[Version]\n"
        'Signature="$Windows NT$"\n'
        f"Class={class_name or device.setup_class}\n"
        f"ClassGUID={device.class_guid}\n"
        "Provider=%VENDOR%\n"
        "DriverVer = 06/07/2019,61.77.104.17200\n"
        f"{cat}"
        "\n[SourceDisksNames]\n"
        '1 = %DiskId1%,,,""\n'
        "\n[SourceDisksFiles]\n"
        f"{sys_name} = 1,,\n"
        "\n[DestinationDirs]\n"
        "DefaultDestDir = 12\n"
        "\n[Manufacturer]\n"
        f"%VENDOR% = Models,{deco}\n"
        f"\n[Models.{deco}]\n"
        f"{models}"
        f"\n[{driver}_inst]\n"
        f"CopyFiles = {driver}_files\n"
        f"\n[{driver}_files]\n"
        f"{sys_name},,,2\n"
        f"\n[{driver}_inst.Services]\n"
        f"AddService = {service or device.service}, 0x00000002, {driver}_service\n"
        f"\n[{driver}_service]\n"
        "ServiceType    = 1\n"
        f"StartType      = {start}\n"
        "ErrorControl   = 1\n"
        f"ServiceBinary  = %12%\\{sys_name}\n"
        "\n[Strings]\n"
        'VENDOR = "Test Vendor, Inc."\n'
        'DiskId1 = "Test disk"\n'
        'Dev.DeviceDesc = "Test device"\n'
        f"{extra_strings}"
    )


def crlf(text: str) -> bytes:
    """ANSI bytes with CRLF line ends, as upstream ships INFs."""
    return text.replace("\n", "\r\n").encode("cp1252")


def machine_for(arch: str) -> int:
    return MACHINE_I386 if arch == "x86" else MACHINE_AMD64


def stand_in_sys(arch: str, marker: bytes | None = None) -> bytes:
    """A native-subsystem PE for ``arch``; ``marker`` replaces the stand-in marker text."""
    if marker is None:
        return build_pe(machine_for(arch))
    return build_pe(machine_for(arch), marker=marker)


def stand_in_dll(arch: str) -> bytes:
    return build_pe(machine_for(arch), SUBSYSTEM_WINDOWS_GUI, dll=True, marker=b"test co-installer")


# --- Catalogs --------------------------------------------------------------------------------


class _NameValue(core.Sequence):
    _fields = [("tag", core.BMPString), ("flags", core.Integer), ("value", core.OctetString)]


class _TypeValue(core.Sequence):
    _fields = [("type", core.ObjectIdentifier), ("value", core.Any, {"optional": True})]


class _Indirect(core.Sequence):
    _fields = [("data", _TypeValue), ("message_digest", algos.DigestInfo)]


class _AnySet(core.SetOf):
    _child_spec = core.Any


class _Attr(core.Sequence):
    _fields = [("type", core.ObjectIdentifier), ("values", _AnySet)]


class _Attrs(core.SetOf):
    _child_spec = _Attr


class _Subject(core.Sequence):
    _fields = [("identifier", core.OctetString), ("attributes", _Attrs)]


class _Subjects(core.SequenceOf):
    _child_spec = _Subject


class _Oids(core.SequenceOf):
    _child_spec = core.ObjectIdentifier


class _AlgId(core.Sequence):
    _fields = [("algorithm", core.ObjectIdentifier), ("parameters", core.Null, {"optional": True})]


class _Ext(core.Sequence):
    _fields = [("id", core.ObjectIdentifier), ("value", core.OctetString)]


class _Exts(core.SequenceOf):
    _child_spec = _Ext


class _Ctl(core.Sequence):
    _fields = [
        ("subject_usage", _Oids),
        ("list_identifier", core.OctetString),
        ("this_update", core.UTCTime),
        ("subject_algorithm", _AlgId),
        ("subjects", _Subjects),
        ("extensions", _Exts, {"explicit": 0}),
    ]


def _tlv(tag: int, body: bytes) -> bytes:
    """One DER element; used for the outer PKCS#7 layers, whose context tags asn1crypto won't re-wrap."""
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + n.to_bytes(size, "big") + body


@dataclass(frozen=True)
class CatMember:
    """One file for the catalog: its hash kind ('pe' or 'flat'), hash and name."""

    name: str
    digest: bytes
    kind: str
    os_attr: str = "2:6.1"


def member_for(name: str, data: bytes, algo: str = "sha1") -> CatMember:
    """A member the way Inf2Cat makes it: Authenticode hash for PE files, flat hash otherwise."""
    if data[:2] == b"MZ":
        try:
            return CatMember(name, authenticode_hash(data, algo), "pe")
        except PeError:
            pass  # not really a PE: Inf2Cat would hash it flat

    return CatMember(name, hashlib.new(algo, data).digest(), "flat")


def _utf16z(text: str) -> bytes:
    return (text + "\0").encode("utf-16-le")


def _name_value(tag: str, value: str) -> bytes:
    return _NameValue({"tag": tag, "flags": 0x10010001, "value": _utf16z(value)}).dump()


def build_ctl(members: list[CatMember], os_attr: str | None = "7X64,Server2008R2X64",
              hwids: tuple[str, ...] = (), algo: str = "sha1") -> bytes:
    """DER of a catalog trust list (szOID_CTL content) listing ``members``."""
    subjects = []
    for m in members:
        kind_oid = "1.3.6.1.4.1.311.2.1.15" if m.kind == "pe" else "1.3.6.1.4.1.311.2.1.25"
        indirect = _Indirect({
            "data": {"type": kind_oid},
            "message_digest": {"digest_algorithm": {"algorithm": algo}, "digest": m.digest},
        })
        attrs = [
            {"type": "1.3.6.1.4.1.311.12.2.1", "values": [core.Any.load(_name_value("File", m.name))]},
            {"type": "1.3.6.1.4.1.311.12.2.1", "values": [core.Any.load(_name_value("OSAttr", m.os_attr))]},
            {"type": "1.3.6.1.4.1.311.2.1.4", "values": [core.Any.load(indirect.dump())]},
        ]
        subjects.append({"identifier": _utf16z(m.digest.hex().upper()), "attributes": attrs})
    exts = []
    if os_attr is not None:
        exts.append({"id": "1.3.6.1.4.1.311.12.2.1", "value": _name_value("OS", os_attr)})
    for i, hwid in enumerate(hwids, start=1):
        exts.append({"id": "1.3.6.1.4.1.311.12.2.1", "value": _name_value(f"HWID{i}", hwid.lower())})
    sub_alg = "1.3.6.1.4.1.311.12.1.2" if algo == "sha1" else "1.3.6.1.4.1.311.12.1.3"
    return _Ctl({
        "subject_usage": ["1.3.6.1.4.1.311.12.1.1"],
        "list_identifier": hashlib.md5(repr(members).encode()).digest(),
        "this_update": datetime(2019, 8, 12, tzinfo=UTC),
        "subject_algorithm": {"algorithm": sub_alg, "parameters": core.Null()},
        "subjects": subjects,
        "extensions": exts,
    }).dump()


@dataclass(frozen=True)
class Signer:
    """A throwaway signing identity: RSA key plus a self-signed certificate."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate


@cache
def throwaway_signer(cert_hash: str = "sha1", not_after: datetime = datetime(2039, 1, 1, tzinfo=UTC),
                subject: str = "Aero Test Signer") -> Signer:
    """A cached key and certificate; ``cert_hash`` is the certificate's own signature hash."""
    return self_signed(_key(), cert_hash, not_after, subject)


def self_signed(key: rsa.RSAPrivateKey, cert_hash: str = "sha1",
                not_after: datetime = datetime(2039, 1, 1, tzinfo=UTC), subject: str = "Aero Test Signer") -> Signer:
    """A signing identity of ``key`` with a self-signed code-signing certificate."""
    name = x509.Name.build({"common_name": subject, "organization_name": "Aero tests"})
    spki = keys.PublicKeyInfo.load(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    tbs = x509.TbsCertificate({
        "version": "v3",
        "serial_number": 0x1234,
        "signature": {"algorithm": f"{cert_hash}_rsa"},
        "issuer": name,
        "validity": {"not_before": x509.Time({"utc_time": datetime(2018, 1, 1, tzinfo=UTC)}),
                     "not_after": x509.Time({"utc_time": not_after})},
        "subject": name,
        "subject_public_key_info": spki,
        "extensions": [{"extn_id": "extended_key_usage", "critical": False, "extn_value": ["code_signing"]}],
    })
    signature = key.sign(tbs.dump(), padding.PKCS1v15(), _hash(cert_hash))
    cert = x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": {"algorithm": f"{cert_hash}_rsa"},
                             "signature_value": signature})
    return Signer(key, cert)


@lru_cache(maxsize=1)
def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def _hash(name: str) -> hashes.HashAlgorithm:
    return {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}[name]


def _signer_info(signer: Signer, content_type: str, content: bytes, digest: str,
                 timestamped: bool) -> cms.SignerInfo:
    content_octets = core.Sequence.load(content).contents
    signed_attrs = cms.CMSAttributes([
        {"type": "content_type", "values": [content_type]},
        {"type": "message_digest", "values": [hashlib.new(digest, content_octets).digest()]},
    ])
    signature = signer.key.sign(signed_attrs.dump(), padding.PKCS1v15(), _hash(digest))
    info = {
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": {
            "issuer": signer.cert.issuer, "serial_number": signer.cert.serial_number}}),
        "digest_algorithm": {"algorithm": digest},
        "signed_attrs": signed_attrs,
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
        "signature": signature,
    }
    if timestamped:
        # Shape of a classic Authenticode countersignature; its content is not checked by the reader.
        counter = cms.SignerInfo({
            "version": "v1",
            "sid": info["sid"],
            "digest_algorithm": {"algorithm": "sha1"},
            "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
            "signature": b"\0" * 16,
        })
        info["unsigned_attrs"] = cms.CMSAttributes([{"type": "counter_signature", "values": [counter]}])
    return cms.SignerInfo(info)


def signed_data(content_type: str, content: bytes, signer: Signer | None, digest: str = "sha1",
                timestamped: bool = True) -> bytes:
    """PKCS#7 ContentInfo(SignedData) around ``content`` (DER); no signer infos when ``signer`` is None."""
    digests = cms.DigestAlgorithms([{"algorithm": digest}] if signer else [])
    encap = _tlv(0x30, core.ObjectIdentifier(content_type).dump() + _tlv(0xA0, content))
    certs = _tlv(0xA0, signer.cert.dump()) if signer else b""  # [0] IMPLICIT SET OF Certificate
    infos = cms.SignerInfos([_signer_info(signer, content_type, content, digest, timestamped)] if signer else [])
    body = _tlv(0x30, core.Integer(1).dump() + digests.dump() + encap + certs + infos.dump())
    return _tlv(0x30, core.ObjectIdentifier("1.2.840.113549.1.7.2").dump() + _tlv(0xA0, body))


def wrap_catalog(ctl: bytes, signer: Signer | None = None, digest: str = "sha1", timestamped: bool = True) -> bytes:
    """A .cat: SignedData around a trust list; unsigned when ``signer`` is None."""
    return signed_data(OID_CTL, ctl, signer, digest, timestamped)


def embed_signature(pe: bytes, digest: str = "sha1") -> bytes:
    """Append an Authenticode-shaped embedded signature (WIN_CERTIFICATE) and fix the CheckSum.

    The PKCS#7 signs SpcIndirectData over the image hash, as signtool does; only
    its shape and digest algorithm matter to the checks.
    """
    indirect = _Indirect({"data": {"type": "1.3.6.1.4.1.311.2.1.15"},
                          "message_digest": {"digest_algorithm": {"algorithm": digest},
                                             "digest": authenticode_hash(pe, digest)}}).dump()
    blob = signed_data("1.3.6.1.4.1.311.2.1.4", indirect, throwaway_signer(digest), digest, timestamped=True)
    image = bytearray(pe + b"\0" * (-len(pe) % 8))
    entry = struct.pack("<IHH", 8 + len(blob), 0x0200, 0x0002) + blob
    entry += b"\0" * (-len(entry) % 8)
    cert_offset = len(image)
    image += entry
    pe_off = struct.unpack_from("<I", image, 0x3C)[0]
    opt = pe_off + 24
    magic = struct.unpack_from("<H", image, opt)[0]
    secdir = opt + (96 if magic == 0x10B else 112) + 4 * 8
    struct.pack_into("<II", image, secdir, cert_offset, len(entry))
    struct.pack_into("<I", image, opt + 64, image_checksum(bytes(image), opt + 64))
    return bytes(image)


def make_catalog(files: dict[str, bytes], *, arch: str = "amd64", signed: bool = True, digest: str = "sha1",
                 cert_hash: str = "sha1", os_attr: str | None = None, timestamped: bool = True,
                 not_after: datetime = datetime(2039, 1, 1, tzinfo=UTC)) -> bytes:
    """A catalog covering ``files`` (name -> bytes), signed like upstream unless told otherwise."""
    if os_attr is None:
        os_attr = "7X86" if arch == "x86" else "7X64,Server2008R2X64"
    ctl = build_ctl([member_for(n, d) for n, d in files.items()], os_attr=os_attr)
    signer = throwaway_signer(cert_hash, not_after) if signed else None
    return wrap_catalog(ctl, signer, digest, timestamped)


# --- Packages --------------------------------------------------------------------------------


def write_package(pkg: Path, driver: str, device: Device, arch: str, *, inf: bytes | None = None,
                  sys: bytes | None = None, catalog: str | bytes | None = "sha1",
                  extra: dict[str, bytes] | None = None, catalog_files: tuple[str, ...] | None = None) -> Path:
    """Write a complete package folder and return it.

    ``catalog``: 'sha1' / 'sha256' (signed over the package's files), 'unsigned',
    raw bytes (written as is) or None (no .cat). ``catalog_files`` limits which
    files the catalog covers (default: the INF and every .sys/.dll).
    """
    pkg.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {f"{driver}.inf": inf if inf is not None else crlf(make_inf(driver, device, arch))}
    # Default binary: not the pestub marker (so not a "stand-in"), embedded-signed like upstream's.
    files[f"{driver}.sys"] = sys if sys is not None else embed_signature(
        stand_in_sys(arch, marker=b"test driver " + driver.encode()))
    files.update(extra or {})
    if isinstance(catalog, bytes):
        files[f"{driver}.cat"] = catalog
    elif catalog is not None:
        covered = {n: d for n, d in files.items()
                   if (catalog_files is None and n.lower().endswith((".inf", ".sys", ".dll")))
                   or (catalog_files is not None and n in catalog_files)}
        files[f"{driver}.cat"] = make_catalog(covered, arch=arch, signed=catalog != "unsigned",
                                              digest="sha256" if catalog == "sha256" else "sha1",
                                              cert_hash="sha256" if catalog == "sha256" else "sha1")
    for name, data in files.items():
        (pkg / name).write_bytes(data)
    return pkg
