"""A 64-bit Windows console program, assembled here byte by byte, that asks crypt32 about a machine store.

No compiler is needed (none for Windows is installed here): the program is a
few dozen x86-64 instructions and an import table for ``crypt32.dll``
(``CertOpenStore``, ``CertEnumCertificatesInStore``,
``CertFindCertificateInStore``) and ``kernel32.dll`` (``ExitProcess``). It
opens ``HKLM``'s system store ``TrustedPublisher`` read-only, counts its
certificates, looks one up by SHA-1 hash, and exits with
``count + (100 if found else 0)``, or 255 when the store does not open.
Under Wine this checks that crypt32 itself, not our parser, accepts the
``Blob`` that :mod:`aero_media.servicing.certblob` writes.
"""

from __future__ import annotations

import struct

CERT_STORE_PROV_SYSTEM_W = 10
CERT_SYSTEM_STORE_LOCAL_MACHINE = 0x00020000
CERT_STORE_READONLY_FLAG = 0x00008000
ENCODING = 0x00010001  # X509_ASN_ENCODING | PKCS_7_ASN_ENCODING
CERT_FIND_SHA1_HASH = 0x00010000

_RVA = 0x1000  # the one section, code + data + imports
_DATA = 0x200
_IMPORTS = 0x400
_IMAGE_BASE = 0x140000000


class _Asm:
    """Just enough of an assembler: raw bytes, labels, and rel8/rel32 fix-ups."""

    def __init__(self, labels: dict[str, int]) -> None:
        self.code = bytearray()
        self.labels = dict(labels)
        self.fixups: list[tuple[int, int, str, int]] = []  # where, size, label, end of instruction

    def raw(self, data: bytes) -> None:
        self.code += data

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def rel(self, prefix: bytes, label: str, size: int = 4, suffix: bytes = b"") -> None:
        at = len(self.code) + len(prefix)
        self.code += prefix + b"\0" * size + suffix
        self.fixups.append((at, size, label, len(self.code)))

    def link(self) -> bytes:
        for at, size, label, end in self.fixups:
            delta = self.labels[label] - end
            self.code[at:at + size] = delta.to_bytes(size, "little", signed=True)
        return bytes(self.code)


def _imports() -> tuple[bytes, dict[str, int]]:
    """The import directory at section offset ``_IMPORTS``: descriptors, ILTs, IATs, names; and IAT offsets."""
    dlls = {"crypt32.dll": ["CertOpenStore", "CertEnumCertificatesInStore", "CertFindCertificateInStore"],
            "kernel32.dll": ["ExitProcess"]}
    desc_size = 20 * (len(dlls) + 1)
    ilt_at = _IMPORTS + desc_size + 4
    tables: dict[str, int] = {}
    at = ilt_at
    for dll, funcs in dlls.items():
        tables[dll] = at
        at += 8 * (len(funcs) + 1)
    iat_at = at
    iats: dict[str, int] = {}
    for dll, funcs in dlls.items():
        iats[dll] = at
        at += 8 * (len(funcs) + 1)
    names_at = at
    names = bytearray()
    name_at: dict[str, int] = {}
    for funcs in dlls.values():
        for f in funcs:
            name_at[f] = at + len(names)
            names += b"\0\0" + f.encode() + b"\0"
            if len(names) % 2:
                names += b"\0"
    for dll in dlls:
        name_at[dll] = at + len(names)
        names += dll.encode() + b"\0"
    out = bytearray()
    for dll in dlls:
        out += struct.pack("<IIIII", _RVA + tables[dll], 0, 0, _RVA + name_at[dll], _RVA + iats[dll])
    out += b"\0" * 20 + b"\0" * 4
    thunks = bytearray()
    for _ in ("ilt", "iat"):
        for funcs in dlls.values():
            thunks += b"".join(struct.pack("<Q", _RVA + name_at[f]) for f in funcs) + b"\0" * 8
    out += thunks + names
    labels = {f: iats[dll] + 8 * i for dll, funcs in dlls.items() for i, f in enumerate(funcs)}
    labels["_iat"], labels["_iat_end"] = iat_at, names_at
    return bytes(out), labels


def _code(labels: dict[str, int]) -> bytes:
    a = _Asm(labels)
    a.raw(b"\x48\x83\xec\x58")  # sub rsp, 0x58 (shadow space, 3 stack args, a CRYPT_HASH_BLOB; aligned)
    a.raw(b"\xb9" + struct.pack("<I", CERT_STORE_PROV_SYSTEM_W))  # mov ecx, provider
    a.raw(b"\x31\xd2\x45\x31\xc0")  # xor edx, edx; xor r8d, r8d
    a.raw(b"\x41\xb9" + struct.pack("<I", CERT_SYSTEM_STORE_LOCAL_MACHINE | CERT_STORE_READONLY_FLAG))
    a.rel(b"\x48\x8d\x05", "store")  # lea rax, [rip+store]
    a.raw(b"\x48\x89\x44\x24\x20")  # mov [rsp+0x20], rax (5th argument: the store's name)
    a.rel(b"\xff\x15", "CertOpenStore")  # call [rip+IAT]
    a.raw(b"\x48\x85\xc0")  # test rax, rax
    a.rel(b"\x0f\x84", "fail")  # jz fail
    a.raw(b"\x48\x89\xc3\x31\xf6\x31\xff")  # mov rbx, rax; xor esi, esi (count); xor edi, edi (previous)
    a.label("loop")
    a.raw(b"\x48\x89\xd9\x48\x89\xfa")  # mov rcx, rbx; mov rdx, rdi
    a.rel(b"\xff\x15", "CertEnumCertificatesInStore")
    a.raw(b"\x48\x85\xc0")  # test rax, rax
    a.rel(b"\x74", "counted", size=1)  # jz counted
    a.raw(b"\x48\x89\xc7\xff\xc6")  # mov rdi, rax; inc esi
    a.rel(b"\xeb", "loop", size=1)  # jmp loop
    a.label("counted")
    a.raw(b"\xc7\x44\x24\x40\x14\x00\x00\x00")  # mov dword [rsp+0x40], 20 (cbData)
    a.rel(b"\x48\x8d\x05", "hash")  # lea rax, [rip+hash]
    a.raw(b"\x48\x89\x44\x24\x48")  # mov [rsp+0x48], rax (pbData)
    a.raw(b"\x48\x89\xd9")  # mov rcx, rbx
    a.raw(b"\xba" + struct.pack("<I", ENCODING))  # mov edx, encoding
    a.raw(b"\x45\x31\xc0")  # xor r8d, r8d (flags)
    a.raw(b"\x41\xb9" + struct.pack("<I", CERT_FIND_SHA1_HASH))  # mov r9d, find type
    a.raw(b"\x48\x8d\x44\x24\x40\x48\x89\x44\x24\x20")  # lea rax, [rsp+0x40]; mov [rsp+0x20], rax
    a.raw(b"\x48\xc7\x44\x24\x28\x00\x00\x00\x00")  # mov qword [rsp+0x28], 0 (no previous)
    a.rel(b"\xff\x15", "CertFindCertificateInStore")
    a.raw(b"\x48\x85\xc0")  # test rax, rax
    a.rel(b"\x74", "exit", size=1)  # jz exit
    a.raw(b"\x83\xc6\x64")  # add esi, 100
    a.label("exit")
    a.raw(b"\x89\xf1")  # mov ecx, esi
    a.rel(b"\xff\x15", "ExitProcess")
    a.label("fail")
    a.raw(b"\xb9\xff\x00\x00\x00")  # mov ecx, 255
    a.rel(b"\xff\x15", "ExitProcess")
    code = a.link()
    assert len(code) <= _DATA
    return code


def build(sha1: bytes, store: str = "TrustedPublisher") -> bytes:
    """The program (a PE32+ console executable) looking for the certificate with thumbprint ``sha1``."""
    if len(sha1) != 20:
        raise ValueError("a SHA-1 hash is 20 bytes")
    imports, labels = _imports()
    labels |= {"store": _DATA, "hash": _DATA + 0x100}
    section = bytearray(0x800)
    code = _code(labels)
    section[:len(code)] = code
    name = (store + "\0").encode("utf-16-le")
    section[_DATA:_DATA + len(name)] = name
    section[_DATA + 0x100:_DATA + 0x114] = sha1
    section[_IMPORTS:_IMPORTS + len(imports)] = imports
    iat_size = labels["_iat_end"] - labels["_iat"]

    dos = bytearray(0x40)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x40)
    coff = struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, 0xF0, 0x0022)  # EXECUTABLE_IMAGE | LARGE_ADDRESS_AWARE
    dirs = [(0, 0)] * 16
    dirs[1] = (_RVA + _IMPORTS, 20 * 3)
    dirs[12] = (_RVA + labels["_iat"], iat_size)
    opt = struct.pack("<HBBIIIIIQIIHHHHHHIIIIHHQQQQII", 0x20B, 14, 0, len(section), 0, 0, _RVA, _RVA,
                      _IMAGE_BASE, 0x1000, 0x200, 6, 0, 0, 0, 6, 0, 0, 0x2000, 0x200, 0,
                      3, 0, 0x100000, 0x1000, 0x100000, 0x1000, 0, 16)  # subsystem 3: console
    opt += b"".join(struct.pack("<II", *d) for d in dirs)
    sect = struct.pack("<8sIIIIIIHHI", b".text", len(section), _RVA, len(section), 0x200, 0, 0, 0, 0, 0xE0000060)
    headers = (bytes(dos) + b"PE\0\0" + coff + opt + sect).ljust(0x200, b"\0")
    return headers + bytes(section)
