"""Generators of registry hives (regf) of our own: minimal empty ones for hivex to edit, hand-laid ones to read.

hivex edits hives but cannot create one (docs/windows7.md#registry-hives), and we
commit no hive taken from elsewhere. :func:`empty_hive` writes the smallest file
that hivex, regipy and Windows' own layout agree on:

* a 4 KiB base block: ``regf``, equal sequence numbers (a clean hive), format 1.5,
  the root cell's offset, the size of the bins and the XOR checksum of the first
  508 bytes at 0x1FC;
* one 4 KiB ``hbin`` holding the root key (``nk``, flagged as the hive's entry
  key), one security cell (``sk``; hivex gives every new key its parent's) and a
  free cell over the rest.

Every field is fixed (timestamps included), so the same call gives the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

BASE_BLOCK = 4096
HBIN_SIZE = 4096
_NONE = 0xFFFFFFFF
# 2010-11-20 (Windows 7 SP1's build date) as a FILETIME: fixed, so output is repeatable.
FILETIME = 129346560000000000

_KEY_HIVE_ENTRY = 0x0004
_KEY_NO_DELETE = 0x0008
_KEY_COMP_NAME = 0x0020  # the name is stored as ASCII/Latin-1, not UTF-16


def _sid(revision: int, authority: int, *subs: int) -> bytes:
    return struct.pack("<BB", revision, len(subs)) + authority.to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)


_ADMINS = _sid(1, 5, 32, 544)  # BUILTIN\Administrators
_SYSTEM = _sid(1, 5, 18)  # NT AUTHORITY\SYSTEM
_EVERYONE = _sid(1, 1, 0)
_KEY_ALL_ACCESS = 0x000F003F
_KEY_READ = 0x00020019


def _ace(mask: int, sid: bytes) -> bytes:
    # ACCESS_ALLOWED_ACE, inherited by subkeys (CONTAINER_INHERIT_ACE).
    size = 8 + len(sid)
    return struct.pack("<BBHI", 0, 0x02, size, mask) + sid


def security_descriptor() -> bytes:
    """A self-relative security descriptor: owner Administrators, full control for them and SYSTEM, read for all."""
    aces = _ace(_KEY_ALL_ACCESS, _ADMINS) + _ace(_KEY_ALL_ACCESS, _SYSTEM) + _ace(_KEY_READ, _EVERYONE)
    acl = struct.pack("<BBHHH", 2, 0, 8 + len(aces), 3, 0) + aces
    header = 20
    owner_at = header
    group_at = owner_at + len(_ADMINS)
    dacl_at = group_at + len(_SYSTEM)
    control = 0x8000 | 0x0004  # SE_SELF_RELATIVE | SE_DACL_PRESENT
    return struct.pack("<BBHIIII", 1, 0, control, owner_at, group_at, 0, dacl_at) + _ADMINS + _SYSTEM + acl


def _cell(payload: bytes) -> bytes:
    """An allocated cell: negative size (including the size field), padded to 8 bytes."""
    size = -(-(4 + len(payload)) // 8) * 8
    return struct.pack("<i", -size) + payload.ljust(size - 4, b"\0")


def checksum(base_block: bytes) -> int:
    """The base block checksum: XOR of the first 127 little-endian dwords (0 and -1 are avoided)."""
    value = 0
    for (word,) in struct.iter_unpack("<I", base_block[:508]):
        value ^= word
    if value == 0xFFFFFFFF:
        return 0xFFFFFFFE
    return value or 1


def empty_hive(root_name: str = "ROOT", file_name: str = "") -> bytes:
    """The bytes of an empty hive whose root key is ``root_name``; ``file_name`` goes in the header (as Windows')."""
    name = root_name.encode("ascii")
    nk_at = 0x20  # cell offsets count from the start of the first hbin
    nk_len = _cell(b"\0" * (0x4C + len(name)))  # size only, to place the sk after it
    sk_at = nk_at + len(nk_len)
    sd = security_descriptor()
    # One sk: its forward and backward links point at itself; one key (the root) uses it.
    sk = _cell(b"sk" + struct.pack("<HIIII", 0, sk_at, sk_at, 1, len(sd)) + sd)
    nk = _cell(b"nk" + struct.pack(
        "<HQIIIIIIIIIIIIIIIHH",
        _KEY_HIVE_ENTRY | _KEY_NO_DELETE | _KEY_COMP_NAME,
        FILETIME,
        0,  # access bits
        _NONE,  # parent: none for the root
        0, 0,  # subkeys, volatile subkeys
        _NONE, _NONE,  # their lists
        0, _NONE,  # values and their list
        sk_at,
        _NONE,  # class name
        0, 0, 0, 0,  # largest subkey name, class, value name, value data
        0,  # work var
        len(name), 0,
    ) + name)
    assert len(nk) == len(nk_len)
    cells = nk + sk
    free = HBIN_SIZE - 0x20 - len(cells)
    hbin = bytearray(b"hbin" + struct.pack("<IIQQI", 0, HBIN_SIZE, 0, FILETIME, 0))
    hbin += cells + struct.pack("<i", free) + b"\0" * (free - 4)
    assert len(hbin) == HBIN_SIZE

    base = bytearray(BASE_BLOCK)
    struct.pack_into("<4sIIQIIIIIII", base, 0, b"regf", 1, 1, FILETIME, 1, 5, 0, 1, nk_at, HBIN_SIZE, 1)
    label = file_name.encode("utf-16-le")[:64]
    base[0x30:0x30 + len(label)] = label
    struct.pack_into("<I", base, 0x1FC, checksum(bytes(base)))
    return bytes(base + hbin)


def write_empty_hive(path: Path, root_name: str = "ROOT") -> Path:
    """Write :func:`empty_hive` to ``path`` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(empty_hive(root_name, path.name))
    return path


# -- hand-laid hives, for reader tests ------------------------------------------------

_ROOT_ROOM = 0x4C + 32
SEGMENT = 16344
"""Data bytes in one big-data (``db``) segment."""


def lh_hash(name: str) -> int:
    """The ``lh`` leaf's hash of a key name (hivex ``lib/node.c``: h = h * 37 + upper-case character)."""
    value = 0
    for ch in name.upper():
        value = (value * 37 + ord(ch)) & 0xFFFFFFFF
    return value


class HiveBuilder:
    """Lays cells one after another in one hive bin, for layouts hivex never writes (``ri`` indexes, ``li``
    leaves, ``db`` big data, UTF-16 names) and for damaged hives; :meth:`build` adds the base block.

    Offsets are cell offsets (from the first hive bin), as the hive stores them.
    """

    def __init__(self) -> None:
        self._cells = bytearray()
        self._listed: dict[int, list[int]] = {}  # list offset -> the key nodes it names, to set their parent
        # The root key's cell comes first, laid last: regipy takes the first cell for the root, whatever the
        # base block says.
        self.root = self.cell(b"\0" * _ROOT_ROOM)
        sd = security_descriptor()
        self.sk = 0x20 + len(self._cells)
        self.cell(b"sk" + struct.pack("<HIIII", 0, self.sk, self.sk, 1, len(sd)) + sd)

    def cell(self, payload: bytes) -> int:
        """Append an allocated cell holding ``payload``; return its offset."""
        at = 0x20 + len(self._cells)
        self._cells += _cell(payload)
        return at

    def nk(self, name: str, *, subkeys: int = _NONE, subkey_count: int = 0, values: Sequence[int] = (),
           root: bool = False, utf16: bool = False) -> int:
        """A key node (``subkeys``: the offset of its leaf or index list)."""
        raw = name.encode("utf-16-le" if utf16 else "ascii")
        flags = (_KEY_HIVE_ENTRY | _KEY_NO_DELETE if root else 0) | (0 if utf16 else _KEY_COMP_NAME)
        value_list = self.cell(b"".join(struct.pack("<I", v) for v in values)) if values else _NONE
        payload = (b"nk" + struct.pack("<HQIIIIIIIIIIIIIIIHH", flags, FILETIME, 0, _NONE, subkey_count, 0,
                                             subkeys, _NONE, len(values), value_list, self.sk, _NONE,
                                             0, 0, 0, 0, 0, len(raw), 0) + raw)
        if root:
            if len(payload) > _ROOT_ROOM:
                raise ValueError(f"root key name {name!r} is longer than the builder's room for it")
            at = self.root
            self.patch(at, 0, payload)
        else:
            at = self.cell(payload)
        for child in self._listed.get(subkeys, []):
            self.patch(child, 0x10, struct.pack("<I", at))  # hivexregedit walks parents to name keys
        return at

    def free(self, cell: int) -> None:
        """Mark the cell at ``cell`` free (a positive size), as a deleted key's cell is."""
        start = cell - 0x20
        (size,) = struct.unpack_from("<i", self._cells, start)
        struct.pack_into("<i", self._cells, start, abs(size))

    def patch(self, cell: int, offset: int, data: bytes) -> None:
        """Overwrite ``data`` at ``offset`` in the payload of the cell at ``cell``."""
        start = cell - 0x20 + 4 + offset
        self._cells[start:start + len(data)] = data

    def vk(self, name: str, type_code: int, data: bytes, *, utf16: bool = False) -> int:
        """A value: inline up to 4 bytes, one data cell up to :data:`SEGMENT`, ``db`` segments beyond."""
        raw = name.encode("utf-16-le" if utf16 else "ascii")
        if len(data) <= 4:
            size, at = 0x80000000 | len(data), int.from_bytes(data.ljust(4, b"\0"), "little")
        elif len(data) <= SEGMENT:
            size, at = len(data), self.cell(data)
        else:
            segments = [self.cell(data[i:i + SEGMENT]) for i in range(0, len(data), SEGMENT)]
            seg_list = self.cell(b"".join(struct.pack("<I", s) for s in segments))
            size, at = len(data), self.cell(b"db" + struct.pack("<HI", len(segments), seg_list))
        return self.cell(b"vk" + struct.pack("<HIIIHH", len(raw), size, at, type_code, 0 if utf16 else 1, 0) + raw)

    def leaf(self, kind: bytes, keys: Sequence[tuple[int, str]]) -> int:
        """An ``lf``, ``lh`` or ``li`` leaf of ``(offset, name)`` subkeys."""
        body = b""
        for at, name in keys:
            body += struct.pack("<I", at)
            if kind == b"lf":
                body += name.encode("latin-1", "replace")[:4].ljust(4, b"\0")
            elif kind == b"lh":
                body += struct.pack("<I", lh_hash(name))
        at = self.cell(kind + struct.pack("<H", len(keys)) + body)
        self._listed[at] = [k for k, _ in keys]
        return at

    def index(self, leaves: Sequence[int]) -> int:
        """An ``ri`` index of leaves."""
        at = self.cell(b"ri" + struct.pack("<H", len(leaves)) + b"".join(struct.pack("<I", x) for x in leaves))
        self._listed[at] = [k for leaf in leaves for k in self._listed.get(leaf, [])]
        return at

    def build(self, root: int) -> bytes:
        """The hive file: base block and one hive bin (a multiple of 4 KiB, its tail one free cell)."""
        used = 0x20 + len(self._cells)
        size = -(-(used + 8) // HBIN_SIZE) * HBIN_SIZE
        free = size - used
        hbin = b"hbin" + struct.pack("<IIQQI", 0, size, 0, FILETIME, 0) + bytes(self._cells)
        hbin += struct.pack("<i", free) + b"\0" * (free - 4)
        base = bytearray(BASE_BLOCK)
        struct.pack_into("<4sIIQIIIIIII", base, 0, b"regf", 1, 1, FILETIME, 1, 5, 0, 1, root, size, 1)
        struct.pack_into("<I", base, 0x1FC, checksum(bytes(base)))
        return bytes(base + hbin)
