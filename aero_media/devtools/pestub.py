"""Tiny, valid PE images that stand in for driver binaries.

The sample pack and the tests need ``.sys``/``.dll`` files that real PE tools
(pefile) accept, with the right Machine and Subsystem, but we never ship or
commit upstream binaries. The image has one ``.text`` section holding a marker
string (which the checks recognise) and a ``ret``; it is deterministic
(TimeDateStamp 0) and its optional header CheckSum is correct.

The sample pack commits no binary: each stand-in is a small text recipe
(``<name>.sys.pestub``) that :mod:`aero_media.devtools.standins` expands into
``build/`` before staging.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

from ..win7.pe import (
    MACHINE_AMD64,
    MACHINE_I386,
    STAND_IN_MARKER,
    SUBSYSTEM_NATIVE,
    SUBSYSTEM_WINDOWS_GUI,
    image_checksum,
)

_FILE_ALIGN = 0x200
_SECT_ALIGN = 0x1000


def build_pe(machine: int, subsystem: int = SUBSYSTEM_NATIVE, dll: bool = False,
             marker: bytes = STAND_IN_MARKER) -> bytes:
    """Return a minimal PE image for ``machine`` (0x14c or 0x8664)."""
    if machine not in (MACHINE_I386, MACHINE_AMD64):
        raise ValueError(f"unsupported machine 0x{machine:x}")
    pe64 = machine == MACHINE_AMD64
    dos = bytearray(0x80)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x80)
    opt_size = 0xF0 if pe64 else 0xE0
    characteristics = 0x0002 | (0x2000 if dll else 0) | (0x0020 if pe64 else 0x0100)
    coff = struct.pack("<HHIIIHH", machine, 1, 0, 0, 0, opt_size, characteristics)
    headers_size = 0x80 + 4 + 20 + opt_size + 40
    size_of_headers = -(-headers_size // _FILE_ALIGN) * _FILE_ALIGN
    body = marker + b"\0" + b"\xc3"
    raw_size = -(-len(body) // _FILE_ALIGN) * _FILE_ALIGN
    entry_rva = _SECT_ALIGN + len(marker) + 1
    image_size = _SECT_ALIGN + -(-len(body) // _SECT_ALIGN) * _SECT_ALIGN
    image_base = 0x10000 if not pe64 else 0x140000000
    dll_chars = 0x0040 | 0x0100  # DYNAMIC_BASE | NX_COMPAT
    if pe64:
        opt = struct.pack("<HBBIIIIIQIIHHHHHHIIIIHHQQQQII", 0x20B, 14, 0, raw_size, 0, 0, entry_rva, _SECT_ALIGN,
                          image_base, _SECT_ALIGN, _FILE_ALIGN, 6, 1, 6, 1, 6, 1, 0, image_size, size_of_headers, 0,
                          subsystem, dll_chars, 0x40000, 0x1000, 0x100000, 0x1000, 0, 16)
    else:
        opt = struct.pack("<HBBIIIIIIIIIHHHHHHIIIIHHIIIIII", 0x10B, 14, 0, raw_size, 0, 0, entry_rva, _SECT_ALIGN,
                          _SECT_ALIGN, image_base, _SECT_ALIGN, _FILE_ALIGN, 6, 1, 6, 1, 6, 1, 0, image_size,
                          size_of_headers, 0, subsystem, dll_chars, 0x40000, 0x1000, 0x100000, 0x1000, 0, 16)
    opt += b"\0" * (16 * 8)
    section = struct.pack("<8sIIIIIIHHI", b".text", len(body), _SECT_ALIGN, raw_size, size_of_headers, 0, 0, 0, 0,
                          0x60000020)
    image = bytearray(bytes(dos) + b"PE\0\0" + coff + opt + section)
    image += b"\0" * (size_of_headers - len(image))
    image += body + b"\0" * (raw_size - len(body))
    checksum_offset = 0x80 + 4 + 20 + 64
    struct.pack_into("<I", image, checksum_offset, image_checksum(bytes(image), checksum_offset))
    return bytes(image)


RECIPE_SUFFIX = ".pestub"
_RECIPE_MACHINES = {"x86": MACHINE_I386, "amd64": MACHINE_AMD64}


def recipe_text(machine: str, dll: bool = False) -> bytes:
    """A recipe file standing for a stand-in PE, so packs need no committed binaries."""
    return ("# Stand-in PE recipe (aero_media/devtools/pestub.py): the file without the .pestub suffix is\n"
            "# generated from this when the pack is read. Not a driver.\n"
            f"machine = {machine}\nkind = {'dll' if dll else 'sys'}\n").encode("ascii")


def build_from_recipe(data: bytes, where: str) -> bytes:
    """Build the PE a recipe describes; a malformed recipe raises ValueError naming ``where``."""
    fields: dict[str, str] = {}
    for line in data.decode("ascii", "replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            fields[key.strip()] = value.strip()
    machine = _RECIPE_MACHINES.get(fields.get("machine", ""))
    kind = fields.get("kind", "sys")
    if machine is None or kind not in ("sys", "dll"):
        raise ValueError(f"{where}: a stand-in recipe needs 'machine = x86|amd64' and 'kind = sys|dll'")
    dll = kind == "dll"
    return build_pe(machine, SUBSYSTEM_WINDOWS_GUI if dll else SUBSYSTEM_NATIVE, dll=dll)


def main(argv: list[str] | None = None) -> int:
    """Write a stand-in PE: ``python -m aero_media.devtools.pestub --machine amd64 [--dll] OUT``."""
    ap = argparse.ArgumentParser(prog="python -m aero_media.devtools.pestub", description=main.__doc__)
    ap.add_argument("--machine", choices=["x86", "amd64"], required=True)
    ap.add_argument("--dll", action="store_true", help="a DLL (Windows GUI subsystem) instead of a native .sys")
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    machine = MACHINE_I386 if args.machine == "x86" else MACHINE_AMD64
    data = build_pe(machine, SUBSYSTEM_WINDOWS_GUI if args.dll else SUBSYSTEM_NATIVE, dll=args.dll)
    args.out.write_bytes(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
