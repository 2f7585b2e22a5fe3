"""A small, bounded walk of a UDF directory tree (ECMA-167 part 4), for :mod:`aero_media.sources.isoread`.

pycdlib 1.22 parses the UDF volume descriptors well, but its directory walk trusts the image:
it reads as many bytes as each File Identifier's ICB claims (up to 1 GiB) for a File Entry of
one block, re-reads a folder's identifiers once per allocation descriptor even when every
descriptor repeats the same extent, and keeps only one of two identical names in a folder.
So pycdlib is used for the volume descriptors only (anchor, partition, file set) and this
module walks the tree from the raw bytes, with every read bounded:

* a File Entry is one block, read once (cached by block), whatever its identifier claims;
* a folder's data is at most :data:`MAX_FOLDER` bytes, inside the partition and the image,
  and no block is read twice as folder data or as both folder data and a File Entry, so
  the total work is bounded by the image size;
* allocation descriptors are bounded by the File Entry's block.

Faults raise :class:`UdfDamage` (damaged or truncated) or :class:`UdfUnsafe` (a name that
could escape a folder, or a name twice in one folder); the caller turns them into its
one-line errors with the image's name.
"""

from __future__ import annotations

import binascii
import bisect
import struct
from collections.abc import Callable
from dataclasses import dataclass

from .tree import EntryKind

MAX_FOLDER = 16 * 1024 * 1024
"""Largest folder data we read: about 200 000 entries; a Windows DVD's largest folder has a few thousand."""

# ECMA-167 3/7.2.1 and 4/7.2.1 tag identifiers.
_TAG_FID, _TAG_FE, _TAG_EFE = 257, 261, 266
# 4/14.4.3 File Identifier characteristics.
_FID_DIR, _FID_DELETED, _FID_PARENT = 0x02, 0x04, 0x08
# 4/14.6.6 ICB file types.
_TYPE_DIR, _TYPE_FILE, _TYPE_SYMLINK = 4, 5, 12
# 4/14.6.8 ICB flags bits 0-2: how the extents are described.
_AD_SHORT, _AD_LONG, _AD_INLINE = 0, 1, 3
_RECORDED = 0  # 4/14.14.1.1 extent type "recorded and allocated"
_NAME_CODECS = {8: "latin-1", 16: "utf-16-be"}  # OSTA CS0 compression IDs


class UdfDamage(Exception):
    """The UDF structures are damaged, truncated or of a kind we do not read; ``str()`` says which."""


class UdfUnsafe(Exception):
    """A UDF name could escape a folder or appears twice in one folder; ``str()`` says which."""


@dataclass(frozen=True)
class UdfVolume:
    """Where the tree lives: from the volume descriptors pycdlib parsed."""

    block_size: int
    part_start: int
    """First block of partition 0, in image blocks."""
    part_length: int
    """Length of partition 0, in blocks."""
    root_block: int
    """Partition-relative block of the root folder's File Entry."""
    image_size: int


@dataclass(frozen=True)
class UdfItem:
    """One entry of the tree: '/'-joined path, kind, and the (byte offset, length) extents of a file."""

    path: str
    kind: EntryKind
    extents: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class _Fe:
    block: int
    file_type: int
    size: int
    extents: tuple[tuple[int, int], ...]
    inline: bool


def _tag_ok(raw: bytes, ident: int, at: int = 0) -> bool:
    """Whether ``raw[at:]`` starts with a descriptor tag ``ident`` whose checksum and CRC hold (ECMA-167 3/7.2)."""
    if len(raw) - at < 16 or struct.unpack_from("<H", raw, at)[0] != ident:
        return False
    if (sum(raw[at:at + 4]) + sum(raw[at + 5:at + 16])) & 0xFF != raw[at + 4]:
        return False
    crc, crc_len = struct.unpack_from("<HH", raw, at + 8)
    body = memoryview(raw)[at + 16:at + 16 + crc_len]
    return len(body) == crc_len and bool(binascii.crc_hqx(body, 0) == crc)


class _Walker:
    def __init__(self, vol: UdfVolume, read: Callable[[int, int], bytes],
                 name_problem: Callable[[str], str | None]) -> None:
        self.vol = vol
        self.read = read
        self.name_problem = name_problem
        self.fes: dict[int, _Fe] = {}
        self.folder_blocks: set[int] = {0}  # block 0 of the partition holds the File Set Descriptor

    def _abs(self, path: str, block: int, length: int) -> int:
        """Image byte offset of partition block ``block``, after checking ``length`` bytes fit."""
        bs, vol = self.vol.block_size, self.vol
        at = (vol.part_start + block) * bs
        if at + length > vol.image_size:
            raise UdfDamage(f"truncated: {path!r} lies past the end of the image ({vol.image_size} bytes)")
        if block + -(-length // bs) > vol.part_length:
            raise UdfDamage(f"{path!r}: its UDF data (block {block}) lies past the end of the partition "
                            f"({vol.part_length} blocks)")
        return at

    def fe(self, path: str, block: int) -> _Fe:
        """The File Entry at partition block ``block``: one block read, once."""
        if block in self.fes:
            return self.fes[block]
        if block in self.folder_blocks:
            raise UdfDamage(f"{path!r}: its UDF File Entry lies inside folder data or the file set descriptor")
        bs = self.vol.block_size
        at = self._abs(path, block, bs)
        raw = self.read(at, bs)
        if len(raw) < bs:
            raise UdfDamage(f"truncated: {path!r} lies past the end of the image ({self.vol.image_size} bytes)")
        tag = struct.unpack_from("<H", raw)[0]
        if not (_tag_ok(raw, _TAG_FE) or _tag_ok(raw, _TAG_EFE)):
            what = "a blank block" if not any(raw) else f"a block with tag {tag}"
            raise UdfDamage(f"truncated or damaged: {path!r} points at {what}, not at a UDF File Entry "
                            f"(block {block})")
        ea_at, base = (208, 216) if tag == _TAG_EFE else (168, 176)
        ea_len, ad_len = struct.unpack_from("<II", raw, ea_at)
        first = base + ea_len
        if first + ad_len > bs:
            raise UdfDamage(f"{path!r}: its UDF File Entry runs past its block")
        file_type, how = raw[27], struct.unpack_from("<H", raw, 34)[0] & 0x7
        size = struct.unpack_from("<Q", raw, 56)[0]
        if how == _AD_INLINE:
            if size > ad_len:
                raise UdfDamage(f"{path!r}: its embedded UDF data holds {ad_len} of its {size} bytes")
            fe = _Fe(block, file_type, size, ((at + first, size),), True)
        else:
            fe = _Fe(block, file_type, size, self._ads(path, raw, first, ad_len, how, size), False)
        self.fes[block] = fe
        return fe

    def _ads(self, path: str, raw: bytes, first: int, ad_len: int, how: int, size: int
             ) -> tuple[tuple[int, int], ...]:
        """Byte extents from short or long allocation descriptors (4/14.14), up to ``size`` bytes."""
        step = {_AD_SHORT: 8, _AD_LONG: 16}.get(how)
        if step is None:
            raise UdfDamage(f"{path!r}: UDF allocation descriptors of type {how} "
                            "(only short, long and embedded ones are read)")
        extents: list[tuple[int, int]] = []
        left = size
        for pos in range(first, first + ad_len - step + 1, step):
            word, block = struct.unpack_from("<II", raw, pos)
            length, kind = word & 0x3FFFFFFF, word >> 30
            if length == 0 or left <= 0:
                break  # ECMA-167 4/12: a length of zero ends the descriptors
            partition = struct.unpack_from("<H", raw, pos + 8)[0] if how == _AD_LONG else 0
            if kind != _RECORDED or partition != 0:
                # Sparse or unrecorded extents, continued descriptor lists and a second partition: no DVD
                # mastering tool writes them for a file, and reading them as bytes would be wrong.
                raise UdfDamage(f"{path!r}: UDF allocation this reader does not follow "
                                f"(extent type {kind}, partition {partition})")
            take = min(length, left)
            extents.append((self._abs(path, block, take), take))
            left -= take
        if left > 0:
            raise UdfDamage(f"{path!r}: its UDF allocation holds {size - left} of its {size} bytes")
        return tuple(extents)

    def folder_data(self, path: str, fe: _Fe) -> bytes:
        """A folder's identifiers, each block read once in the whole walk."""
        if fe.size > MAX_FOLDER:
            raise UdfDamage(f"{path or '/'!r}: a UDF folder of {fe.size} bytes (more than {MAX_FOLDER} is refused)")
        if fe.inline:
            at, n = fe.extents[0]
            return self.read(at, n)
        bs, start = self.vol.block_size, self.vol.part_start
        parts = []
        for at, n in fe.extents:
            first = at // bs - start
            for block in range(first, first + -(-n // bs)):
                if block in self.folder_blocks or block in self.fes:
                    raise UdfDamage(f"{path or '/'!r}: UDF folder data overlaps other UDF metadata "
                                    f"(block {block} is read twice)")
                self.folder_blocks.add(block)
            data = self.read(at, n)
            if len(data) < n:
                raise UdfDamage(f"truncated: {path or '/'!r} lies past the end of the image")
            parts.append(data)
        return b"".join(parts)

    def identifiers(self, path: str, data: bytes) -> list[tuple[str, int, int]]:
        """(name, characteristics, File Entry block) of each live, non-parent identifier (4/14.4)."""
        out: list[tuple[str, int, int]] = []
        pos = 0
        while pos < len(data):
            if len(data) - pos < 38 or not _tag_ok(data, _TAG_FID, pos):
                raise UdfDamage(f"{path or '/'!r}: a damaged UDF File Identifier at byte {pos} of the folder")
            chars, l_fi = data[pos + 18], data[pos + 19]
            block, partition = struct.unpack_from("<IH", data, pos + 24)
            l_iu = struct.unpack_from("<H", data, pos + 36)[0]
            end = pos + 38 + l_iu + l_fi
            if end > len(data):
                raise UdfDamage(f"{path or '/'!r}: a UDF File Identifier runs past the end of its folder")
            raw_name = data[pos + 38 + l_iu:end]
            pos = (end + 3) // 4 * 4
            if chars & (_FID_PARENT | _FID_DELETED):
                continue
            if partition != 0:
                raise UdfDamage(f"{path or '/'!r}: a UDF File Identifier points into partition {partition}")
            out.append((self._name(path, raw_name), chars, block))
        return out

    def _name(self, folder: str, raw: bytes) -> str:
        codec = _NAME_CODECS.get(raw[0]) if raw else None
        if codec is None:
            raise UdfDamage(f"a name in {folder or '/'!r} has an unknown UDF encoding")
        try:
            return raw[1:].decode(codec)
        except UnicodeDecodeError:
            raise UdfUnsafe(f"a UDF name in {folder or '/'!r} is not valid UTF-16: {raw[1:]!r}") from None

    def walk(self) -> list[UdfItem]:
        out: list[UdfItem] = []
        files: list[UdfItem] = []
        root = self.fe("/", self.vol.root_block)
        if root.file_type != _TYPE_DIR:
            raise UdfDamage("the UDF root is not a folder")
        seen_dirs = {root.block}
        stack: list[tuple[str, _Fe]] = [("", root)]
        while stack:
            prefix, folder = stack.pop()
            names: set[str] = set()
            for name, chars, block in self.identifiers(prefix.rstrip("/"), self.folder_data(prefix.rstrip("/"),
                                                                                           folder)):
                path = f"{prefix}{name}"
                problem = self.name_problem(name)
                if problem:
                    raise UdfUnsafe(f"unsafe name {path!r} in the ISO: {problem}")
                if name in names:
                    raise UdfUnsafe(f"{path!r} appears twice in one folder")
                names.add(name)
                fe = self.fe(path, block)
                if fe.file_type == _TYPE_DIR or chars & _FID_DIR:
                    if fe.file_type != _TYPE_DIR:
                        raise UdfDamage(f"{path!r}: marked a folder, but its UDF File Entry is not one")
                    if fe.block in seen_dirs:
                        raise UdfDamage(f"{path!r}: folders form a loop")
                    seen_dirs.add(fe.block)
                    out.append(UdfItem(path, EntryKind.DIR))
                    stack.append((f"{path}/", fe))
                elif fe.file_type == _TYPE_FILE:
                    item = UdfItem(path, EntryKind.FILE, fe.extents)
                    out.append(item)
                    if not fe.inline:
                        files.append(item)
                elif fe.file_type == _TYPE_SYMLINK:
                    out.append(UdfItem(path, EntryKind.SYMLINK))
                else:
                    out.append(UdfItem(path, EntryKind.OTHER))
        self._check_files_outside_metadata(files)
        return out

    def _check_files_outside_metadata(self, files: list[UdfItem]) -> None:
        """A file's data must not be the file set, a File Entry or folder data: reading it would leak them."""
        bs, start = self.vol.block_size, self.vol.part_start
        meta = sorted(self.folder_blocks | set(self.fes))
        for item in files:
            for at, n in item.extents:
                first = at // bs - start
                last = first + max(1, -(-n // bs))  # exclusive
                i = bisect.bisect_left(meta, first)
                if i < len(meta) and meta[i] < last:
                    raise UdfDamage(f"{item.path!r}: its data lies on UDF metadata (partition block {meta[i]})")


def walk_udf(vol: UdfVolume, read: Callable[[int, int], bytes],
             name_problem: Callable[[str], str | None]) -> list[UdfItem]:
    """Every folder, file, symlink and special file under the UDF root, names checked, in walk order.

    ``read(offset, size)`` reads image bytes; ``name_problem(name)`` says why a name is unsafe
    (None when fine). Raises :class:`UdfDamage` or :class:`UdfUnsafe`.
    """
    return _Walker(vol, read, name_problem).walk()
