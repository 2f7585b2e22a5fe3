"""PE facts a Windows 7 driver check needs, and the Authenticode image hash.

Driver binaries are untrusted input: every reader here turns malformed data into
:class:`PeError` (a one-line reason), never into a traceback.
"""

from __future__ import annotations

import array
import hashlib
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import pefile

from ..errors import ValidationError
from .catalog import CatalogError, EmbeddedSignature, embedded_signer

MACHINE_NAMES = {0x14C: "x86", 0x8664: "amd64", 0x200: "ia64", 0x1C4: "arm", 0xAA64: "arm64"}
SUBSYSTEM_NAMES = {1: "native", 2: "windows-gui", 3: "windows-cui", 10: "efi-application"}
SUBSYSTEM_NATIVE = 1
SUBSYSTEM_WINDOWS_GUI = 2
MACHINE_I386 = 0x14C
MACHINE_AMD64 = 0x8664
# Written into every stand-in image (aero_media.devtools.pestub) so the checks can tell one from a driver.
STAND_IN_MARKER = b"AERO STAND-IN: not a working driver. Replace with a real build."
_SECURITY_DIR = 4  # IMAGE_DIRECTORY_ENTRY_SECURITY
_WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002


class PeError(ValidationError):
    """The bytes are not a PE image we can read; the message says why."""



@dataclass(frozen=True)
class PeInfo:
    """Header facts of one PE image."""

    machine: int
    subsystem: int
    magic: int
    is_dll: bool
    checksum: int
    checksum_ok: bool
    has_signature: bool
    signature_digest: str | None
    """Digest algorithm of the embedded signature's first signer ('sha1', 'sha256'), if signed."""
    stand_in: bool
    """True for the placeholder images :mod:`aero_media.pestub` writes (not a working driver)."""
    embedded: EmbeddedSignature | None = None
    """The embedded signature's first signer, when it can be read."""
    image_digest_ok: bool | None = None
    """The image hashes to what the embedded signature signed (False: changed after signing)."""

    @property
    def machine_name(self) -> str:
        return MACHINE_NAMES.get(self.machine, f"0x{self.machine:x}")

    @property
    def subsystem_name(self) -> str:
        return SUBSYSTEM_NAMES.get(self.subsystem, str(self.subsystem))

    def to_json(self) -> dict[str, object]:
        """JSON-safe summary for manifests."""
        return {
            "machine": f"0x{self.machine:x}",
            "machine_name": self.machine_name,
            "subsystem": self.subsystem_name,
            "checksum_ok": self.checksum_ok,
            "embedded_signature": self.signature_digest if self.has_signature else None,
            "stand_in": self.stand_in,
        }


@dataclass(frozen=True)
class _Layout:
    checksum_offset: int
    secdir_offset: int | None
    cert_offset: int
    cert_size: int


def _layout(data: bytes) -> _Layout:
    """Locate the three ranges Authenticode leaves out, validating as we go.

    Parsed with struct rather than pefile so hashing works on images pefile
    would reject for reasons that do not matter to the hash (odd sections).
    """
    if data[:2] != b"MZ":
        raise PeError("no MZ header")
    if len(data) < 0x40:
        raise PeError(f"only {len(data)} bytes, too short for a PE image")
    (pe_off,) = struct.unpack_from("<I", data, 0x3C)
    if pe_off + 4 <= len(data) < pe_off + 24 + 2 and data[pe_off:pe_off + 4] == b"PE\0\0":
        raise PeError(f"the PE header at offset 0x{pe_off:x} runs past the end of the file ({len(data)} bytes)")
    if pe_off + 24 + 2 > len(data) or data[pe_off:pe_off + 4] != b"PE\0\0":
        raise PeError(f"no PE signature at offset 0x{pe_off:x}")
    opt = pe_off + 24
    (opt_size,) = struct.unpack_from("<H", data, pe_off + 20)
    (magic,) = struct.unpack_from("<H", data, opt)
    if magic == 0x10B:
        rva_count_off, dirs_off = opt + 92, opt + 96
    elif magic == 0x20B:
        rva_count_off, dirs_off = opt + 108, opt + 112
    else:
        raise PeError(f"unknown optional header magic 0x{magic:x}")
    if dirs_off > len(data) or opt + opt_size > len(data):
        raise PeError("optional header runs past the end of the file")
    (rva_count,) = struct.unpack_from("<I", data, rva_count_off)
    secdir = dirs_off + 8 * _SECURITY_DIR
    if rva_count <= _SECURITY_DIR or secdir + 8 > opt + opt_size:
        return _Layout(opt + 64, None, len(data), 0)
    cert_off, cert_size = struct.unpack_from("<II", data, secdir)
    if cert_size == 0 or cert_off == 0:
        return _Layout(opt + 64, secdir, len(data), 0)
    if cert_off + cert_size > len(data) or cert_off < secdir + 8:
        raise PeError(f"certificate table (offset 0x{cert_off:x}, size {cert_size}) lies outside the file")
    return _Layout(opt + 64, secdir, cert_off, cert_size)


def _read(data: bytes | Path) -> bytes:
    return data.read_bytes() if isinstance(data, Path) else bytes(data)


def authenticode_hash(data: bytes | Path, algo: str = "sha1") -> bytes:
    """Return the Authenticode PE image hash (what catalogs and signatures store).

    Everything is hashed except the optional header CheckSum, the security
    directory entry and the certificate table, so signing a file (which changes
    exactly those) keeps its hash. Windows 7 catalogs use SHA-1.

    An unsigned image is hashed as if zero-padded to a multiple of 8 bytes, as
    Windows (imagehlp) and osslsigncode do: signing appends the certificate table
    at an 8-byte boundary, and the padding makes the hash the same before and
    after. A signed image already ends in that aligned table and gets no padding.
    (docs/windows7.md#authenticode-hash)
    """
    raw = _read(data)
    lay = _layout(raw)
    h = hashlib.new(algo)
    h.update(raw[:lay.checksum_offset])
    if lay.secdir_offset is None:
        h.update(raw[lay.checksum_offset + 4:lay.cert_offset])
    else:
        h.update(raw[lay.checksum_offset + 4:lay.secdir_offset])
        h.update(raw[lay.secdir_offset + 8:lay.cert_offset])
    # Data after the certificate table is not signed by convention but Windows hashes it.
    h.update(raw[lay.cert_offset + lay.cert_size:])
    if lay.cert_size == 0:
        h.update(b"\0" * (-len(raw) % 8))
    return h.digest()


def embedded_signature(data: bytes | Path) -> bytes | None:
    """Return the PKCS#7 blob of the first embedded signature, or None when unsigned."""
    raw = _read(data)
    lay = _layout(raw)
    if lay.cert_size < 8:
        return None
    length, _revision, cert_type = struct.unpack_from("<IHH", raw, lay.cert_offset)
    if cert_type != _WIN_CERT_TYPE_PKCS_SIGNED_DATA or length < 8 or length > lay.cert_size:
        raise PeError(f"certificate table entry has type 0x{cert_type:x} / length {length}, not PKCS#7 signed data")
    return raw[lay.cert_offset + 8:lay.cert_offset + length]


def image_checksum(data: bytes, checksum_offset: int) -> int:
    """The optional-header CheckSum Windows computes (CheckSumMappedFile), with the field itself as zero.

    pefile's generate_checksum() does the same one dword at a time in Python and
    forces a full garbage collection; summing an array is ~100x faster.
    """
    buf = bytearray(data)
    buf[checksum_offset:checksum_offset + 4] = b"\0\0\0\0"
    buf += b"\0" * (-len(buf) % 4)
    words = array.array("I", bytes(buf))
    if sys.byteorder != "little":
        words.byteswap()
    total = sum(words)
    while total >> 32:  # end-around carry, as the dword-at-a-time algorithm does
        total = (total & 0xFFFFFFFF) + (total >> 32)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total + (total >> 16)) & 0xFFFF
    return total + len(data)


def pe_info(data: bytes | Path) -> PeInfo:
    """Read machine, subsystem, checksum and signature facts, or raise :class:`PeError`."""
    raw = _read(data)
    lay = _layout(raw)
    try:
        pe = pefile.PE(data=raw, fast_load=True)
    except pefile.PEFormatError as exc:
        raise PeError(str(exc).strip("'\"")) from None
    except Exception as exc:  # pefile raises assorted errors on hostile input
        raise PeError(f"unreadable PE headers ({type(exc).__name__}: {exc})") from None
    try:
        for section in pe.sections:
            end = section.PointerToRawData + section.SizeOfRawData
            if section.SizeOfRawData and end > len(raw):
                name = section.Name.rstrip(b"\0").decode("ascii", "replace")
                raise PeError(f"section {name} runs past the end of the file (needs {end} bytes, has {len(raw)}): "
                              "the file is truncated")
        computed = image_checksum(raw, lay.checksum_offset)
        blob = embedded_signature(raw)
        embedded, digest, image_ok = None, None, None
        if blob:
            try:
                embedded = embedded_signer(blob)
            except CatalogError:
                digest = "unreadable"
        if embedded is not None:
            digest = embedded.digest_algorithm
            if embedded.image_digest is not None and embedded.image_digest_algorithm in ("sha1", "sha256"):
                image_ok = authenticode_hash(raw, embedded.image_digest_algorithm) == embedded.image_digest
        return PeInfo(
            machine=pe.FILE_HEADER.Machine,
            subsystem=pe.OPTIONAL_HEADER.Subsystem,
            magic=pe.OPTIONAL_HEADER.Magic,
            is_dll=bool(pe.FILE_HEADER.Characteristics & 0x2000),
            checksum=pe.OPTIONAL_HEADER.CheckSum,
            checksum_ok=pe.OPTIONAL_HEADER.CheckSum == computed,
            has_signature=lay.cert_size > 0,
            signature_digest=digest,
            stand_in=STAND_IN_MARKER in raw,
            embedded=embedded,
            image_digest_ok=image_ok,
        )
    finally:
        # Not pe.close(): for in-memory data it only runs gc.collect(), which costs
        # milliseconds per file in a large process.
        del pe
