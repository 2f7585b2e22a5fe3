"""PE facts and the Authenticode image hash (cross-checked with osslsigncode when installed)."""

from __future__ import annotations

import hashlib
import re
import ssl
import struct
import subprocess
from pathlib import Path

import pytest
from asn1crypto import algos, core
from cryptography.hazmat.primitives import serialization

from aero_media.devtools.pestub import build_pe
from aero_media.errors import ValidationError
from aero_media.win7.pe import (
    MACHINE_AMD64,
    MACHINE_I386,
    SUBSYSTEM_WINDOWS_GUI,
    PeError,
    authenticode_hash,
    embedded_signature,
    pe_info,
)
from tests.lib.drivers_fixtures import embed_signature, throwaway_signer
from tests.lib.needs import need_tool


def test_stub_facts_for_both_machines_and_dlls():
    x64 = pe_info(build_pe(MACHINE_AMD64))
    assert (x64.machine, x64.machine_name, x64.magic, x64.subsystem_name) == (0x8664, "amd64", 0x20B, "native")
    assert x64.checksum_ok and not x64.has_signature and x64.signature_digest is None
    assert x64.stand_in  # pestub's marker
    x86 = pe_info(build_pe(MACHINE_I386))
    assert (x86.machine, x86.magic, x86.subsystem) == (0x14C, 0x10B, 1)
    dll = pe_info(build_pe(MACHINE_I386, SUBSYSTEM_WINDOWS_GUI, dll=True, marker=b"co-installer"))
    assert dll.is_dll and dll.subsystem_name == "windows-gui" and not dll.stand_in


def test_bad_checksum_is_detected():
    image = bytearray(build_pe(MACHINE_AMD64))
    opt = struct.unpack_from("<I", image, 0x3C)[0] + 24
    struct.pack_into("<I", image, opt + 64, 0x1234)
    assert pe_info(bytes(image)).checksum_ok is False


@pytest.mark.parametrize("data, needle", [
    (b"", "no MZ header"),
    (b"not a PE file at all, just text" * 4, "no MZ header"),
    (b"MZ" + b"\0" * 0x3A + struct.pack("<I", 0x4000) + b"\0" * 64, "no PE signature"),
    (build_pe(MACHINE_AMD64)[:0x90], "PE header at offset 0x80 runs past the end"),
    (build_pe(MACHINE_AMD64)[:0x10C], "optional header runs past the end"),
    (build_pe(MACHINE_AMD64)[:0x300], "section .text runs past the end of the file"),
])
def test_garbage_raises_pe_error_with_a_reason(data, needle):
    with pytest.raises(PeError) as exc:
        pe_info(data)
    assert needle in exc.value.message
    assert isinstance(exc.value, ValidationError)


def test_certificate_table_outside_the_file_is_rejected():
    image = bytearray(build_pe(MACHINE_I386))
    opt = struct.unpack_from("<I", image, 0x3C)[0] + 24
    struct.pack_into("<II", image, opt + 96 + 32, len(image) - 8, 4096)
    with pytest.raises(PeError, match=r"certificate table .* outside the file"):
        authenticode_hash(bytes(image))


def test_authenticode_hash_skips_checksum_and_security_entry_but_not_code():
    image = build_pe(MACHINE_AMD64, marker=b"hash me")
    base = authenticode_hash(image)
    opt = struct.unpack_from("<I", image, 0x3C)[0] + 24
    # Independent reference: hash the file with the CheckSum and security directory entry cut out.
    secdir = opt + 112 + 32
    ref = hashlib.sha1(image[:opt + 64] + image[opt + 68:secdir] + image[secdir + 8:]).digest()
    assert base == ref
    changed = bytearray(image)
    struct.pack_into("<I", changed, opt + 64, 0xDEADBEEF)
    assert authenticode_hash(bytes(changed)) == base
    code = bytearray(image)
    code[0x200] ^= 0xFF
    assert authenticode_hash(bytes(code)) != base
    assert len(authenticode_hash(image, "sha256")) == 32


def test_embedded_signature_is_excluded_from_the_hash_and_its_digest_is_read():
    image = build_pe(MACHINE_AMD64, marker=b"signed")
    for digest in ("sha1", "sha256"):
        signed = embed_signature(image, digest)
        assert authenticode_hash(signed) == authenticode_hash(image)
        info = pe_info(signed)
        assert info.has_signature and info.signature_digest == digest and info.checksum_ok
        assert embedded_signature(signed)[:1] == b"\x30"
    assert embedded_signature(image) is None


def test_authenticode_hash_reads_paths(tmp_path):
    path = tmp_path / "d.sys"
    path.write_bytes(build_pe(MACHINE_I386))
    assert authenticode_hash(path) == authenticode_hash(path.read_bytes())


@pytest.fixture
def signing_pems(tmp_path: Path) -> tuple[Path, Path]:
    signer = throwaway_signer()
    key = tmp_path / "key.pem"
    cert = tmp_path / "cert.pem"
    key.write_bytes(signer.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    cert.write_text(ssl.DER_cert_to_PEM_cert(signer.cert.dump()))
    return key, cert


@pytest.mark.parametrize("machine, digest", [(MACHINE_AMD64, "sha1"), (MACHINE_I386, "sha1"),
                                             (MACHINE_AMD64, "sha256")])
def test_hash_matches_osslsigncode(tmp_path, signing_pems, machine, digest):
    key, cert = signing_pems
    unsigned = tmp_path / "u.sys"
    signed = tmp_path / "s.sys"
    unsigned.write_bytes(build_pe(machine, marker=b"osslsigncode cross-check"))
    subprocess.run([need_tool("osslsigncode"), "sign", "-certs", str(cert), "-key", str(key), "-h", digest,
                    "-in", str(unsigned), "-out", str(signed)], check=True, capture_output=True)
    out = subprocess.run([need_tool("osslsigncode"), "verify", "-in", str(signed)],
                         capture_output=True, text=True).stdout
    current = re.search(r"Current message digest\s*:\s*([0-9A-F]+)", out).group(1)
    calculated = re.search(r"Calculated message digest\s*:\s*([0-9A-F]+)", out).group(1)
    assert current == calculated
    ours = authenticode_hash(signed, digest)
    assert ours.hex().upper() == calculated
    assert authenticode_hash(unsigned, digest) == ours  # signing changes only excluded ranges
    info = pe_info(signed)
    assert info.has_signature and info.signature_digest == digest and info.checksum_ok


def test_checksum_agrees_with_pefile_on_odd_sizes():
    import pefile

    from aero_media.win7.pe import image_checksum

    for extra in range(0, 9):
        machine = MACHINE_I386 if extra % 2 else MACHINE_AMD64
        image = build_pe(machine, marker=b"x" * (100 + 37 * extra)) + b"\x7f" * extra
        offset = struct.unpack_from("<I", image, 0x3C)[0] + 24 + 64
        assert image_checksum(image, offset) == pefile.PE(data=image).generate_checksum()


# --- the padding rule: unsigned images hash as if zero-padded to 8 bytes ---------------------------

ODD_AND_EVEN_TAILS = [0, 1, 3, 4, 7, 8, 13, 16]


def _unsigned(machine: int, tail: int) -> bytes:
    # Overlay bytes after the last section keep the image a valid PE (osslsigncode signs it) at any size.
    return build_pe(machine, marker=b"padding rule") + bytes(range(1, tail + 1))


@pytest.mark.parametrize("tail", ODD_AND_EVEN_TAILS)
def test_unsigned_image_is_hashed_zero_padded_to_8_bytes(tail):
    image = _unsigned(MACHINE_AMD64, tail)
    opt = struct.unpack_from("<I", image, 0x3C)[0] + 24
    secdir = opt + 112 + 32
    padded = image + b"\0" * (-len(image) % 8)
    ref = hashlib.sha1(padded[:opt + 64] + padded[opt + 68:secdir] + padded[secdir + 8:]).digest()
    assert authenticode_hash(image) == ref
    assert (len(image) % 8 == 0) == (ref == hashlib.sha1(image[:opt + 64] + image[opt + 68:secdir]
                                                         + image[secdir + 8:]).digest())


@pytest.mark.parametrize("digest", ["sha1", "sha256"])
@pytest.mark.parametrize("machine", [MACHINE_AMD64, MACHINE_I386])
def test_unsigned_hash_equals_osslsigncodes_for_every_size(tmp_path, signing_pems, machine, digest):
    """Oracle: ``osslsigncode extract-data`` writes the SpcIndirectData it would sign, i.e. its own
    Authenticode digest of the unsigned file; signing then must not change our hash either."""
    tool = need_tool("osslsigncode")
    key, cert = signing_pems
    for tail in ODD_AND_EVEN_TAILS:
        unsigned = tmp_path / f"u{tail}.sys"
        unsigned.write_bytes(_unsigned(machine, tail))
        ours = authenticode_hash(unsigned, digest)
        data = tmp_path / f"u{tail}.der"
        subprocess.run([tool, "extract-data", "-h", digest, "-in", str(unsigned), "-out", str(data)], check=True,
                       capture_output=True)
        # SpcIndirectData ends with DigestInfo{algorithm, NULL, digest}; then come the (empty) signer infos.
        digest_info = algos.DigestInfo({"digest_algorithm": {"algorithm": digest, "parameters": core.Null()},
                                        "digest": ours}).dump()
        assert data.read_bytes().endswith(digest_info + b"\x31\x00"), (tail, ours.hex())
        signed = tmp_path / f"s{tail}.sys"
        subprocess.run([tool, "sign", "-certs", str(cert), "-key", str(key), "-h", digest, "-time", "315532800",
                        "-in", str(unsigned), "-out", str(signed)], check=True, capture_output=True)
        assert len(signed.read_bytes()) % 8 == 0
        assert authenticode_hash(signed, digest) == ours
        assert pe_info(signed).checksum_ok
