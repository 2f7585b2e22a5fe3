"""Sign Windows 7 catalogs and embed-sign drivers on Linux, with osslsigncode.

Why osslsigncode and not a PKCS#7 built here with ``cryptography``: osslsigncode
(2.4 or newer) already writes exactly what Windows expects, for catalogs and for
PE images, and does so byte-reproducibly given ``-time``; for a PE it also
places the certificate table at an 8-byte boundary and fixes the CheckSum. It is
the oracle our tests verify signatures with either way (``osslsigncode verify``),
so a second, home-made signer would only add code that must agree with it; and
Authenticode's signed attributes (SpcSpOpusInfo, the statement type, SpcIndirectData
for PE images) are details Windows is strict about and osslsigncode has had right
for years. What we add is the policy around it: SHA-1 digests (Windows 7 without
KB3033929, and Windows 7 Setup, verify nothing else), a signing time inside the
certificate's validity, refusing a key inside the checkout, atomic outputs, and a
self-check of every file written.

The private key stays where the caller keeps it: osslsigncode gets its path, we
never read, copy or print it, and our temporary files (inputs given as bytes,
osslsigncode's output before the rename) live in a private folder next to the
destination that is removed on success and on failure.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from asn1crypto import cms, core, pem, x509

from .. import systools
from ..errors import ToolError, UsageError
from ..systools import debian_package
from .catalog import CatalogError, parse_catalog
from .certs import PEM_KEY_MARKER
from .pe import PeError, authenticode_hash, image_checksum, pe_info

MIN_VERSION = (2, 4)
"""``-time`` (reproducible signatures) arrived in osslsigncode 2.4; catalogs are signed since 2.2."""
DIGEST = "sha1"
"""Windows 7 without KB3033929, and Windows 7 Setup, verify SHA-1 signatures only."""
OID_NESTED_SIGNATURE = "1.3.6.1.4.1.311.2.4.1"
"""SPC_NESTED_SIGNATURE: a further signature, whole, in the first signer's unsigned attributes."""
SECOND_DIGEST = "sha256"
"""The optional nested second signature, for Windows that prefers SHA-2 (Aero's ``-DualSign``)."""
DEBIAN_PACKAGE = debian_package("osslsigncode")
_TOOL = "osslsigncode"
_PURPOSE = f"signing the catalogs and drivers needs it, version {'.'.join(map(str, MIN_VERSION))} or newer"
TIMEOUT = 300
_CODE_SIGNING = "code_signing"
_ANY_EKU = "any_extended_key_usage"
_OPENSSL_TRACE = re.compile(r"^[0-9A-F]{8,}:error:")
MIN_RSA_BITS = 1024
"""Windows refuses RSA keys under 1024 bits since KB2661254 (August 2012)."""
GOOD_RSA_BITS = 2048
"""Under this, a key still works on Windows 7 but is weak: a warning."""


@dataclass(frozen=True)
class Osslsigncode:
    """An osslsigncode executable we have checked is new enough."""

    path: str
    version: tuple[int, int]

    @classmethod
    def find(cls, program: str = "osslsigncode") -> Osslsigncode:
        """Locate ``program`` (a name on PATH or a path) and check its version; :class:`ToolError` otherwise."""
        path = systools.find_tool(_TOOL, _PURPOSE, program=program)
        done = systools.run(_TOOL, ["--version"], purpose=_PURPOSE, program=path, env=_ENV, timeout=30,
                            what="telling its version", ok_codes=None)
        m = re.search(r"osslsigncode\s+(\d+)\.(\d+)", done.out + done.err)
        if m is None:
            raise ToolError(f"{path} does not say which osslsigncode version it is",
                            f"install osslsigncode {_dotted(MIN_VERSION)} or newer: apt-get install {DEBIAN_PACKAGE}")
        version = (int(m.group(1)), int(m.group(2)))
        if version < MIN_VERSION:
            raise ToolError(f"{path} is osslsigncode {_dotted(version)}, too old: reproducible signing (-time) "
                            f"needs {_dotted(MIN_VERSION)} or newer",
                            f"install a newer one (Debian 12: apt-get install {DEBIAN_PACKAGE}, or bookworm-backports)")
        return cls(path, version)


@dataclass(frozen=True)
class SigningKey:
    """Where the signing certificate and its private key are; the key is only ever passed on as a path.

    ``cert``: the certificate (PEM or DER; a PEM file may carry the chain).
    ``key``: the private key (PEM or DER), unencrypted or with ``password_file``
    holding its pass phrase (read by osslsigncode, never by us).
    ``pass_fds``: descriptors osslsigncode must inherit, when ``key`` is a ``/dev/fd/N`` path.
    """

    cert: Path
    key: Path
    password_file: Path | None = None
    pass_fds: tuple[int, ...] = ()


# --- Policy checks ----------------------------------------------------------------------------


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def key_inside(key: Path, folder: Path) -> bool:
    """Whether ``key`` lies inside ``folder``, by its path as given or by where symbolic links lead.

    Both count: a key in the tree can be committed, and so can the file a link
    from outside points at.
    """
    key = key.expanduser()
    keys = {Path(os.path.abspath(key)), key.resolve()}
    folders = {Path(os.path.abspath(folder)), folder.resolve()}
    return any(_within(k, f) for k in keys for f in folders)


def refuse_key_inside(key: Path, checkout: Path, setting: str = "the signing key setting") -> None:
    """Raise :class:`UsageError` when the private key ``key`` is inside ``checkout`` (the repo)."""
    if key_inside(key, checkout):
        raise UsageError(f"{key}: the private key is inside the checkout ({checkout}); a committed key is a leaked key",
                         f"keep it outside (e.g. ~/.config/aero-virtio-media/{key.name}) and point {setting} at it")


def _certificates(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the signing certificate ({exc.strerror})",
                         "check the certificate path") from None
    try:
        if pem.detect(data):
            ders = [der for kind, _headers, der in pem.unarmor(data, multiple=True) if kind == "CERTIFICATE"]
        else:
            ders = [data]
        certs = [x509.Certificate.load(der) for der in ders]
        for cert in certs:
            _ = cert.native  # parse everything now, so a broken file fails here
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not an X.509 certificate ({exc})",
                         "give the certificate (.cer or .pem), e.g. from `aero-media make-test-cert`") from None
    if not certs:
        raise UsageError(f"{path}: holds no certificate", "give the certificate (.cer or .pem)")
    return certs


def _utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def check_signing_time(cert: Path, signing_time: int) -> None:
    """Raise :class:`UsageError` unless ``signing_time`` falls inside every certificate's validity in ``cert``.

    osslsigncode signs (and verifies) outside the validity too, but Windows may
    refuse such a signature. Also refuses a certificate whose extended key usage
    excludes code signing, which Windows and osslsigncode reject.
    """
    when = _utc(signing_time)
    for c in _certificates(cert):
        validity = c["tbs_certificate"]["validity"]
        start, end = validity["not_before"].native, validity["not_after"].native
        name = c.subject.human_friendly
        if not start <= when <= end:
            raise UsageError(f"{cert}: signing time {when:%Y-%m-%d %H:%M:%S} UTC (SOURCE_DATE_EPOCH {signing_time}) "
                             f"is outside the validity of certificate {name!r} "
                             f"({start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC)",
                             "sign with a certificate valid at that time (make-test-cert can start it at the epoch), "
                             "or set SOURCE_DATE_EPOCH inside its validity")
        usages = c.extended_key_usage_value
        if usages is not None and not {_CODE_SIGNING, _ANY_EKU} & set(usages.native):
            raise UsageError(f"{cert}: certificate {name!r} is not for code signing "
                             f"(extended key usage {', '.join(usages.native)})",
                             "use a code-signing certificate (EKU 1.3.6.1.5.5.7.3.3)")


def check_key_type(cert: Path, setting: str) -> list[str]:
    """Refuse a signing certificate whose key Windows 7 cannot verify; return warnings for a weak one.

    Windows 7 verifies driver signatures made with RSA keys only (PKCS#1 v1.5), so an
    ECDSA or DSA key would sign media no Windows 7 accepts. RSA keys under
    :data:`MIN_RSA_BITS` are refused (KB2661254), under :data:`GOOD_RSA_BITS` warned
    about. The certificate holds the public key of the private key that signs (a
    mismatched pair does not sign), so the private key itself is never read.
    ``setting`` names where the certificate came from, for the messages.
    """
    warnings = []
    leaf = _certificates(cert)[0]  # the signer: osslsigncode signs with the first certificate of the file
    public = leaf.public_key
    name = leaf.subject.human_friendly
    if public.algorithm != "rsa":
        kind = f"ECDSA {public.curve[1]}" if public.algorithm == "ec" else public.algorithm.upper()
        raise UsageError(f"{setting} {cert}: certificate {name!r} has a {kind} key; Windows 7 verifies RSA code "
                         "signatures only, so nothing signed with it would install",
                         f"point {setting} at an RSA certificate (aero-media make-test-cert makes an RSA "
                         f"{GOOD_RSA_BITS}-bit one) and its key")
    bits = public.bit_size
    if bits < MIN_RSA_BITS:
        raise UsageError(f"{setting} {cert}: certificate {name!r} has a {bits}-bit RSA key; Windows rejects RSA keys "
                         f"under {MIN_RSA_BITS} bits (KB2661254)",
                         f"point {setting} at an RSA certificate of {GOOD_RSA_BITS} bits or more "
                         "(aero-media make-test-cert makes one)")
    if bits < GOOD_RSA_BITS:
        warnings.append(f"{setting} {cert}: certificate {name!r} has a {bits}-bit RSA key, weaker than the "
                        f"{GOOD_RSA_BITS} bits current practice asks for; fix: make a new one (aero-media "
                        "make-test-cert)")
    return warnings


def expired_by(cert: Path, when: datetime) -> list[tuple[str, datetime]]:
    """The certificates in ``cert`` whose validity ends before ``when``: (subject, end)."""
    out = []
    for c in _certificates(cert):
        end = c["tbs_certificate"]["validity"]["not_after"].native
        if end < when:
            out.append((c.subject.human_friendly, end))
    return out


# --- Running osslsigncode -----------------------------------------------------------------------


def _dotted(version: tuple[int, int]) -> str:
    return ".".join(map(str, version))


# UTC, so nothing depends on the caller's time zone (the runner fixes the locale).
_ENV = {"TZ": "UTC"}


def _reason(stderr: str, stdout: str) -> str:
    """osslsigncode's own explanation in one line, without OpenSSL's error-queue dump."""
    lines = [ln.strip() for ln in (stderr + "\n" + stdout).splitlines()]
    useful = [ln for ln in lines if ln and not _OPENSSL_TRACE.match(ln) and ln not in ("Failed", "Succeeded")
              and PEM_KEY_MARKER not in ln.upper()]  # never echo key material, should a tool ever print it
    text = " ".join(useful[:3]) or "no reason given"
    return text if len(text) <= 300 else text[:297] + "..."


@contextmanager
def _workdir(dest: Path) -> Iterator[Path]:
    """A private folder beside ``dest`` (same file system, so the final rename is atomic), always removed.

    Named as every temp sibling is (``.<name>.<pid>-<random>.tmp``, see ``fsutil``), so the sweep
    before the next write of ``dest`` (or of the staging folder holding it) removes one a killed run left.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}-", suffix=".tmp", dir=dest.parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sign(tool: Osslsigncode, key: SigningKey, src: Path, out: Path, signing_time: int, what: str, *,
          digest: str = DIGEST, nest: bool = False) -> None:
    args = ["sign", "-certs", str(key.cert), "-key", str(key.key)]
    if key.password_file is not None:
        args += ["-readpass", str(key.password_file)]
    # -nest appends a signature beside the existing one, as signtool /as does (Aero's ci/sign-drivers.ps1).
    args += ["-h", digest, *(["-nest"] if nest else []), "-time", str(signing_time), "-in", str(src),
             "-out", str(out)]
    # No terminal and no stdin: an encrypted key without password_file fails instead of prompting.
    done = systools.run(_TOOL, args, purpose=_PURPOSE, program=tool.path, env=_ENV, timeout=TIMEOUT,
                        new_session=True, pass_fds=key.pass_fds, what=f"signing {what}", ok_codes=None,
                        hint="check that the key needs no pass phrase (or give its password file)")
    if done.returncode != 0 or not out.is_file():
        raise ToolError(f"osslsigncode could not sign {what} (exit {done.returncode}): "
                        f"{_reason(done.err, done.out)}",
                        "check that the key belongs to the certificate and is unencrypted (or give its password "
                        "file)")


def _input(source: Path | bytes, work: Path, name: str) -> tuple[Path, bytes]:
    if isinstance(source, Path):
        return source, source.read_bytes()
    path = work / f"unsigned-{name}"
    path.write_bytes(source)
    return path, bytes(source)


def _prepare(key: SigningKey, signing_time: int, tool: Osslsigncode | None) -> Osslsigncode:
    tool = tool or Osslsigncode.find()
    check_key_type(key.cert, "the signing certificate")
    check_signing_time(key.cert, signing_time)
    for what, path in (("private key", key.key), ("password file", key.password_file)):
        if path is not None and not path.is_file():
            # The path only: it names the file, not its contents.
            raise UsageError(f"{path}: the {what} does not exist", f"point the signing {what} setting at it")
    return tool


def _nest_sha256(tool: Osslsigncode, key: SigningKey, signed: Path, work: Path, signing_time: int,
                 what: str) -> Path:
    """Append a SHA-256 signature to the SHA-1-signed ``signed``; the SHA-1 one stays first (Windows 7 reads it)."""
    out = work / f"dual-{signed.name}"
    _sign(tool, key, signed, out, signing_time, f"{what} (the SHA-256 signature)", digest=SECOND_DIGEST, nest=True)
    return out


def nest_signature(signed: bytes, second: bytes) -> bytes:
    """``signed`` (a signed catalog) with the whole of ``second`` (the same content, signed again) nested in its
    first signer's unsigned attributes as ``SPC_NESTED_SIGNATURE`` (1.3.6.1.4.1.311.2.4.1), as signtool ``/as``
    appends a signature. Windows 7 reads the first signer; newer Windows also the nested one.

    Everything else keeps its bytes: asn1crypto re-encodes only the signer it changes.
    """
    outer = cms.ContentInfo.load(signed)
    data = outer["content"]
    first = data["signer_infos"][0]
    if not isinstance(first["unsigned_attrs"], core.Void):
        raise ValueError("the first signer already has unsigned attributes; nest into an untimestamped signature")
    # asn1crypto has no spec for this attribute's value, so its DER is written here:
    # [1] IMPLICIT SET OF Attribute { type OID, values SET OF ContentInfo }.
    attribute = core.Sequence(contents=core.ObjectIdentifier(OID_NESTED_SIGNATURE).dump()
                              + core.Set(contents=second).dump()).dump()
    unsigned = core.Set(contents=attribute, implicit=1).dump()
    body = b"".join(first[name].dump() for name, _spec, _params in cms.SignerInfo._fields
                    if name != "unsigned_attrs" and not isinstance(first[name], core.Void))
    nested = cms.SignerInfo.load(core.Sequence(contents=body + unsigned).dump())
    data["signer_infos"] = cms.SignerInfos([nested, *list(data["signer_infos"])[1:]])
    return bytes(outer.dump(force=False))


def sign_catalog(source: Path | bytes, dest: Path, key: SigningKey, *, signing_time: int,
                 tool: Osslsigncode | None = None, dual: bool = False) -> None:
    """Sign a catalog (a path, or the bytes :func:`~aero_media.win7.catalogmake.make_catalog` returned) into ``dest``.

    SHA-1 digest, ``signing_time`` (Unix seconds, normally ``SOURCE_DATE_EPOCH``)
    as the signing time, written atomically; the same key and inputs give the same
    bytes. ``dest`` may be the source path. ``dual`` nests a SHA-256 signature
    after the SHA-1 one. Raises :class:`UsageError` for a
    certificate not valid at ``signing_time``, :class:`ToolError` when osslsigncode
    is missing, too old or fails, and :class:`~aero_media.win7.catalog.CatalogError`
    when the input is not a catalog.
    """
    tool = _prepare(key, signing_time, tool)
    with _workdir(dest) as work:
        src, data = _input(source, work, dest.name)
        shown = dest.name if isinstance(source, bytes) else str(source)
        unsigned = parse_catalog(data, shown)
        if unsigned.placeholder:
            raise CatalogError(f"{shown}: a placeholder catalog cannot be signed",
                               "make a real catalog first (aero_media.win7.catalogmake)")
        out = work / dest.name
        _sign(tool, key, src, out, signing_time, dest.name)
        if dual:
            # osslsigncode nests signatures in PE images only ("Unsupported nesting" for catalogs, 2.9): sign
            # the catalog again with SHA-256 alone and put that signature where signtool /as puts it.
            second = work / f"sha256-{dest.name}"
            _sign(tool, key, src, second, signing_time, f"{dest.name} (the SHA-256 signature)",
                  digest=SECOND_DIGEST)
            out.write_bytes(nest_signature(out.read_bytes(), second.read_bytes()))
        signed = parse_catalog(out.read_bytes(), dest.name)
        primary = signed.primary
        if (primary is None or primary.digest_algorithm != DIGEST or primary.content_digest_ok is not True
                or signed.members != unsigned.members
                or (dual and SECOND_DIGEST not in signed.digest_algorithms)):
            raise ToolError(f"osslsigncode wrote {dest.name}, but it is not a SHA-1-signed copy of the catalog",
                            f"report this with the osslsigncode version ({_dotted(tool.version)})")
        os.chmod(out, 0o644)
        os.replace(out, dest)


def sign_pe(source: Path | bytes, dest: Path, key: SigningKey, *, signing_time: int,
            tool: Osslsigncode | None = None, dual: bool = False) -> None:
    """Embed a SHA-1 Authenticode signature in a PE image (a ``.sys``) and write it atomically to ``dest``.

    An existing embedded signature is replaced. The PE CheckSum of the result is
    correct (osslsigncode fixes it; we recompute it should a version not), and the
    Authenticode hash is unchanged, so a catalog made from the unsigned file still
    lists the signed one. Boot-start drivers (viostor) need this embedded
    signature on Windows 7 x64; the others can rely on the catalog. ``dual`` nests a
    SHA-256 signature after the SHA-1 one. Raises as
    :func:`sign_catalog` does, and :class:`~aero_media.win7.pe.PeError` when the
    input is not a PE image.
    """
    tool = _prepare(key, signing_time, tool)
    with _workdir(dest) as work:
        src, data = _input(source, work, dest.name)
        before = authenticode_hash(data)  # also refuses non-PE input with PeError
        out = work / dest.name
        _sign(tool, key, src, out, signing_time, dest.name)
        if dual:
            out = _nest_sha256(tool, key, out, work, signing_time, dest.name)
        signed = bytearray(out.read_bytes())
        try:
            info = pe_info(bytes(signed))
            same = authenticode_hash(bytes(signed)) == before
        except PeError as exc:
            raise ToolError(f"osslsigncode wrote an unreadable {dest.name} ({exc.message})",
                            f"report this with the osslsigncode version ({_dotted(tool.version)})") from None
        if not (info.has_signature and info.signature_digest == DIGEST and same):
            raise ToolError(f"osslsigncode wrote {dest.name}, but it is not a SHA-1-signed copy of the image",
                            f"report this with the osslsigncode version ({_dotted(tool.version)})")
        if not info.checksum_ok:
            # The CheckSum is outside the Authenticode hash and the signature, so fixing it keeps both valid.
            offset = _checksum_offset(signed)
            signed[offset:offset + 4] = image_checksum(bytes(signed), offset).to_bytes(4, "little")
            out.write_bytes(signed)
        os.chmod(out, 0o644)
        os.replace(out, dest)


def _checksum_offset(image: bytes | bytearray) -> int:
    pe_offset = int.from_bytes(image[0x3C:0x40], "little")
    return pe_offset + 24 + 64
