"""Create Windows 7 security catalogs (.cat) on Linux: an unsigned PKCS#7 around a catalog trust list.

Neither Debian nor PyPI has an Inf2Cat, and osslsigncode signs catalogs but does
not create them, so we write the catalog ourselves and let
:mod:`aero_media.win7.signing` sign it. The shape is the one Inf2Cat/makecat write
for Windows 7 ("version 1" catalogs, docs/windows7.md#catalogs), checked field by field
against a real upstream viostor catalog:

* ``ContentInfo(signedData)`` whose SignedData has no signer yet, encapsulating
  ``szOID_CTL`` content as ``[0] EXPLICIT`` CTL (PKCS#7 v1.5 style, not the CMS
  OCTET STRING wrapping asn1crypto's ``cms`` module would write);
* the CTL: SubjectUsage ``catalog list``, a 16-byte ListIdentifier derived from
  the content, ThisUpdate, SubjectAlgorithm SHA-1 members, the members, and the
  catalog-level name/value attributes ``OS`` (``7X64``/``7X86``) and ``OSAttr``;
* each member: its tag (uppercase hex hash, UTF-16LE, NUL-terminated), and the
  attributes ``File`` and ``OSAttr`` (CAT_NAMEVALUE), CAT_MEMBERINFO (PE or
  flat subject GUID) and SpcIndirectData (PE image data or flat "cab" data plus
  the SHA-1 DigestInfo).

Member hashes: the Authenticode SHA-1 for PE files (``.sys``, ``.dll``, ``.exe``),
the plain SHA-1 of the bytes for everything else (INF and other flat files).
The output is DER and a pure function of its inputs: members are sorted by hash,
SET OF encodings are sorted (asn1crypto does this on encoding), and the only time
in it is ``this_update`` (the build's ``SOURCE_DATE_EPOCH``).

The ASN.1 classes below are written independently of :mod:`aero_media.win7.catalog`'s
reader, so reading a catalog back with ``parse_catalog`` cross-checks both.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from asn1crypto import algos, core, x509

from ..spec.types import Arch
from .inf import Inf
from .pe import PeError, authenticode_hash

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_CTL = "1.3.6.1.4.1.311.10.1"
OID_CATALOG_LIST = "1.3.6.1.4.1.311.12.1.1"
OID_CATALOG_LIST_MEMBER_SHA1 = "1.3.6.1.4.1.311.12.1.2"  # the "v2" SHA-256 form (…12.1.3) is Windows 8+ only
OID_CAT_NAMEVALUE = "1.3.6.1.4.1.311.12.2.1"
OID_CAT_MEMBERINFO = "1.3.6.1.4.1.311.12.2.2"
OID_SPC_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"
OID_SPC_PE_IMAGE_DATA = "1.3.6.1.4.1.311.2.1.15"
OID_SPC_CAB_DATA = "1.3.6.1.4.1.311.2.1.25"

# CRYPTCAT_ATTR_AUTHENTICATED | CRYPTCAT_ATTR_DATAASCII | CRYPTCAT_ATTR_NAMEASCII, as makecat writes.
NAMEVALUE_FLAGS = 0x10010001
# Subject interface package GUIDs (SIP) that tell Windows how the member was hashed.
PE_SUBJECT_GUID = "{C689AAB8-8E78-11D0-8C47-00C04FC295EE}"
FLAT_SUBJECT_GUID = "{DE351A42-8E59-11D0-8C47-00C04FC295EE}"
MEMBERINFO_VERSION = 512
# The NT version attribute Inf2Cat writes for Windows 7 (NT 6.1) on x86 and x64 alike.
WIN7_OS_ATTR = "2:6.1"
PE_SUFFIXES = (".sys", ".dll", ".exe")
LIST_ID_SIZE = 16
_OS_ATTR_RE = re.compile(r"\d+:\d+\.\d+(,\d+:\d+\.\d+)*")
_OS_LIST_RE = re.compile(r"[A-Za-z0-9_]+(,[A-Za-z0-9_]+)*")


class MemberKind(StrEnum):
    """How a member is hashed: as a PE image (Authenticode) or as plain bytes."""

    PE = "pe"
    FLAT = "flat"

    @classmethod
    def for_name(cls, name: str) -> MemberKind:
        """The kind Inf2Cat picks from the file name: PE for .sys/.dll/.exe, flat otherwise."""
        return cls.PE if name.lower().endswith(PE_SUFFIXES) else cls.FLAT


@dataclass(frozen=True)
class CatalogMemberFile:
    """One file to list: the name recorded in its ``File`` attribute, its bytes (or path) and kind.

    ``kind`` None means "by extension" (:meth:`MemberKind.for_name`).
    """

    name: str
    source: bytes | Path
    kind: MemberKind | None = None

    @property
    def member_kind(self) -> MemberKind:
        return self.kind if self.kind is not None else MemberKind.for_name(self.name)


@dataclass(frozen=True)
class CatalogEntry:
    """A member as written: name, kind and SHA-1 member hash."""

    name: str
    kind: MemberKind
    digest: bytes

    @property
    def tag(self) -> str:
        """The member tag Windows looks files up by: the hash as uppercase hex."""
        return self.digest.hex().upper()


def catalog_entry(member: CatalogMemberFile) -> CatalogEntry:
    """Hash one member the way Windows 7 looks it up (Authenticode SHA-1 for PE, SHA-1 of the bytes otherwise).

    A PE-kind member that is not a PE image raises :class:`~aero_media.win7.pe.PeError` naming the file.
    """
    _check_name(member.name)
    data = member.source.read_bytes() if isinstance(member.source, Path) else bytes(member.source)
    kind = member.member_kind
    if kind is MemberKind.FLAT:
        return CatalogEntry(member.name, kind, hashlib.sha1(data).digest())
    try:
        digest = authenticode_hash(data, "sha1")
    except PeError as exc:
        raise PeError(f"{member.name}: {exc.message}, so it cannot be listed in a catalog as a PE image",
                      f"replace {member.name} with a real PE build, or list it as a flat file") from None
    return CatalogEntry(member.name, kind, digest)


# --- ASN.1 shapes (Microsoft's; the names follow wincrypt.h / mscat.h) --------------------------
# asn1crypto declares structures as class attributes, and its classes are untyped (Any) for mypy.


class _CatNameValue(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [("tag", core.BMPString), ("flags", core.Integer), ("value", core.OctetString)]


class _CatMemberInfo(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [("subject_guid", core.BMPString), ("cert_version", core.Integer)]


class _SpcString(core.Choice):  # type: ignore[misc]
    _alternatives: ClassVar[list[Any]] = [("unicode", core.BMPString, {"implicit": 0}),
                                          ("ascii", core.IA5String, {"implicit": 1})]


class _SpcLink(core.Choice):  # type: ignore[misc]
    _alternatives: ClassVar[list[Any]] = [("url", core.IA5String, {"implicit": 0}),
                                          ("file", _SpcString, {"explicit": 2})]


class _SpcPeImageFlags(core.BitString):  # type: ignore[misc]
    _map: ClassVar[dict[int, str]] = {0: "include_resources", 1: "include_debug_info",
                                      2: "include_import_address_table"}


class _SpcPeImageData(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [("flags", _SpcPeImageFlags), ("file", _SpcLink, {"explicit": 0})]


class _SpcAttributeTypeAndOptionalValue(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [("type", core.ObjectIdentifier), ("value", core.Any)]


class _SpcIndirectDataContent(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [("data", _SpcAttributeTypeAndOptionalValue),
                                    ("message_digest", algos.DigestInfo)]


class _AnySet(core.SetOf):  # type: ignore[misc]
    _child_spec = core.Any


class _Attribute(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [("type", core.ObjectIdentifier), ("values", _AnySet)]


class _Attributes(core.SetOf):  # type: ignore[misc]
    _child_spec = _Attribute


class _Subject(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [("identifier", core.OctetString), ("attributes", _Attributes)]


class _Subjects(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _Subject


class _Usage(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.ObjectIdentifier


class _AlgorithmId(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [("algorithm", core.ObjectIdentifier), ("parameters", core.Null)]


class _Extension(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [("extn_id", core.ObjectIdentifier), ("extn_value", core.OctetString)]


class _Extensions(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _Extension


class _Ctl(core.Sequence):  # type: ignore[misc]
    # CTL_INFO with version CTL_V1 (0, the DEFAULT, so not encoded), no SequenceNumber, no NextUpdate.
    _fields: ClassVar[list[Any]] = [
        ("subject_usage", _Usage),
        ("list_identifier", core.OctetString),
        ("this_update", x509.Time),
        ("subject_algorithm", _AlgorithmId),
        ("trusted_subjects", _Subjects),
        ("extensions", _Extensions, {"explicit": 0}),
    ]


class _DigestAlgorithms(core.SetOf):  # type: ignore[misc]
    _child_spec = algos.DigestAlgorithm


class _EncapsulatedContent(core.Sequence):  # type: ignore[misc]
    # PKCS#7 v1.5 ContentInfo: the content is the CTL itself under [0], not an OCTET STRING.
    _fields: ClassVar[list[Any]] = [("content_type", core.ObjectIdentifier), ("content", _Ctl, {"explicit": 0})]


class _SignedData(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [
        ("version", core.Integer),
        ("digest_algorithms", _DigestAlgorithms),
        ("content_info", _EncapsulatedContent),
        ("signer_infos", _AnySet),
    ]


class _ContentInfo(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [("content_type", core.ObjectIdentifier), ("content", _SignedData, {"explicit": 0})]


# --- Encoding ----------------------------------------------------------------------------------


def _utf16z(text: str) -> bytes:
    return (text + "\0").encode("utf-16-le")


def _name_value(name: str, value: str) -> bytes:
    return bytes(_CatNameValue({"tag": name, "flags": NAMEVALUE_FLAGS, "value": _utf16z(value)}).dump())


def _attribute(oid: str, value_der: bytes) -> dict[str, Any]:
    return {"type": oid, "values": [core.Any.load(value_der)]}


def _indirect_data(entry: CatalogEntry) -> bytes:
    # Inf2Cat's exact values: PE flags {includeResources, includeImportAddressTable} and an empty
    # file link; flat files carry just the empty link. Windows reads only the type and the digest.
    empty_link = {"file": {"unicode": ""}}
    if entry.kind is MemberKind.PE:
        data = {"type": OID_SPC_PE_IMAGE_DATA, "value": core.Any.load(_SpcPeImageData({
            "flags": {"include_resources", "include_import_address_table"}, "file": empty_link}).dump())}
    else:
        data = {"type": OID_SPC_CAB_DATA, "value": core.Any.load(_SpcLink(empty_link).dump())}
    return bytes(_SpcIndirectDataContent({
        "data": data,
        "message_digest": {"digest_algorithm": {"algorithm": "sha1", "parameters": core.Null()},
                           "digest": entry.digest},
    }).dump())


def _subject(entry: CatalogEntry, os_attr: str) -> dict[str, Any]:
    guid = PE_SUBJECT_GUID if entry.kind is MemberKind.PE else FLAT_SUBJECT_GUID
    return {
        "identifier": _utf16z(entry.tag),
        # A SET OF: asn1crypto sorts the encodings on dump, as DER requires.
        "attributes": [
            _attribute(OID_CAT_NAMEVALUE, _name_value("File", entry.name)),
            _attribute(OID_CAT_NAMEVALUE, _name_value("OSAttr", os_attr)),
            _attribute(OID_CAT_MEMBERINFO, _CatMemberInfo({"subject_guid": guid,
                                                           "cert_version": MEMBERINFO_VERSION}).dump()),
            _attribute(OID_SPC_INDIRECT_DATA, _indirect_data(entry)),
        ],
    }


def _time(epoch: int) -> x509.Time:
    when = datetime.fromtimestamp(epoch, UTC)
    # UTCTime covers 1950-2049; later dates use GeneralizedTime, as X.509 does.
    return x509.Time({"utc_time": when} if when.year < 2050 else {"general_time": when})


def _check_name(name: str) -> None:
    # What Windows allows in a file name, without folders: the File attribute names one file.
    if not name or name != name.strip() or any(c in name for c in '<>:"/\\|?*\0') or name in (".", ".."):
        raise ValueError(f"catalog member name {name!r} is not a plain file name")


def _ctl(entries: Sequence[CatalogEntry], os_list: str, os_attr: str, this_update: int, list_id: bytes) -> bytes:
    return bytes(_Ctl({
        "subject_usage": [OID_CATALOG_LIST],
        "list_identifier": list_id,
        "this_update": _time(this_update),
        "subject_algorithm": {"algorithm": OID_CATALOG_LIST_MEMBER_SHA1, "parameters": core.Null()},
        "trusted_subjects": [_subject(e, os_attr) for e in entries],
        "extensions": [{"extn_id": OID_CAT_NAMEVALUE, "extn_value": _name_value("OS", os_list)},
                       {"extn_id": OID_CAT_NAMEVALUE, "extn_value": _name_value("OSAttr", os_attr)}],
    }).dump())


def make_catalog(members: Sequence[CatalogMemberFile], arch: Arch, *, this_update: int,
                 os_attr: str = WIN7_OS_ATTR, os_list: str | None = None, list_id: bytes | None = None) -> bytes:
    """Return the DER of an unsigned Windows 7 catalog listing ``members``.

    ``arch`` sets the catalog's ``OS`` attribute (``7X86`` / ``7X64``) unless
    ``os_list`` gives it explicitly (e.g. ``7X64,Server2008R2X64``, as Inf2Cat
    writes for two targets). ``os_attr`` is the NT version attribute written on
    every member and on the catalog (``2:6.1`` = Windows 7). ``this_update`` is
    the catalog's ThisUpdate time (Unix seconds, normally ``SOURCE_DATE_EPOCH``).
    ``list_id`` (16 bytes) defaults to a hash of everything else, so equal inputs
    give equal bytes. Raises ValueError for malformed arguments (no members, a
    name that is not a plain file name, a name listed twice) and
    :class:`~aero_media.win7.pe.PeError` for a PE member that is not a PE image.
    """
    if not members:
        raise ValueError("a catalog needs at least one member")
    if this_update < 0:
        raise ValueError(f"this_update {this_update} is before 1970")
    if not _OS_ATTR_RE.fullmatch(os_attr):
        raise ValueError(f"os_attr {os_attr!r} is not like '2:6.1'")
    os_list = os_list if os_list is not None else arch.catalog_os
    if not _OS_LIST_RE.fullmatch(os_list):
        raise ValueError(f"os_list {os_list!r} is not like '7X64' or '7X64,Server2008R2X64'")
    if list_id is not None and len(list_id) != LIST_ID_SIZE:
        raise ValueError(f"list_id must be {LIST_ID_SIZE} bytes, not {len(list_id)}")
    entries = catalog_entries(members)
    if list_id is None:
        list_id = hashlib.sha256(_ctl(entries, os_list, os_attr, this_update, bytes(LIST_ID_SIZE))).digest()[:16]
    ctl = _ctl(entries, os_list, os_attr, this_update, list_id)
    return bytes(_ContentInfo({
        "content_type": OID_SIGNED_DATA,
        "content": {
            "version": 1,
            # No signer yet; osslsigncode adds the signer and its digest algorithm.
            "digest_algorithms": [],
            "content_info": {"content_type": OID_CTL, "content": _Ctl.load(ctl)},
            "signer_infos": [],
        },
    }).dump())


def catalog_entries(members: Sequence[CatalogMemberFile]) -> list[CatalogEntry]:
    """The entries :func:`make_catalog` writes for ``members``, in catalog order.

    Raises ValueError when two members claim one name (Windows file names are case-insensitive).
    """
    seen: dict[str, str] = {}
    for m in members:
        _check_name(m.name)
        if m.name.lower() in seen:
            raise ValueError(f"catalog member {m.name!r} is listed twice (also as {seen[m.name.lower()]!r})")
        seen[m.name.lower()] = m.name
    # Windows looks members up by hash, so the order carries no meaning: sort by tag (as Inf2Cat does),
    # then by name, so that two files with identical content still have a fixed order.
    return sorted((catalog_entry(m) for m in members), key=lambda e: (e.tag, e.name.lower(), e.name))


def inf_catalog_files(inf: Inf, arch: Arch) -> tuple[str, ...]:
    """The files (paths relative to the INF's folder) Inf2Cat lists in the INF's catalog for Windows 7 on ``arch``.

    As Inf2Cat ``/os:7_X86`` or ``/os:7_X64`` (Aero's ``ci/make-catalogs.ps1`` runs it per arch
    package) collects them: every file the install sections of the models Windows 7 picks on
    ``arch`` copy (``CopyFiles``, their ``.CoInstallers`` too), every ``SourceDisksFiles`` entry
    for the arch (the driver store imports each, used or not), and never the INF itself (the
    caller adds it, under its own name). A file in ``SourceDisksFiles`` is found where its disk
    and subfolder say; others beside the INF. Sorted, each once (case-insensitively).
    """
    sdf = inf.source_disks_files(arch.inf_arch)
    names: dict[str, str] = {low: entry.relpath for low, entry in sdf.items()}
    for choice in inf.models(arch.inf_arch).chosen:
        for model in choice.models:
            section = inf.install_section(model.install, arch.inf_arch)
            if section is None:
                continue
            for sect in (section, f"{section}.CoInstallers"):
                for ref in inf.copy_files(sect)[0]:
                    names.setdefault(ref.name.lower(), ref.name)
    return tuple(sorted(names.values(), key=lambda n: (n.lower(), n)))
