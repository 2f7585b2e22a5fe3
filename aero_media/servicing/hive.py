r"""Read and edit offline registry hives: reads in process, edits with ``hivexregedit --merge``.

Reads go through :mod:`aero_media.servicing.regf`, our own bounded read-only
reader, once the base block has passed :func:`read_header`: a lookup walks the
few cells it needs instead of starting a Perl process that opens the whole hive
(docs/design.md#registry-hives-read-in-process). The Python binding of hivex
(``python3-hivex``) is built for Debian's Python and is not on PyPI;
``hivexregedit`` (Perl, the same C library) is the robust route for writing
(docs/windows7.md#registry-hives): edits go through a generated ``.reg`` file and
``hivexregedit --merge``.

What hivexregedit does not do, this module does:

* it does not create missing parent keys, so :func:`apply` emits a section for
  every missing ancestor, top-down;
* it rewrites a key's whole value list whenever the key has a section, so
  :func:`apply` emits sections only for keys that change, and nothing at all
  when nothing changes: applying the same edits twice leaves the second time's
  file byte-identical;
* it writes the hive in place, so :func:`apply` merges into a copy and renames
  it over the original only after reading every changed value back.

Key paths are relative to the hive's root (``ControlSet001\Services\viostor``,
no ``HKEY_LOCAL_MACHINE\SYSTEM`` prefix) and, as in Windows, case-insensitive:
an existing key keeps its own spelling. Offline hives have no
``CurrentControlSet``: :func:`current_control_set` reads ``Select\Current``.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from .. import systools
from ..errors import InternalError, SourceError, ToolError
from ..fsutil import atomic_path
from ..scratch import memory_file
from . import regf

TOOL = "hivexregedit"
_PURPOSE = "servicing Windows images reads and edits their registry hives with it"


class RegType(IntEnum):
    """Registry value types (winnt.h REG_*)."""

    NONE = 0
    SZ = 1
    EXPAND_SZ = 2
    BINARY = 3
    DWORD = 4
    DWORD_BIG_ENDIAN = 5
    LINK = 6
    MULTI_SZ = 7
    RESOURCE_LIST = 8
    FULL_RESOURCE_DESCRIPTOR = 9
    RESOURCE_REQUIREMENTS_LIST = 10
    QWORD = 11

    @property
    def label(self) -> str:
        """The name Windows tools print (``REG_EXPAND_SZ``)."""
        return f"REG_{self.name}"


_STRINGS = (RegType.SZ, RegType.EXPAND_SZ)
Data = str | int | bytes | tuple[str, ...]


@dataclass(frozen=True)
class RegValue:
    """One named value: ``str`` for REG_SZ/REG_EXPAND_SZ, ``int`` for REG_DWORD/REG_QWORD,
    ``tuple[str, ...]`` for REG_MULTI_SZ, ``bytes`` for every other type.

    A value read from a hive whose bytes do not decode as its type says (an odd
    length of UTF-16, a 3-byte DWORD) keeps its raw ``bytes``, so nothing read is
    ever lost or guessed at. The default value has the name ``""``.
    """

    name: str
    type: RegType
    data: Data

    def __post_init__(self) -> None:
        expected: type | tuple[type, ...] = bytes
        if self.type in _STRINGS:
            expected = (str, bytes)
        elif self.type in (RegType.DWORD, RegType.QWORD):
            expected = (int, bytes)
        elif self.type is RegType.MULTI_SZ:
            expected = (tuple, bytes)
        if not isinstance(self.data, expected) or isinstance(self.data, bool):
            raise InternalError(f"registry value {self.name!r}: {self.type.label} cannot hold "
                                f"{type(self.data).__name__} data")
        if isinstance(self.data, int) and not 0 <= self.data < (2**32 if self.type is RegType.DWORD else 2**64):
            raise InternalError(f"registry value {self.name!r}: {self.data} does not fit a {self.type.label}")

    @classmethod
    def sz(cls, name: str, text: str) -> RegValue:
        """A REG_SZ."""
        return cls(name, RegType.SZ, text)

    @classmethod
    def expand_sz(cls, name: str, text: str) -> RegValue:
        """A REG_EXPAND_SZ (``%SystemRoot%`` and the like are expanded when read)."""
        return cls(name, RegType.EXPAND_SZ, text)

    @classmethod
    def dword(cls, name: str, number: int) -> RegValue:
        """A REG_DWORD."""
        return cls(name, RegType.DWORD, number)

    @classmethod
    def binary(cls, name: str, data: bytes) -> RegValue:
        """A REG_BINARY."""
        return cls(name, RegType.BINARY, bytes(data))

    @classmethod
    def multi_sz(cls, name: str, items: Iterable[str]) -> RegValue:
        """A REG_MULTI_SZ."""
        return cls(name, RegType.MULTI_SZ, tuple(items))

    def raw(self) -> bytes:
        """The bytes as stored in the hive: UTF-16LE strings with their NUL, little-endian numbers."""
        data = self.data
        if isinstance(data, bytes):
            return data
        if isinstance(data, str):
            return (data + "\0").encode("utf-16-le")
        if isinstance(data, int):
            return data.to_bytes(4 if self.type is RegType.DWORD else 8, "little")
        return "".join(item + "\0" for item in data).encode("utf-16-le") + b"\0\0"

    @classmethod
    def decode(cls, name: str, type_code: int, raw: bytes) -> RegValue:
        """The typed value for ``raw`` bytes of ``type_code`` (raw ``bytes`` kept where they do not decode)."""
        try:
            reg_type = RegType(type_code)
        except ValueError:
            raise SourceError(f"registry value {name!r} has type {type_code}, which is no registry type",
                              "the hive is damaged or not a Windows hive") from None
        data: Data = raw
        if reg_type in _STRINGS and len(raw) % 2 == 0:
            try:
                data = raw.decode("utf-16-le").rstrip("\0")
            except UnicodeDecodeError:
                data = raw
        elif (reg_type, len(raw)) in ((RegType.DWORD, 4), (RegType.QWORD, 8)):
            data = int.from_bytes(raw, "little")
        elif reg_type is RegType.MULTI_SZ and len(raw) % 2 == 0:
            try:
                text = raw.decode("utf-16-le")
            except UnicodeDecodeError:
                text = None
            if text is not None:
                items = text.split("\0")
                while items and items[-1] == "":
                    items.pop()
                data = tuple(items)
        return cls(name, reg_type, data)

    def same_as(self, other: RegValue | None) -> bool:
        """Equal for Windows: same name (ignoring case), type and decoded data.

        Decoded, not raw: a string stored without its final NUL reads the same as
        one with it, so rewriting it would change bytes and nothing else.
        """
        return (other is not None and self.name.lower() == other.name.lower() and self.type is other.type
                and self.data == other.data)

    def record(self) -> dict[str, Any]:
        """A JSON-able form for servicing records: type label and data (bytes as lower-case hex)."""
        data = self.data
        shown: Any = data.hex() if isinstance(data, bytes) else list(data) if isinstance(data, tuple) else data
        return {"type": self.type.label, "data": shown}


def normalize_key(key: str) -> str:
    """``key`` without leading, trailing or doubled backslashes; refuse names a ``.reg`` file cannot carry."""
    parts = [p for p in key.replace("/", "\\").split("\\") if p]
    for part in parts:
        if not part.isascii() or not part.isprintable() or part.strip() != part:
            raise InternalError(f"registry key name {part!r} (in {key!r}) is not plain printable ASCII")
    return "\\".join(parts)


def _parent(key: str) -> str:
    return key.rpartition("\\")[0]


def _leaf(key: str) -> str:
    return key.rpartition("\\")[2]


@dataclass(frozen=True)
class SetValue:
    """Set ``value`` under ``key`` (creating the key and its parents as needed)."""

    key: str
    value: RegValue

    def resolve(self, old: RegValue | None) -> RegValue:
        """The value to write, given what is there."""
        return self.value


@dataclass(frozen=True)
class AppendToList:
    r"""Append ``value.data`` (one item) to a ``;``-separated string value once, as to ``DevicePath``.

    An item already in the list (ignoring case and surrounding blanks) changes
    nothing, so the edit is idempotent. When the value is absent it becomes
    ``default`` plus the item: Windows' own default for ``DevicePath`` is
    ``%SystemRoot%\inf``, which a bare item would drop.
    """

    key: str
    value: RegValue
    default: str = ""
    separator: str = ";"

    def resolve(self, old: RegValue | None) -> RegValue:
        """The value to write, given what is there."""
        item = self.value.data
        if not isinstance(item, str):
            raise InternalError(f"AppendToList {self.value.name!r} needs a string item")
        if old is None:
            base = self.default
        elif old.type not in _STRINGS or not isinstance(old.data, str):
            raise SourceError(f"registry value {self.key}\\{old.name} is {old.type.label}, not a string list",
                              "the hive is not a Windows 7 hive, or was edited by hand")
        else:
            base = old.data
        items = [i.strip().lower() for i in base.split(self.separator)]
        if item.strip().lower() in items:
            return old if old is not None else RegValue(self.value.name, self.value.type, base)
        joined = f"{base.rstrip(self.separator)}{self.separator}{item}" if base.strip() else item
        return RegValue(self.value.name, self.value.type, joined)


Edit = SetValue | AppendToList


@dataclass(frozen=True)
class Change:
    """What one edit found and left: the old value (None: absent) and the new one."""

    key: str
    """The key's path as stored (an existing key keeps its own case)."""
    name: str
    old: RegValue | None
    new: RegValue

    @property
    def changed(self) -> bool:
        """Whether the hive had to be written for this edit."""
        return not self.new.same_as(self.old)

    def record(self) -> dict[str, Any]:
        """A JSON-able form for servicing.json."""
        return {"key": self.key, "name": self.name, "old": self.old.record() if self.old else None,
                "new": self.new.record(), "changed": self.changed}


@dataclass(frozen=True)
class RegKey:
    """A key as read: its stored path, values and the names of its subkeys."""

    path: str
    values: tuple[RegValue, ...]
    subkeys: tuple[str, ...] = field(default=())

    def value(self, name: str) -> RegValue | None:
        """The value called ``name`` (ignoring case), or None."""
        return next((v for v in self.values if v.name.lower() == name.lower()), None)


# -- the base block ------------------------------------------------------------

BASE_BLOCK = 4096
"""The regf base block ("header") that starts every hive file; the hive bins follow it."""
HBIN_ALIGN = 4096
_SIGNATURE = b"regf"
_CHECKSUMMED = 508
"""The checksum at 0x1FC is the XOR of the 127 dwords before it."""
_HEADER_NAME = slice(0x30, 0x70)
"""Where the hive keeps the tail of its own file path, UTF-16LE (``emRoot\\System32\\Config\\SYSTEM``)."""


@dataclass(frozen=True)
class Header:
    """What a hive's base block says about itself (offsets from the regf layout hivex's ``lib/hivex-internal.h``
    documents)."""

    sequence: tuple[int, int]
    root_offset: int
    data_size: int
    file_name: str
    """The last component of the path the hive records for itself (``SYSTEM``), or ``""``."""
    root_name: str
    """The root key's name (``CMI-CreateHive{...}`` for Windows 7 system hives), or ``""`` when unreadable."""


def _header_checksum(block: bytes) -> int:
    value = 0
    for (word,) in struct.iter_unpack("<I", block[:_CHECKSUMMED]):
        value ^= word
    # Windows never stores 0 or -1 (the kernel's HvpHeaderCheckSum maps them to 1 and -2).
    return 0xFFFFFFFE if value == 0xFFFFFFFF else value or 1


def read_header(hive: Path, label: str | None = None) -> Header:
    """Check ``hive``'s base block against the file and return it; a hive that lies is a :class:`SourceError`.

    Run before any hivex tool opens the file: hivex trusts the data size at 0x28
    and allocates (and, merging, writes) that much, so a 12 KiB file claiming
    1 GiB would cost a gigabyte before failing. Reads two small pieces of the
    file, whatever its size. ``label`` names the hive in messages (default: its
    file name).
    """
    name = label or hive.name
    fix = "use an intact hive from a Windows 7 image"
    try:
        size = hive.stat().st_size
        with open(hive, "rb") as fp:
            block = fp.read(BASE_BLOCK)
            root = b""
            if len(block) == BASE_BLOCK:
                root_offset = struct.unpack_from("<I", block, 0x24)[0]
                fp.seek(BASE_BLOCK + root_offset)
                root = fp.read(4 + 0x4C + 512)
    except OSError as exc:
        raise SourceError(f"{name}: cannot read it ({exc.strerror})", fix) from None
    if size < BASE_BLOCK + HBIN_ALIGN or block[:4] != _SIGNATURE:
        raise SourceError(f"{name} is not a registry hive (no regf base block and hive bin)", fix)
    seq1, seq2 = struct.unpack_from("<II", block, 4)
    major = struct.unpack_from("<I", block, 0x14)[0]
    root_offset, data_size = struct.unpack_from("<II", block, 0x24)
    stored = struct.unpack_from("<I", block, _CHECKSUMMED)[0]
    if stored != _header_checksum(block):
        raise SourceError(f"{name}: the regf header's checksum is {stored:#010x}, not {_header_checksum(block):#010x}: "
                          "the header is damaged", fix)
    if major != 1:
        raise SourceError(f"{name}: regf format {major}, not 1 (every Windows hive is 1.x)", fix)
    if seq1 != seq2:
        raise SourceError(f"{name} was not closed cleanly (sequence numbers {seq1} and {seq2} differ): its "
                          "transaction log would have to be replayed first, which hivex cannot do", fix)
    if data_size == 0 or data_size % HBIN_ALIGN or BASE_BLOCK + data_size > size:
        raise SourceError(f"{name}: the regf header claims {data_size} bytes of hive bins, but the file holds "
                          f"{size - BASE_BLOCK} after its header", fix)
    if root_offset >= data_size:
        raise SourceError(f"{name}: the root key's offset {root_offset:#x} lies past the hive bins", fix)
    file_name = block[_HEADER_NAME].decode("utf-16-le", "replace").split("\0", 1)[0]
    root_name = ""
    # The root cell: size, "nk", ..., name length at 0x48 and the name at 0x4C (after the size field).
    if len(root) >= 4 + 0x4C and root[4:6] == b"nk":
        length = struct.unpack_from("<H", root, 4 + 0x48)[0]
        raw = root[4 + 0x4C:4 + 0x4C + length]
        flags = struct.unpack_from("<H", root, 6)[0]
        root_name = raw.decode("latin-1" if flags & 0x20 else "utf-16-le", "replace")
    return Header((seq1, seq2), root_offset, data_size, file_name.rsplit("\\", 1)[-1].strip(), root_name)


# -- reading -------------------------------------------------------------------

class _Reader:
    """One hive opened for reading (header checked, then :class:`~aero_media.servicing.regf.Hive`)."""

    def __init__(self, hive: Path, label: str | None = None) -> None:
        self.label = label or hive.name
        head = read_header(hive, self.label)
        self._hive = regf.Hive(hive, self.label, head.root_offset, head.data_size)

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._hive.close()

    def key(self, key: str) -> RegKey | None:
        """The key ``key`` (case-insensitive) with its values and subkey names, or None when absent."""
        raw = self._hive.key(key)
        if raw is None:
            return None
        try:
            values = tuple(RegValue.decode(v.name, v.type, v.data) for v in raw.values)
        except SourceError as exc:
            raise SourceError(f"{self.label}: {exc.message}", exc.hint) from None
        return RegKey(raw.path, values, raw.subkeys)


def read_key(hive: Path, key: str, label: str | None = None) -> RegKey | None:
    """The key ``key`` (case-insensitive) with its values and subkey names, or None when absent.

    ``label`` names the hive in messages (default: its file name).
    """
    with _Reader(Path(hive), label) as reader:
        # Any name reads (only a .reg file, for writing, needs plain ASCII: normalize_key).
        return reader.key("\\".join(p for p in key.replace("/", "\\").split("\\") if p))


def read_value(hive: Path, key: str, name: str, label: str | None = None) -> RegValue | None:
    """The value ``name`` of ``key`` (both case-insensitive), or None when either is absent."""
    found = read_key(hive, key, label)
    return found.value(name) if found else None


def current_control_set(system_hive: Path) -> str:
    """``ControlSet00N`` named by ``Select\\Current`` of an offline SYSTEM hive (which has no CurrentControlSet)."""
    with _Reader(Path(system_hive)) as reader:
        select = reader.key("Select")
        value = select.value("Current") if select else None
        if value is None or not isinstance(value.data, int) or not 1 <= value.data <= 999:
            shown = value.record()["data"] if value else "absent"
            raise SourceError(f"{system_hive.name} has no usable Select\\Current ({shown})",
                              "give the SYSTEM hive of a Windows 7 image (Windows\\System32\\config\\SYSTEM)")
        name = f"ControlSet{value.data:03d}"
        if reader.key(name) is None:
            raise SourceError(f"{system_hive.name}: Select\\Current names {name}, which does not exist",
                              "the hive is damaged: take it from an intact image")
    return name


# -- writing -------------------------------------------------------------------

def _quote(name: str) -> str:
    if not name.isascii() or not name.isprintable():
        raise InternalError(f"registry value name {name!r} is not plain printable ASCII")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _hex(data: bytes) -> str:
    return ",".join(f"{b:02x}" for b in data)


def reg_line(value: RegValue) -> str:
    """One ``.reg`` line in hivexregedit's syntax (see ``Win::Hivex::Regedit``'s ``_parse_value``).

    REG_DWORD is ``dword:`` and REG_BINARY ``hex:``; every other type is
    ``hex(N):`` with its stored bytes (REG_EXPAND_SZ ``hex(2):`` UTF-16LE with the
    NUL, REG_MULTI_SZ ``hex(7):``). Strings are never written as ``"text"``:
    hivexregedit re-encodes those from the file's bytes, and hex says exactly
    which bytes land in the hive.
    """
    head = "@" if value.name == "" else _quote(value.name)
    if value.type is RegType.DWORD and isinstance(value.data, int):
        return f"{head}=dword:{value.data:08x}"
    if value.type is RegType.BINARY:
        return f"{head}=hex:{_hex(value.raw())}"
    return f"{head}=hex({value.type.value:x}):{_hex(value.raw())}"


def render_reg(sections: Sequence[tuple[str, Sequence[RegValue]]]) -> str:
    """A ``.reg`` file (LF, ASCII) of ``(key, values)`` sections, keys relative to the hive root."""
    out = ["Windows Registry Editor Version 5.00", ""]
    for key, values in sections:
        out.append(f"[\\{key}]")
        out.extend(reg_line(v) for v in values)
        out.append("")
    return "\n".join(out) + "\n"


def _plan(snap: _Reader, edits: Sequence[Edit]) -> tuple[list[Change], list[tuple[str, list[RegValue]]]]:
    """The change for each edit, and the ``.reg`` sections that make them (missing ancestors first)."""
    state: dict[str, dict[str, RegValue]] = {}  # lower key -> lower name -> value, as it will be
    stored: dict[str, str] = {}  # lower key -> its path as stored (or as it will be created)
    sections: dict[str, list[RegValue]] = {}  # lower key -> values to write, in first-touch order
    order: list[str] = []

    def ensure(key: str) -> str:
        low = key.lower()
        if low in stored:
            return stored[low]
        found = snap.key(key)
        if found is None:
            parent = ensure(_parent(key)) if _parent(key) else ""
            path = f"{parent}\\{_leaf(key)}" if parent else _leaf(key)
            stored[low], state[low] = path, {}
            sections[low] = []  # hivexregedit creates a key only from a section of its own
            order.append(low)
        else:
            stored[low] = found.path
            state[low] = {v.name.lower(): v for v in found.values}
        return stored[low]

    changes = []
    for edit in edits:
        key = normalize_key(edit.key)
        path = ensure(key)
        low = key.lower()
        old = state[low].get(edit.value.name.lower())
        new = edit.resolve(old)
        if old is not None and new.name != old.name:
            new = RegValue(old.name, new.type, new.data)  # keep the stored spelling of the name
        change = Change(path, new.name, old, new)
        changes.append(change)
        if change.changed:
            state[low][new.name.lower()] = new
            if low not in sections:
                sections[low] = []
                order.append(low)
            sections[low] = [v for v in sections[low] if v.name.lower() != new.name.lower()] + [new]
    return changes, [(stored[low], sections[low]) for low in order]


def apply(hive: Path, edits: Sequence[Edit], label: str | None = None) -> tuple[Change, ...]:
    """Apply ``edits`` (in order) to ``hive``; return each one's old and new value.

    Nothing is written when nothing changes. Otherwise the merge runs on a copy,
    every changed value is read back, and only then does the copy replace
    ``hive``: a failure leaves the original untouched. ``label`` names the hive
    in messages (default: its file name).
    """
    hive = Path(hive)
    name = label or hive.name
    if not hive.is_file():
        raise SourceError(f"{name}: no such hive", "extract it from the image first")
    with _Reader(hive, name) as reader:
        changes, sections = _plan(reader, edits)
    if not any(c.changed for c in changes):
        return tuple(changes)
    text = render_reg(sections)
    # The edits live in memory (hivexregedit opens /dev/fd/N): a killed run leaves no .reg file in $TMPDIR.
    with atomic_path(hive) as tmp, memory_file(text.encode("ascii"), "edits.reg") as reg:
        shutil.copyfile(hive, tmp)
        # --encoding only matters for "text" strings, which render_reg never writes; say it anyway.
        try:
            systools.run(TOOL, ["--merge", "--encoding", "UTF-16LE", os.fspath(tmp), os.fspath(reg.path)],
                         purpose=_PURPOSE, what=f"merging edits into {name}", pass_fds=(reg.fd,))
        except ToolError as exc:
            # Name the hive, never the copy being merged into or the descriptor the edits were read from.
            said = exc.message.replace(os.fspath(tmp), name).replace(os.fspath(reg.path), "the edits")
            raise ToolError(said, exc.hint) from None
        _verify(tmp, name, changes)
    return tuple(changes)


def _verify(written: Path, name: str, changes: Sequence[Change]) -> None:
    final: dict[tuple[str, str], Change] = {(c.key.lower(), c.name.lower()): c for c in changes}
    with _Reader(written, name) as reader:
        for change in final.values():
            key = reader.key(normalize_key(change.key))
            got = key.value(change.name) if key else None
            if not change.new.same_as(got):
                raise ToolError(f"{TOOL} merged {name} but {change.key}\\{change.name} reads back as "
                                f"{got.record() if got else 'absent'}, not {change.new.record()}",
                                "report it: the hive was left unchanged")
