"""Read an ISO image as a :class:`~aero_media.sources.tree.Tree`, without mounting or extracting it.

virtio-win ISOs come in two shapes (docs/upstream.md#iso-file-systems): since
0.1.173-9 ``mkisofs -r -iso-level 4`` (ISO 9660 + Rock Ridge, no Joliet), before
that ``-r -J`` (Rock Ridge + Joliet). Names are taken from Rock Ridge when the
image has it, else Joliet, else the primary ISO 9660 tree (``;1`` and the
trailing dot of extension-less names removed); :attr:`IsoTree.reader` says which.

A disc with a UDF file system is read through UDF first (reader ``"udf"``), as
Windows reads it: Microsoft's Windows DVDs are mastered UDF-first (oscdimg
``-u2``), and their ISO 9660 side is a stub holding a ``README.TXT`` and the boot
images. pycdlib parses the UDF 1.02 to 2.60 volume descriptors and
:mod:`.udfwalk` walks the tree, bounded (why, and what it reads, is in
docs/design.md, "Reading UDF"); each file's allocation descriptors become its
extents, so a file of 1 GiB or more (several descriptors) streams like a
multi-extent ISO 9660 file.

The image is untrusted input:

* names that could escape an output folder (empty, ``.``, ``..``, or containing
  ``/``, ``\\`` or NUL) make :meth:`IsoTree.entries` raise
  :class:`~aero_media.errors.UnsafePathError`, as do two entries with the same name
  in one folder. Names that are merely unusable on Windows, and names that differ
  only by case, are *reported* unchanged; the caller checks those for the files
  it selects (:func:`aero_media.winnames.check_relpath`,
  :func:`aero_media.winnames.check_no_case_clash`);
* Rock Ridge symlinks are listed with kind ``symlink`` and never followed;
* a damaged, truncated or foreign file raises :class:`~aero_media.errors.SourceError`
  with one line naming the file, never a pycdlib traceback. A file whose extent
  runs past the end of the image is caught by :meth:`IsoTree.entries`, and a
  short read while streaming (the image shrank after listing) by :meth:`IsoTree.open`.

pycdlib parses the volume descriptors and every directory record once at open
(milliseconds, even for a 600 MB image); file data is read on demand in 1 MiB
chunks straight from the image, so memory stays flat.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import stat
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from ..errors import SourceError, UnsafePathError
from .tree import Entry, EntryKind
from .udfwalk import UdfDamage, UdfUnsafe, UdfVolume, walk_udf

SECTOR = 2048
CHUNK = 1024 * 1024
READERS = ("udf", "rr", "joliet", "iso9660")
"""Name spaces in order of preference."""

_REFETCH_HINT = "re-download the ISO (the download may be incomplete or damaged) and check the path"
_HOSTILE_HINT = "do not use this image: download virtio-win again from the official site"
_VERSION_SUFFIX = re.compile(r";[0-9]*$")
# What pycdlib's record accessors raise on malformed records while we walk them
# (parsing at open is wrapped more broadly). Our own errors pass through.
_PARSE_ERRORS = (PyCdlibException, struct.error, ValueError, IndexError, KeyError, AttributeError,
                 UnicodeDecodeError, RecursionError, OverflowError, TypeError)

_SERIALS = itertools.count(1)  # unlike id(), never reused within a process
_MULTI_EXTENT = 0x80  # ISO 9660 file flag: more records follow for the same file
_ASSOCIATED = 0x04    # ISO 9660 file flag: "associated file" (e.g. a Mac resource fork)


@dataclass(frozen=True)
class IsoRef:
    """Where an entry's bytes live in the image; stored in :attr:`Entry.ref`."""

    owner: int
    """Serial number of the :class:`IsoTree` that listed it, so entries cannot cross trees."""
    offset: int
    """Byte offset of the file data in the image."""
    size: int
    symlink_target: str | None = None
    """Rock Ridge symlink target, for messages only (never followed)."""
    more: tuple[tuple[int, int], ...] = ()
    """(offset, size) of each further extent of a multi-extent file, in order (``offset``/``size`` hold its first)."""

    @property
    def extents(self) -> tuple[tuple[int, int], ...]:
        """Every (offset, size) piece of the file's data, in order; ``size`` of the entry is their sum."""
        return ((self.offset, self.size - sum(n for _, n in self.more)), *self.more)


def _display_error(display: str, what: str, hint: str = _REFETCH_HINT) -> SourceError:
    return SourceError(f"{display}: {what}", hint)


def _read_volume_descriptors(fp: BinaryIO, display: str) -> list[bytes]:
    """Return the raw volume descriptors (sector 16 up to the set terminator)."""
    out: list[bytes] = []
    # Real images have 2-5 descriptors; the cap stops a hostile image without a
    # terminator from making us scan it all.
    for index in range(16, 16 + 64):
        fp.seek(index * SECTOR)
        block = fp.read(SECTOR)
        if len(block) < SECTOR or block[1:6] != b"CD001":
            break
        out.append(block)
        if block[0] == 255:
            break
    if not out or not any(b[0] == 1 for b in out):
        raise _display_error(display, "not an ISO 9660 image (no primary volume descriptor at sector 16)")
    return out


def _namespaces_of(iso: pycdlib.PyCdlib) -> tuple[str, ...]:
    found = []
    if iso.has_udf():
        found.append("udf")
    if iso.has_rock_ridge():
        found.append("rr")
    if iso.has_joliet():
        found.append("joliet")
    found.append("iso9660")
    return tuple(found)


def _decode_name(raw: bytes, space: str) -> str:
    if space == "joliet":
        # Joliet is UCS-2 big-endian; a bad surrogate is damage, not a name.
        return raw.decode("utf-16-be")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # upstream builds with -input-charset iso8859-1; latin-1 maps every byte.
        return raw.decode("latin-1")


def _name_problem(name: str) -> str | None:
    """Why ``name`` could escape a folder or is not a name at all; None when it is fine."""
    if name == "":
        return "an empty name is not a file name"
    if name in (".", ".."):
        return f"{name!r} as a name points at a folder, not at an entry in it"
    if "/" in name:
        return "a '/' inside a name can point outside the output folder"
    if "\\" in name:
        return "a '\\' inside a name can point outside the output folder on Windows"
    if "\x00" in name:
        return "a NUL byte inside a name cuts it short"
    return None


class _UdfFault(Exception):
    """pycdlib failed on the UDF volume descriptors (the ISO 9660 side parsed)."""


class _DescriptorsOnly(pycdlib.PyCdlib):
    """pycdlib with its UDF directory walk left out: :mod:`.udfwalk` walks the tree, bounded.

    pycdlib 1.22's walk reads what each identifier's ICB claims (up to 1 GiB) and re-reads a
    folder once per repeated allocation descriptor (docs/design.md, "Reading UDF").
    """

    def _parse_udf_descriptors(self) -> None:
        try:
            super()._parse_udf_descriptors()
        except Exception as exc:
            raise _UdfFault(_short(exc)) from None

    def _walk_udf_directories(self, extent_to_inode: Any) -> None:
        return None


class IsoTree:
    """An ISO image opened read-only; the ISO twin of :class:`aero_media.sources.tree.DirTree`.

    Use as a context manager so the image is closed::

        with IsoTree.open_path(Path("virtio-win-0.1.285.iso")) as tree:
            for entry in tree.entries():
                ...
                with tree.open(entry) as fp:
                    fp.read(CHUNK)

    ``reader`` is ``"rr"``, ``"joliet"`` or ``"iso9660"``; ``namespaces`` lists all
    that exist; ``volume_label`` is the PVD volume identifier.
    """

    def __init__(self, fp: BinaryIO, iso: pycdlib.PyCdlib, display: str, reader: str, size: int,
                 declared: int) -> None:
        # Use open_path(); this only wires up an already-parsed image.
        self._fp = fp
        self._iso = iso
        self._lock = threading.Lock()  # one file position shared by all open entries
        self._entries: list[Entry] | None = None
        self._size = size
        self._declared = declared
        self._serial = next(_SERIALS)
        self.display = display
        self.reader = reader
        self.namespaces = _namespaces_of(iso)
        self.volume_label = iso.pvd.volume_identifier.decode("latin-1").rstrip(" \x00")
        self.block_size = iso.logical_block_size

    # -- opening and closing -------------------------------------------------

    @classmethod
    def open_path(cls, path: Path, display: str | None = None, *, reader: str | None = None) -> IsoTree:
        """Open the ISO at ``path``; ``display`` names it in messages (default: the file name).

        ``reader`` forces a name space (``"udf"``, ``"rr"``, ``"joliet"``, ``"iso9660"``)
        instead of the best available one; asking for an absent one is a SourceError.
        Only Rock Ridge knows symlinks: forced to Joliet or ISO 9660 names, an RR
        image shows them as empty files (genisoimage) or not at all (xorriso).
        """
        path = Path(path)
        display = display or path.name
        if reader is not None and reader not in READERS:
            raise ValueError(f"reader must be one of {READERS}, not {reader!r}")
        try:
            fp = open(path, "rb")  # noqa: SIM115 (the tree keeps it open until close())
        except FileNotFoundError:
            raise _display_error(display, "no such file", "check the path to the ISO") from None
        except IsADirectoryError:
            raise _display_error(display, "is a folder, not an ISO file",
                                 "check the path, or give the folder as a directory source") from None
        except OSError as exc:
            raise _display_error(display, f"cannot read: {exc.strerror or exc}",
                                 "check the path and permissions") from None
        try:
            size = os.fstat(fp.fileno()).st_size
            if not stat.S_ISREG(os.fstat(fp.fileno()).st_mode):
                raise _display_error(display, "is not a regular file", "give the path of an .iso file")
            if size < 17 * SECTOR:
                raise _display_error(display, f"not an ISO 9660 image (only {size} bytes)")
            # Our own cheap check first: a clear message for HTML error pages,
            # zip files and the like instead of a pycdlib complaint.
            pvd = next(b for b in _read_volume_descriptors(fp, display) if b[0] == 1)
            # Volume space size x logical block size: what the image says its
            # length is. pycdlib clamps files that run past the end of a short
            # image without telling, so we compare ourselves.
            declared = struct.unpack_from("<I", pvd, 80)[0] * struct.unpack_from("<H", pvd, 128)[0]
            iso = _DescriptorsOnly()
            try:
                iso.open_fp(fp)
            except _UdfFault as exc:
                raise _display_error(display, f"damaged UDF file system ({exc})") from None
            except Exception as exc:
                # pycdlib parses untrusted bytes; whatever it raises on them
                # (its own errors, struct/Index/Key errors...) means "damaged".
                raise _display_error(display, f"damaged or not an ISO 9660 image ({_short(exc)})") from None
            spaces = _namespaces_of(iso)
            chosen = reader or spaces[0]
            if chosen not in spaces:
                raise _display_error(display, f"has no {chosen} names (it has: {', '.join(spaces)})",
                                     "pick another reader")
            return cls(fp, iso, display, chosen, size, declared)
        except BaseException:
            fp.close()
            raise

    def close(self) -> None:
        """Release the image. Entries from this tree can no longer be opened."""
        with contextlib.suppress(Exception):
            self._iso.close()
        self._fp.close()

    def __enter__(self) -> IsoTree:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- listing -------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every folder, file, symlink and special file, sorted by path components (parents first).

        Paths are '/'-joined names from :attr:`reader`, in their original case.
        Raises UnsafePathError for a name that could escape the output folder or
        appears twice in one folder, SourceError for a damaged image (including a
        file whose data lies past the end of a truncated image). The result is
        computed once and cached.
        """
        if self._entries is None:
            try:
                self._entries = self._walk()
            except _PARSE_ERRORS as exc:
                raise _display_error(self.display, f"damaged ISO directory ({_short(exc)})") from None
        return list(self._entries)

    def _root(self) -> Any:
        vd = self._iso.joliet_vd if self.reader == "joliet" else self._iso.pvd
        assert vd is not None  # open_fp() succeeded, so the descriptor exists
        return vd.root_directory_record()

    def _name(self, rec: Any) -> str:
        raw = rec.file_identifier()
        if self.reader == "rr" and rec.rock_ridge is not None:
            nm = rec.rock_ridge.name()
            # pycdlib falls back to the file identifier when a record has no NM
            # entry; that one still carries ';1' and must be cleaned like below.
            if nm != raw:
                return _decode_name(nm, "rr")
        # Joliet records, and plain records on an image that has Rock Ridge
        # elsewhere (mixed images), use the file identifier.
        space = "joliet" if self.reader == "joliet" else "iso9660"
        try:
            name = _decode_name(raw, space)
        except UnicodeDecodeError:
            raise UnsafePathError(f"{self.display}: a Joliet name is not valid UTF-16: {raw!r}",
                                  _HOSTILE_HINT) from None
        if not rec.is_dir():
            name = _VERSION_SUFFIX.sub("", name)
            if space == "iso9660" and name.endswith(".") and name not in (".", ".."):
                # ISO 9660 writes 'README' as 'README.;1': the dot is not part of the name.
                name = name[:-1]
        return name

    def _kind(self, rec: Any) -> tuple[EntryKind, str | None]:
        rr = rec.rock_ridge if self.reader == "rr" else None
        if rr is not None and rr.is_symlink():
            return EntryKind.SYMLINK, _decode_name(rr.symlink_path(), "rr")
        if rec.is_dir():
            return EntryKind.DIR, None
        if rr is not None:
            try:
                mode = rr.get_file_mode()
            except PyCdlibException:
                mode = None  # no PX entry: an ordinary file
            if mode is not None and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                return EntryKind.OTHER, None  # device, FIFO or socket: nothing to copy
        return EntryKind.FILE, None

    def _children(self, rec: Any) -> Iterator[Any]:
        for child in rec.children:
            if child is None or child.is_dot() or child.is_dotdot():
                continue
            if child.file_flags & _ASSOCIATED:
                continue  # not a file of its own (Linux and Windows hide these too)
            rr = child.rock_ridge if self.reader == "rr" else None
            if rr is not None and rr.relocated_record():
                continue  # a deep folder moved to rr_moved: listed where its CL entry points
            yield child

    def _level(self, prefix: str, rec: Any) -> list[tuple[str, Any, EntryKind, str | None]]:
        """The children of one folder record: (name, record, kind, symlink target), names checked.

        A file's record is the list of its directory records: ISO 9660 level 3 stores a
        file of 4 GiB or more (a Windows 7 SP1 ``install.wim``) in several extents, one
        record each, all with the file's name and all but the last flagged multi-extent
        (ECMA-119 9.1.6); they are one file here, not a name that appears twice.
        """
        names: set[str] = set()
        level: list[tuple[str, Any, EntryKind, str | None]] = []
        for child in self._children(rec):
            last = level[-1][1][-1] if level and level[-1][2] == EntryKind.FILE else None
            if last is not None and last.file_flags & _MULTI_EXTENT:
                if child.file_identifier() != last.file_identifier() or child.is_dir():
                    raise self._unfinished(f"{prefix}{level[-1][0]}")
                level[-1][1].append(child)
                continue
            name = self._name(child)
            shown = f"{prefix}{name}"
            problem = _name_problem(name)
            if problem:
                raise UnsafePathError(f"{self.display}: unsafe name {shown!r} in the ISO: {problem}", _HOSTILE_HINT)
            if name in names:
                raise UnsafePathError(f"{self.display}: {shown!r} appears twice in one folder", _HOSTILE_HINT)
            names.add(name)
            rr = child.rock_ridge if self.reader == "rr" else None
            if rr is not None and rr.child_link_record_exists():
                # Rock Ridge deep-directory relocation: this placeholder file
                # stands for the folder that now lives in rr_moved.
                moved = rr.cl_to_moved_dr
                if moved is None:
                    raise _display_error(self.display, f"{shown!r}: broken Rock Ridge relocation link")
                level.append((name, moved, EntryKind.DIR, None))
            else:
                kind, target = self._kind(child)
                level.append((name, [child] if kind == EntryKind.FILE else child, kind, target))
        if level and level[-1][2] == EntryKind.FILE and level[-1][1][-1].file_flags & _MULTI_EXTENT:
            raise self._unfinished(f"{prefix}{level[-1][0]}")
        return level

    def _unfinished(self, path: str) -> SourceError:
        return _display_error(self.display, f"{path!r} is stored in several extents (as ISO 9660 level 3 stores "
                              "files of 4 GiB or more), but the record of its last extent is missing")

    def _file_entry(self, path: str, records: list[Any], cut: list[tuple[int, str]]) -> Entry:
        extents = [(r.extent_location() * self.block_size, r.get_data_length()) for r in records]
        for offset, size in extents:
            # pycdlib shortens (even to a negative length) any file that runs past the
            # end of the image; in an image shorter than it declares, a file reaching
            # the end is such a file.
            if size < 0 or (self._size < self._declared and offset + size >= self._size):
                cut.append((offset, path))
                break
        total = sum(size for _, size in extents)
        return Entry(path, EntryKind.FILE, total,
                     IsoRef(self._serial, extents[0][0], total, more=tuple(extents[1:])))

    def _walk(self) -> list[Entry]:
        if self.reader == "udf":
            return self._walk_udf()
        out: list[Entry] = []
        root = self._root()
        seen_dirs = {root.extent_location()}
        stack: list[tuple[str, Any]] = [("", root)]
        cut: list[tuple[int, str]] = []  # (offset, path) of files past the end of a short image
        while stack:
            prefix, rec = stack.pop()
            for name, child, kind, target in self._level(prefix, rec):
                path = f"{prefix}{name}"
                if kind == EntryKind.DIR:
                    out.append(Entry(path, EntryKind.DIR, 0, IsoRef(self._serial, 0, 0)))
                    if child.extent_location() in seen_dirs:
                        raise _display_error(self.display, f"{path!r}: folders form a loop")
                    seen_dirs.add(child.extent_location())
                    stack.append((f"{path}/", child))
                elif kind == EntryKind.FILE:
                    out.append(self._file_entry(path, child, cut))
                else:
                    out.append(Entry(path, kind, 0, IsoRef(self._serial, 0, 0, target)))
        if cut:
            # Lowest offset first: the file the download stopped in.
            listed = ", ".join(repr(p) for _, p in sorted(cut)[:3]) + (", ..." if len(cut) > 3 else "")
            raise _display_error(self.display, f"truncated: the image has {self._size} bytes but declares "
                                 f"{self._declared}; {len(cut)} file(s) are cut off: {listed}")
        self._check_root_moved(out)
        # Parents before children, folder by folder in name order: stable output
        # whatever order the image stores its records in.
        out.sort(key=lambda e: e.parts)
        return out

    # -- UDF -------------------------------------------------------------------

    def _walk_udf(self) -> list[Entry]:
        """The UDF tree, walked by our own bounded parser (pycdlib parsed the volume descriptors only)."""
        iso = self._iso
        part = iso.udf_main_descs.partitions[0]
        root = iso.udf_file_set.root_dir_icb
        if root.part_ref_num != 0:
            raise _display_error(self.display, "damaged UDF file system (its root lies in another partition)")
        vol = UdfVolume(self.block_size, part.part_start_location, part.part_length, root.log_block_num,
                        self._size)
        try:
            items = walk_udf(vol, self._pread, _name_problem)
        except UdfUnsafe as exc:
            raise UnsafePathError(f"{self.display}: {exc}", _HOSTILE_HINT) from None
        except UdfDamage as exc:
            raise _display_error(self.display, str(exc)) from None
        out = []
        for item in items:
            first = item.extents[0] if item.extents else (0, 0)
            size = sum(n for _, n in item.extents)
            target = "(a UDF symlink)" if item.kind == EntryKind.SYMLINK else None
            out.append(Entry(item.path, item.kind, size,
                             IsoRef(self._serial, first[0], size, target, more=tuple(item.extents[1:]))))
        out.sort(key=lambda e: e.parts)
        return out

    def _check_root_moved(self, out: list[Entry]) -> None:
        # Rock Ridge images with relocated folders keep an 'rr_moved' folder at
        # the root whose contents are shown at their real place; once they are
        # skipped it is empty, and listing it would only confuse users.
        if self.reader != "rr":
            return
        for entry in list(out):
            if (entry.kind == EntryKind.DIR and "/" not in entry.path and entry.path.lower() == "rr_moved"
                    and not any(e.path.startswith(entry.path + "/") for e in out)):
                out.remove(entry)

    # -- reading -------------------------------------------------------------

    @contextlib.contextmanager
    def open(self, entry: Entry) -> Iterator[BinaryIO]:
        """Open a file entry from :meth:`entries` for streaming reads.

        Reads go straight to the image (no temp copy); a read that ends before
        ``entry.size`` bytes raises SourceError rather than returning short data.
        """
        ref = entry.ref
        if not isinstance(ref, IsoRef) or ref.owner != self._serial:
            raise ValueError(f"{entry.path!r} was not listed by this IsoTree")
        if entry.kind != EntryKind.FILE:
            what = f"a symlink to {ref.symlink_target!r}" if entry.kind == EntryKind.SYMLINK else f"a {entry.kind}"
            raise _display_error(self.display, f"{entry.path!r} is {what}, not a file",
                                 "symlinks and special files on the ISO are never followed or copied")
        if self._fp.closed:
            raise ValueError(f"{self.display} is closed")
        reader = _ExtentReader(self, entry.path, ref.extents)
        try:
            yield reader  # type: ignore[misc]
        finally:
            reader.close()

    def _pread(self, offset: int, size: int) -> bytes:
        with self._lock:
            self._fp.seek(offset)
            return self._fp.read(size)


class _ExtentReader(io.RawIOBase):
    """A read-only stream over one file's extents, in order; short reads are errors."""

    def __init__(self, tree: IsoTree, path: str, extents: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        self._tree = tree
        self._path = path
        self._extents = extents
        self._size = sum(size for _, size in extents)
        self._pos = 0

    def _at(self, pos: int) -> tuple[int, int]:
        """Image offset of file position ``pos`` and how many bytes its extent holds from there."""
        start = 0
        for offset, size in self._extents:
            if pos < start + size:
                return offset + pos - start, start + size - pos
            start += size
        return 0, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        offset, left = self._at(self._pos)
        want = min(len(view), left, CHUNK)  # never across an extent's end: the next one lies elsewhere
        if want <= 0:
            return 0
        try:
            data = self._tree._pread(offset, want)
        except (OSError, ValueError) as exc:
            raise _display_error(self._tree.display, f"{self._path!r}: read failed: {exc}") from None
        if len(data) < want:
            # pycdlib would hand back the short data silently; an extracted
            # driver missing its tail must never reach the media.
            got = self._pos + len(data)
            raise _display_error(self._tree.display, f"truncated: {self._path!r} ends after {got} of "
                                 f"{self._size} bytes")
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        # Read up to one chunk per call (callers loop until b''), so a caller
        # asking for "everything" on a large file still gets it in pieces
        # internally, never more than the file holds.
        if size is None or size < 0:
            return self.readall()
        buf = bytearray(min(size, self._size - self._pos, CHUNK))
        n = self.readinto(buf)
        return bytes(buf[:n])

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(CHUNK):
            parts.append(chunk)
        return b"".join(parts)

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(base + pos, self._size))
        return self._pos

    def tell(self) -> int:
        return self._pos


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]
