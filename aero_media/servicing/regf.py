r"""A bounded, read-only reader of registry hive files (regf), in process.

Servicing reads a few keys of each hive (the root's subkeys, ``Select\Current``,
the keys an edit list touches, each changed value once more after the merge).
Starting ``hivexregedit --export`` for each of them cost a Perl start-up and a
full open of the hive per read: at retail size (a Windows 7 SOFTWARE hive is tens
of MB) that was most of the time servicing spent on hives. This module reads the
file once through a read-only ``mmap`` (memory stays flat in the hive's size) and
walks only the cells a lookup needs. Writes stay with ``hivexregedit --merge``.

The layout is the one hivex's ``lib/hivex-internal.h`` and ``lib/node.c`` /
``lib/value.c`` document, and the Windows Internals "regf" format notes:

* cell offsets count from the first hive bin (file offset 4096); a cell is a
  signed 32-bit size (negative: allocated) and its payload, 8-byte aligned;
* ``nk`` key nodes name their subkey list (``lf``/``lh``/``li`` leaves, or an
  ``ri`` index of leaves), their value list (offsets of ``vk`` cells) and their
  name (ASCII when flag 0x20 says so, UTF-16LE otherwise);
* a ``vk`` value holds up to 4 bytes inline (high bit of its size), else points
  at a data cell, which for large values is a ``db`` list of 16344-byte segments.

Hostile input: every offset is checked against the hive bins before it is read,
every count against the cell that holds it, an index may not name the same leaf
twice, lookups go no deeper than the path asked for (and Windows' 512 levels), and
a value's size is capped by the hive's. Whatever is wrong becomes one
:class:`~aero_media.errors.SourceError` naming the hive's label.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ..errors import SourceError

BASE_BLOCK = 4096
MAX_DEPTH = 512
"""Windows refuses keys nested deeper than 512 levels (MSDN, "Registry Element Size Limits")."""
_SEGMENT = 16344
"""Bytes of data in one big-data segment (hivex ``HIVEX_MAX_VALUE_LEN`` notes; 0x3FD8)."""
_INLINE = 0x80000000
_KEY_COMP_NAME = 0x0020
_VALUE_COMP_NAME = 0x0001
_NK_NAME = 0x4C
_VK_NAME = 0x14
_FIX = "use an intact hive from a Windows 7 image"


@dataclass(frozen=True)
class RawValue:
    """A value as stored: its name, type code and data bytes."""

    name: str
    type: int
    data: bytes


@dataclass(frozen=True)
class RawKey:
    """A key as stored: its path below the root (names as stored), values and subkey names, both sorted by name."""

    path: str
    values: tuple[RawValue, ...]
    subkeys: tuple[str, ...]


class Hive:
    """One hive file opened read-only; use as a context manager (``with Hive(...) as h: h.key(...)``).

    ``root_offset`` and ``data_size`` come from a base block that the caller has
    already checked against the file (:func:`aero_media.servicing.hive.read_header`).
    """

    def __init__(self, path: Path, label: str, root_offset: int, data_size: int) -> None:
        self.label = label
        try:
            with open(path, "rb") as fp:
                self._map = mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise SourceError(f"{label}: cannot read it ({getattr(exc, 'strerror', None) or exc})", _FIX) from None
        if BASE_BLOCK + data_size > len(self._map):
            self._map.close()
            raise SourceError(f"{label}: the hive bins run past the end of the file", _FIX)
        self._end = data_size
        self._root = root_offset

    def close(self) -> None:
        """Release the mapping."""
        self._map.close()

    def __enter__(self) -> Hive:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- cells --------------------------------------------------------------

    def _bad(self, what: str) -> SourceError:
        return SourceError(f"{self.label}: {what}: the hive is damaged", _FIX)

    def _cell(self, offset: int, what: str) -> bytes:
        """The payload of the allocated cell at ``offset`` (from the first hive bin), bounds-checked."""
        if offset + 4 > self._end:
            raise self._bad(f"{what} at {offset:#x} lies outside the hive bins")
        if offset % 8:
            raise self._bad(f"{what} at {offset:#x} is not on a cell boundary")
        start = BASE_BLOCK + offset
        (size,) = struct.unpack_from("<i", self._map, start)
        if size >= 0:
            raise self._bad(f"{what} at {offset:#x} is a free cell")
        size = -size
        if size < 8 or offset + size > self._end:
            raise self._bad(f"{what} at {offset:#x} claims {size} bytes, past the hive bins")
        return self._map[start + 4:start + size]

    def _nk(self, offset: int) -> bytes:
        cell = self._cell(offset, "key node")
        if len(cell) < _NK_NAME or cell[:2] != b"nk":
            raise self._bad(f"the cell at {offset:#x} is not a key node")
        return cell

    def _name(self, raw: bytes, ascii_name: bool, what: str) -> str:
        if ascii_name:
            return raw.decode("latin-1")
        try:
            return raw.decode("utf-16-le")
        except UnicodeDecodeError:
            raise self._bad(f"{what} is not valid UTF-16") from None

    def _key_name(self, offset: int, cell: bytes) -> str:
        flags, length = struct.unpack_from("<H", cell, 2)[0], struct.unpack_from("<H", cell, 0x48)[0]
        if _NK_NAME + length > len(cell):
            raise self._bad(f"the key node at {offset:#x} has a name longer than its cell")
        return self._name(cell[_NK_NAME:_NK_NAME + length], bool(flags & _KEY_COMP_NAME),
                          f"the name of the key node at {offset:#x}")

    def _children(self, nk: bytes) -> list[int]:
        """The offsets of a key's subkey nodes, from its leaf or index list."""
        count, list_at = struct.unpack_from("<II", nk, 0x14)[0], struct.unpack_from("<I", nk, 0x1C)[0]
        if count == 0:
            return []
        head = self._cell(list_at, "subkey list")
        if len(head) < 4:
            raise self._bad(f"the subkey list at {list_at:#x} is too short")
        if head[:2] == b"ri":
            leaves = self._offsets(head, list_at, 4)
            if len(set(leaves)) != len(leaves):
                raise self._bad(f"the subkey index at {list_at:#x} names a leaf twice")
            found: list[int] = []
            for leaf in leaves:
                cell = self._cell(leaf, "subkey leaf")
                if len(cell) < 4 or cell[:2] not in (b"lf", b"lh", b"li"):
                    raise self._bad(f"the subkey index at {list_at:#x} names {leaf:#x}, which is no leaf")
                found += self._leaf(cell, leaf)
            return found
        if head[:2] not in (b"lf", b"lh", b"li"):
            raise self._bad(f"the subkey list at {list_at:#x} is of no known kind")
        return self._leaf(head, list_at)

    def _leaf(self, cell: bytes, at: int) -> list[int]:
        # lf/lh entries are (offset, hash) pairs; li entries are offsets alone.
        return self._offsets(cell, at, 4 if cell[:2] == b"li" else 8)

    def _offsets(self, cell: bytes, at: int, stride: int) -> list[int]:
        (count,) = struct.unpack_from("<H", cell, 2)
        if 4 + count * stride > len(cell):
            raise self._bad(f"the list at {at:#x} claims {count} entries, more than its cell holds")
        return [struct.unpack_from("<I", cell, 4 + i * stride)[0] for i in range(count)]

    def _values(self, nk: bytes) -> list[RawValue]:
        count, list_at = struct.unpack_from("<II", nk, 0x24)
        if count == 0:
            return []
        cell = self._cell(list_at, "value list")
        if count * 4 > len(cell):
            raise self._bad(f"the value list at {list_at:#x} claims {count} values, more than its cell holds")
        return [self._value(struct.unpack_from("<I", cell, i * 4)[0]) for i in range(count)]

    def _value(self, offset: int) -> RawValue:
        vk = self._cell(offset, "value")
        if len(vk) < _VK_NAME or vk[:2] != b"vk":
            raise self._bad(f"the cell at {offset:#x} is not a value")
        length, size, data_at, type_code, flags = struct.unpack_from("<HIIIH", vk, 2)
        if _VK_NAME + length > len(vk):
            raise self._bad(f"the value at {offset:#x} has a name longer than its cell")
        name = self._name(vk[_VK_NAME:_VK_NAME + length], bool(flags & _VALUE_COMP_NAME),
                          f"the name of the value at {offset:#x}")
        if size & _INLINE:
            size &= ~_INLINE
            if size > 4:
                raise self._bad(f"the value {name!r} at {offset:#x} claims {size} inline bytes (at most 4)")
            return RawValue(name, type_code, vk[8:8 + size])
        if size == 0:
            return RawValue(name, type_code, b"")
        if size > self._end:
            raise self._bad(f"the value {name!r} at {offset:#x} claims {size} bytes, more than the hive holds")
        data = self._cell(data_at, f"the data of value {name!r}")
        if size > len(data) and size > _SEGMENT and data[:2] == b"db":
            return RawValue(name, type_code, self._big(data, data_at, size, name))
        if size > len(data):
            raise self._bad(f"the value {name!r} claims {size} bytes, but its data cell holds {len(data)}")
        return RawValue(name, type_code, data[:size])

    def _big(self, db: bytes, at: int, size: int, name: str) -> bytes:
        """A value stored in segments (``db``): the first ``size`` bytes of its segments, in order."""
        if len(db) < 8:
            raise self._bad(f"the big-data block of {name!r} at {at:#x} is too short")
        count, list_at = struct.unpack_from("<HI", db, 2)
        segments = self._cell(list_at, f"the segment list of {name!r}")
        if count * 4 > len(segments) or count * _SEGMENT < size:
            raise self._bad(f"the big-data block of {name!r} at {at:#x} has too few segments for {size} bytes")
        out = bytearray()
        for i in range(count):
            left = size - len(out)
            if left <= 0:
                break
            segment = self._cell(struct.unpack_from("<I", segments, i * 4)[0], f"a segment of {name!r}")
            take = min(left, _SEGMENT)
            if len(segment) < take:
                raise self._bad(f"a segment of {name!r} is shorter than its data")
            out += segment[:take]
        return bytes(out)

    # -- lookups ------------------------------------------------------------

    def _find(self, parent: bytes, name: str) -> tuple[bytes, str] | None:
        low = name.lower()
        for child in self._children(parent):
            cell = self._nk(child)
            stored = self._key_name(child, cell)
            if stored.lower() == low:
                return cell, stored
        return None

    def key(self, path: str) -> RawKey | None:
        """The key at ``path`` (names separated by ``\\``, case-insensitive; ``""``: the root), or None when absent."""
        parts = [p for p in path.split("\\") if p]
        if len(parts) > MAX_DEPTH:
            return None
        cell = self._nk(self._root)
        stored: list[str] = []
        for part in parts:
            found = self._find(cell, part)
            if found is None:
                return None
            cell, name = found
            stored.append(name)
        values = sorted(self._values(cell), key=lambda v: v.name)
        subkeys = sorted(self._key_name(c, self._nk(c)) for c in self._children(cell))
        return RawKey("\\".join(stored), tuple(values), tuple(subkeys))
