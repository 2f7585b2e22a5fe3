"""A thin, typed wrapper over ``wimlib-imagex``: list images, check they are Windows 7, extract, update.

wimlib has no Python binding (PyPI's "WIMLib" is unrelated) and streams every
operation, so this module only builds command lines and parses what comes back;
a WIM is never read into memory here. ``wimmount`` needs FUSE, which build
machines often lack, so changes go through ``extract`` → edit → ``update``
(docs/upstream.md#libraries-and-tools).

Paths inside a WIM are case-sensitive for wimlib, Windows' are not: every call
sets ``WIMLIB_IMAGEX_IGNORE_CASE=1`` so ``windows/system32/config/SYSTEM``
finds ``Windows\\System32\\config\\SYSTEM`` as Windows would.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import log, systools
from ..errors import DiskError, SourceError, ToolError
from ..fsutil import atomic_path, copy_fp_hashed
from ..log import Progress
from ..spec.types import Arch

TOOL = "wimlib-imagex"
_ENV = {"WIMLIB_IMAGEX_IGNORE_CASE": "1"}
_PURPOSE = "servicing Windows images reads and updates their WIM files with it"
# XML ARCH codes (PROCESSOR_ARCHITECTURE_*): 0 = x86, 9 = amd64; 6 (ia64) and 12 (arm64) are never Windows 7 client.
ARCH_CODES = {0: Arch.X86, 9: Arch.AMD64}
WINDOWS7 = (6, 1)
# wimlib's update command parser splits on blanks and honours quotes but has no escapes.
_UNSAFE_IN_COMMAND = re.compile(r"[\"'\r\n\0]")
_GLOB = re.compile(r"[*?\[\]]")
_WIMLIB_ERR_PATH_DOES_NOT_EXIST = 49


@dataclass(frozen=True)
class WimImage:
    """One image of a WIM, from its XML metadata (``None`` where the XML does not say)."""

    index: int
    name: str
    arch_code: int | None
    major: int | None
    minor: int | None
    build: int | None
    sp_build: int | None
    edition: str | None
    boot: bool
    """This is the WIM's boot image (the header's boot index): boot.wim's Setup image."""
    edition_id: str | None = None
    """``WINDOWS/EDITIONID`` alone (``WindowsPE`` for boot.wim's images), without the FLAGS fallback."""

    @property
    def arch(self) -> Arch | None:
        """The Windows architecture, if the ARCH code is one Windows 7 has."""
        return ARCH_CODES.get(self.arch_code) if self.arch_code is not None else None

    @property
    def version(self) -> str:
        """``major.minor.build`` as far as known (``?`` for what is missing)."""
        return ".".join("?" if v is None else str(v) for v in (self.major, self.minor, self.build))

    def describe(self) -> str:
        """A short name for messages: index and name."""
        return f"image {self.index} ({self.name or 'no name'})"


def _int(elem: ET.Element | None) -> int | None:
    if elem is None or elem.text is None:
        return None
    text = elem.text.strip()
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


def parse_info_xml(xml_text: str, boot_index: int) -> list[WimImage]:
    """Parse the XML of ``wimlib-imagex info WIM --xml`` (decoded) into images, ordered by index."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise SourceError(f"the WIM's XML metadata is not well-formed ({exc})",
                          "the WIM is damaged: take it from an intact Windows 7 ISO") from None
    out = []
    for elem in root.findall("IMAGE"):
        index = int(elem.get("INDEX", "0"))
        version = elem.find("WINDOWS/VERSION")
        name = elem.findtext("NAME") or elem.findtext("DISPLAYNAME") or ""
        out.append(WimImage(
            index=index, name=name.strip(),
            arch_code=_int(elem.find("WINDOWS/ARCH")),
            major=_int(version.find("MAJOR")) if version is not None else None,
            minor=_int(version.find("MINOR")) if version is not None else None,
            build=_int(version.find("BUILD")) if version is not None else None,
            sp_build=_int(version.find("SPBUILD")) if version is not None else None,
            edition=(elem.findtext("WINDOWS/EDITIONID") or elem.findtext("FLAGS") or None),
            boot=index == boot_index,
            edition_id=(elem.findtext("WINDOWS/EDITIONID") or "").strip() or None,
        ))
    return sorted(out, key=lambda i: i.index)


def _decode_xml(data: bytes) -> str:
    # wimlib prints the XML as stored: UTF-16LE with a BOM.
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    return data.decode("utf-8", "replace")


def boot_index(wim: Path) -> int:
    """The header's boot index (0: none), from ``wimlib-imagex info WIM --header``."""
    out = systools.run(TOOL, ["info", os.fspath(wim), "--header"], purpose=_PURPOSE, env=_ENV,
                      what=f"reading {wim.name}").out
    match = re.search(r"^Boot Index\s*=\s*(\d+)", out, re.M)
    if match is None:
        raise ToolError(f"{TOOL} info --header printed no boot index for {wim.name}",
                        "install wimtools 1.13 or newer")
    return int(match.group(1))


def images(wim: Path) -> list[WimImage]:
    """Every image of ``wim`` with its index, name, arch, version and boot flag."""
    out = systools.run(TOOL, ["info", os.fspath(wim), "--xml"], purpose=_PURPOSE, env=_ENV, what=f"reading {wim.name}",
                       hint="give the sources\\boot.wim or sources\\install.wim of an intact Windows 7 ISO").stdout
    xml_text = _decode_xml(out)
    return parse_info_xml(xml_text, boot_index(wim))


def check_windows7(found: Sequence[WimImage], arch: Arch, where: str = "the WIM") -> None:
    """Raise a one-line :class:`SourceError` unless every image is Windows 6.1 (Windows 7) for ``arch``."""
    if not found:
        raise SourceError(f"{where} has no images", "give the WIM of a Windows 7 ISO")
    problems = []
    for image in found:
        if (image.major, image.minor) != WINDOWS7:
            problems.append(f"{image.describe()} is Windows {image.version}, not 6.1")
        elif image.arch is not arch:
            shown = image.arch.value if image.arch else f"ARCH {image.arch_code}" if image.arch_code is not None \
                else "no ARCH"
            problems.append(f"{image.describe()} is {shown}, not {arch.value}")
    if problems:
        raise SourceError(f"{where} is not Windows 7 {arch.value}: {'; '.join(problems)}",
                          f"give a Windows 7 {arch.x64_name} ISO (or pick the spec's other arch)")


def _wim_path(path: str) -> str:
    """A path inside an image, as wimlib takes it: forward slashes, rooted."""
    clean = "/" + path.replace("\\", "/").strip("/")
    if _UNSAFE_IN_COMMAND.search(clean):
        raise SourceError(f"path {path!r} has a quote or control character, which wimlib's commands cannot carry",
                          "rename the file")
    return clean


def extract(wim: Path, index: int, paths: Iterable[str], dest: Path, *, missing_ok: bool = False) -> list[Path]:
    """Extract ``paths`` of image ``index`` under ``dest`` (keeping their folders); return what exists there.

    ``missing_ok`` skips paths the image lacks (wimlib's ``--nullglob``); each
    returned path has the image's own case (found case-insensitively).
    """
    wanted = [_wim_path(p) for p in paths]
    if missing_ok and any(_GLOB.search(p) for p in wanted):
        raise SourceError(f"cannot look up {wanted} with missing_ok: a name has a wildcard character",
                          "extract it with missing_ok=False")
    dest.mkdir(parents=True, exist_ok=True)
    args = ["extract", os.fspath(wim), str(index), *wanted, "--dest-dir", os.fspath(dest),
            "--preserve-dir-structure", "--no-acls", "--nullglob" if missing_ok else "--no-globs"]
    _with_progress(f"extract from {wim.name} image {index}", args, what=f"extracting from {wim.name} image {index}",
                   hint=f"check that image {index} has {', '.join(wanted)} (wimlib-imagex dir) and that the WIM "
                        "is intact")
    found = [(w, p) for w, p in ((w, find_case_insensitive(dest, w)) for w in wanted) if p is not None]
    for stored, path in found:
        _refuse_unless_regular(dest, path, f"{wim.name} image {index}: {stored}")
    return [p for _, p in found]


MAX_EDITED = 256 * 1024 * 1024
"""Largest file we take out of an image to edit (a fresh image's SOFTWARE hive is tens of MiB)."""


def _refuse_unless_regular(root: Path, path: Path, what: str) -> None:
    """An image is untrusted: what we read and edit must be a plain file (or folder) in ``root``, not a link out."""
    here = root
    for part in path.relative_to(root).parts:
        here = here / part
        st = os.lstat(here)
        if stat.S_ISLNK(st.st_mode):
            raise SourceError(f"{what} is a symbolic link (or a folder on the way to it is); a link in the image "
                              "could make servicing read a file of this machine",
                              "use an intact Windows 7 image, whose system files are plain files")
    if stat.S_ISDIR(st.st_mode):
        for inner in path.rglob("*"):  # rglob does not follow links into folders
            if inner.is_symlink() or not (inner.is_file() or inner.is_dir()):
                raise SourceError(f"{what}: {inner.relative_to(path).as_posix()} is a link or a special file",
                                  "use an intact Windows 7 image, whose system files are plain files")
        return
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"{what} is not a file", "use an intact Windows 7 image, whose system files are plain files")
    if st.st_size > MAX_EDITED:
        raise SourceError(f"{what} is {st.st_size} bytes, far more than such a file holds",
                          "use an intact Windows 7 image")


def find_case_insensitive(root: Path, rel: str) -> Path | None:
    """The path under ``root`` that matches ``rel`` ignoring case (as Windows would), or None."""
    here = root
    for part in [p for p in rel.replace("\\", "/").split("/") if p]:
        exact = here / part
        if exact.exists():
            here = exact
            continue
        try:
            matches = [e for e in here.iterdir() if e.name.lower() == part.lower()]
        except (NotADirectoryError, FileNotFoundError):
            return None
        if not matches:
            return None
        here = matches[0]
    return here


@dataclass(frozen=True)
class Add:
    """``add SRC DEST``: copy a local file or folder into the image (replacing what is there)."""

    source: Path
    dest: str

    def line(self) -> str:
        """The update command line."""
        return f"add \"{_local(self.source)}\" \"{_wim_path(self.dest)}\""


@dataclass(frozen=True)
class Delete:
    """``delete PATH``: remove a file (or, with ``recursive``, a folder) from the image."""

    path: str
    recursive: bool = False
    force: bool = False
    """No error when the path is absent."""

    def line(self) -> str:
        """The update command line."""
        flags = (" --recursive" if self.recursive else "") + (" --force" if self.force else "")
        return f"delete{flags} \"{_wim_path(self.path)}\""


Command = Add | Delete


def require_plain_path(folder: Path) -> None:
    """Refuse, before any work, a working folder that wimlib's update commands could not name."""
    _local(folder)


def _local(path: Path) -> str:
    text = os.fspath(path)
    if _UNSAFE_IN_COMMAND.search(text):
        raise SourceError(f"local path {text!r} has a quote or control character, which wimlib's commands cannot "
                          "carry", "build in a folder with a plain name")
    return text


def stored_path(wim: Path, index: int, path: str) -> str | None:
    """``path`` as image ``index`` spells it (found ignoring case), or None when it is absent."""
    lines = systools.run(TOOL, ["dir", os.fspath(wim), str(index), f"--path={_wim_path(path)}", "--one-file-only"],
                         purpose=_PURPOSE, env=_ENV, what=f"looking up {path} in {wim.name}",
                         ok_codes=(0, _WIMLIB_ERR_PATH_DOES_NOT_EXIST)).out.splitlines()
    return lines[0] if lines else None


def content_hash(wim: Path, index: int, path: str) -> str | None:
    """The SHA-1 wimlib keeps for the data of file ``path`` in image ``index`` (``""``: it has none), None if absent.

    Read from the WIM's metadata (``dir --detailed``), so a file shared by several images
    (a DVD's editions carry one ``winre.wim``) is known as the same without extracting it.
    """
    out = systools.run(TOOL, ["dir", os.fspath(wim), str(index), f"--path={_wim_path(path)}", "--one-file-only",
                              "--detailed"], purpose=_PURPOSE, env=_ENV, what=f"looking up {path} in {wim.name}",
                       ok_codes=(0, _WIMLIB_ERR_PATH_DOES_NOT_EXIST))
    if out.returncode == _WIMLIB_ERR_PATH_DOES_NOT_EXIST or not out.out.strip():
        return None
    # The first stream listed is the unnamed (main) data stream; a folder or an empty file has no hash.
    match = re.search(r"^\s*Hash\s*=\s*(?:0x)?([0-9a-fA-F]{40})\s*$", out.out, re.M)
    digest = match.group(1).lower() if match else ""
    return "" if digest.strip("0") == "" else digest  # wimlib shows a folder's missing hash as zeros


def listing(wim: Path, index: int) -> dict[str, str | None]:
    """Every path of image ``index``, as :func:`resolve` keeps them: lower case without the leading ``/`` -> as stored.

    One ``wimlib-imagex dir``: each run loads the image's whole metadata resource (tens
    of MB for a Windows 7 edition), so listing it once beats looking paths up one by one.
    """
    out = systools.run(TOOL, ["dir", os.fspath(wim), str(index)], purpose=_PURPOSE, env=_ENV,
                       what=f"listing {wim.name} image {index}").out
    return {line.strip("/").lower(): line for line in out.splitlines() if line.strip("/")}


def resolve(wim: Path, index: int, path: str, known: dict[str, str | None] | None = None) -> str:
    """``path`` with the part that exists in the image spelled as the image spells it.

    wimlib, even with ``WIMLIB_IMAGEX_IGNORE_CASE``, gives a file it replaces
    the name of the command's path: ``add x /windows/system32/config/system``
    would rename ``SYSTEM``. Windows would not care, but an image should keep
    its own names. ``known`` is the image's :func:`listing` (a path it lacks is absent);
    without it each prefix is looked up with :func:`stored_path`.
    """
    parts = [p for p in _wim_path(path).split("/") if p]
    for cut in range(len(parts), 0, -1):
        prefix = "/".join(parts[:cut])
        found = known.get(prefix.lower()) if known is not None else stored_path(wim, index, prefix)
        if found is not None:
            return "/".join([found.rstrip("/"), *parts[cut:]])
    return "/" + "/".join(parts)


def update(wim: Path, index: int, commands: Sequence[Command]) -> None:
    """Apply ``commands`` to image ``index`` in one ``wimlib-imagex update`` call (commands on stdin).

    Each ``add`` destination keeps the image's own spelling (:func:`resolve`).
    The WIM is changed in place (wimlib appends and rewrites its tables), so pass
    a working copy (:func:`working_copy`), never the user's file.
    """
    if not commands:
        return
    known = listing(wim, index) if any(isinstance(c, Add) for c in commands) else None
    fixed = [Add(c.source, resolve(wim, index, c.dest, known)) if isinstance(c, Add) else c for c in commands]
    script = "".join(c.line() + "\n" for c in fixed)
    _with_progress(f"update {wim.name} image {index}", ["update", os.fspath(wim), str(index)],
                   what=f"updating {wim.name} image {index}", stdin=script.encode("utf-8", "surrogateescape"))


def _with_progress(label: str, args: Sequence[str], *, what: str, hint: str = "", stdin: bytes | None = None) -> None:
    """Run wimlib-imagex with its own progress ("Archiving file data: 3 MiB of 19 MiB (15%) done") shown as ours,
    and a line now and then while it prints none (writing its tables)."""
    with log.working(label) as progress:
        systools.stream(TOOL, args, progress.tell, purpose=_PURPOSE, env=_ENV, what=what, hint=hint, stdin=stdin,
                        with_stdout=True)


MARGIN = 512 * 1024 * 1024
"""Room kept free beyond a WIM copy: extracted hives and drivers, and what ``update`` appends."""


def require_space(folder: Path, needed: int, what: str) -> None:
    """Raise :class:`DiskError` before starting when ``folder``'s file system has less than ``needed`` bytes free."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise DiskError(f"{folder}: {free // 2**20} MiB free, {what} needs {needed // 2**20} MiB",
                        "free space there or point the build folder at a larger disk")


def require_space_for_copy(wim: Path, folder: Path, margin: int = MARGIN) -> None:
    """Refuse before copying when ``folder`` cannot hold a copy of ``wim`` plus ``margin``."""
    require_space(folder, wim.stat().st_size + margin, f"a working copy of {wim.name}")


def working_copy(wim: Path, folder: Path, margin: int = MARGIN, name: str | None = None) -> Path:
    """Copy ``wim`` into ``folder`` (as ``name``, default its own) after the free-space check; return the copy."""
    require_space_for_copy(wim, folder, margin)
    final = folder / (name or wim.name)
    progress = Progress(f"copying {wim.name}", wim.stat().st_size)
    with atomic_path(final) as tmp, open(wim, "rb") as src, open(tmp, "wb") as dst:
        copy_fp_hashed(src, dst, lambda n: progress.advance(n))
    progress.close()
    return final


def data_hashes(wim: Path, index: int, paths: Iterable[str]) -> set[str]:
    """The SHA-1s (hex) of every data stream of ``paths`` in image ``index`` (a path it lacks adds none).

    One ``dir --detailed`` per folder the paths are in, read from the image's metadata
    alone: what a sparse working copy (:mod:`.wimsparse`) must hold before they are extracted.
    """
    wanted: dict[str, set[str]] = {}
    for p in paths:
        clean = _wim_path(p)
        wanted.setdefault(clean.rsplit("/", 1)[0] or "/", set()).add(clean.lower())
    found: set[str] = set()
    for folder, names in sorted(wanted.items()):
        out = systools.run(TOOL, ["dir", os.fspath(wim), str(index), f"--path={folder}", "--detailed"],
                           purpose=_PURPOSE, env=_ENV, what=f"looking up {folder} in {wim.name}",
                           ok_codes=(0, _WIMLIB_ERR_PATH_DOES_NOT_EXIST))
        for entry in re.split(r"^Full Path\s*=\s*", out.out, flags=re.M)[1:]:
            path = entry.split("\n", 1)[0].strip().strip('"').lower()
            if path in names:
                found.update(h.lower() for h in re.findall(r"^\s*Hash\s*=\s*(?:0x)?([0-9a-fA-F]{40})\s*$", entry, re.M)
                             if h.strip("0"))
    return found
