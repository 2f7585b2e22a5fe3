"""Which folders of an input tree hold which driver package: the selection rules.

One small table describes the supported layouts; the same code selects packages
from a directory on disk and from an ISO (both are :class:`~aero_media.sources.tree.Tree`).
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..errors import SourceError, UnsafePathError
from ..manifests import MissingOptional
from ..paths import MediaLayout
from ..spec.model import DriverReq, Spec
from ..spec.types import Arch, OptionalPolicy
from ..winnames import check_no_case_clash, check_relpath, split_relpath
from .tree import Entry, EntryKind

# Folder patterns per layout, tried in order: {driver} the driver folder (matched case-insensitively,
# so 'NetKVM' is driver 'netkvm'), {os} an OS folder from the spec (default: Arch.os_dirs, w7 first), {arch}
# one of Arch.folder_aliases. Root 'amd64/' and 'i386/' auto trees never match the virtio-win layout: they
# start with an arch, not a driver.
LAYOUTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "pack-dir": (
        tuple(MediaLayout.STAGED.value.split("/")),  # an Aero pack is laid out as our staging area
        ("{arch}", "{driver}"),  # a plain pack: x86/<driver>/, amd64/ or x64/ (Aero's FAT image layout)
    ),
    "virtio-win": (("{driver}", "{os}", "{arch}"),),
}

# Never needed on the media: debug symbols.
SKIPPED_SUFFIXES = (".pdb",)

# Root files of an upstream tree that carry licence terms or notices, and those that
# say which release it is (copied beside them, as Aero's extract.py does).
NOTICE_PATTERNS = ("virtio-win_license.txt", "license*", "copying*", "notice*", "eula*", "authors*", "credits*",
                   "readme*")
METADATA_NAMES = ("version", "version.txt", "virtio-win-version.txt")
INFO_JSON = "data/info.json"


@dataclass(frozen=True)
class PackageFile:
    """One file of a selected package: its path inside the package and its tree entry."""

    rel: str
    entry: Entry


@dataclass(frozen=True)
class Package:
    """A driver package chosen for one arch."""

    driver: DriverReq
    arch: Arch
    source_dir: str
    os_dir: str | None
    files: tuple[PackageFile, ...]

    @property
    def staged_dir(self) -> str:
        """Where the package is staged: ``win7/<arch>/<driver>``."""
        return MediaLayout.STAGED.driver_dir(self.arch, self.driver.name)


@dataclass(frozen=True)
class Selection:
    """The outcome of applying the rules to a tree."""

    packages: tuple[Package, ...]
    missing_optional: tuple[MissingOptional, ...]
    warnings: tuple[str, ...]
    notices: tuple[Entry, ...]
    info_json: Entry | None
    metadata: tuple[Entry, ...] = ()

    def for_arch(self, arch: Arch) -> tuple[Package, ...]:
        return tuple(p for p in self.packages if p.arch is arch)


def _candidates(pattern: tuple[str, ...], driver: str, arch: Arch,
                os_dirs: tuple[str, ...]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for os_dir in (os_dirs if "{os}" in pattern else (None,)):
        for alias in arch.folder_aliases:
            parts = [p.format(driver=driver, os=os_dir, arch=alias) for p in pattern]
            out.append(("/".join(parts), os_dir))
    return out


def _index(entries: list[Entry]) -> dict[str, list[Entry]]:
    """Map each casefolded folder path to the entries directly inside it."""
    children: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        parent = e.path.rsplit("/", 1)[0] if "/" in e.path else ""
        children[parent.casefold()].append(e)
    return children


# Every medium keeps a package three folders down (win7/<arch>/<driver>/), and ISO 9660
# allows eight levels of folders: four are left for the package's own subfolders.
MAX_PACKAGE_SUBFOLDERS = 4


def _is_core_file(name: str, driver: str) -> bool:
    """Files a package cannot work without: any INF, and <driver>.sys/.cat."""
    low = name.lower()
    return low.endswith(".inf") or low in (f"{driver}.sys", f"{driver}.cat")


def _package_files(entries_by_dir: dict[str, list[Entry]], folder: Entry, where: str, driver: str,
                   skipped: list[str] | None) -> list[PackageFile]:
    """List a package folder's files; ``skipped`` collects links when they may be skipped, else links fail."""
    files: list[PackageFile] = []
    todo = [folder]
    while todo:
        d = todo.pop()
        for e in entries_by_dir.get(d.path.casefold(), []):
            rel = e.path[len(folder.path) + 1:]
            if e.kind == EntryKind.DIR:
                if rel.count("/") + 1 > MAX_PACKAGE_SUBFOLDERS:
                    raise UnsafePathError(f"{where}: {e.path[:120]!r} is nested more than {MAX_PACKAGE_SUBFOLDERS} "
                                          "folders deep inside its package, deeper than the media can hold",
                                          "remove the deep folders from the input")
                todo.append(e)
            elif e.kind == EntryKind.SYMLINK:
                if skipped is not None and not _is_core_file(e.name, driver):
                    skipped.append(f"{where}: skipped symbolic link {e.path!r} (links are never followed)")
                    continue
                raise UnsafePathError(f"{where}: {e.path!r} is a symbolic link; links are never followed",
                                      "replace the link with the real file in the input")
            elif e.kind != EntryKind.FILE:
                raise UnsafePathError(f"{where}: {e.path!r} is not a regular file", "remove it from the input")
            elif not e.name.lower().endswith(SKIPPED_SUFFIXES):
                check_relpath(rel, where)
                files.append(PackageFile(rel, e))
    check_no_case_clash([f.rel for f in files], f"{where}: {folder.path}")
    return sorted(files, key=lambda f: f.rel.casefold())


def _find_dir(entries_by_dir: dict[str, list[Entry]], path: str, where: str) -> Entry | None:
    """Find a folder by case-insensitive path; two spellings of one folder are ambiguous."""
    parent, _, name = path.rpartition("/")
    matches = [e for e in entries_by_dir.get(parent.casefold(), []) if e.name.casefold() == name.casefold()]
    if not matches:
        return None
    if len(matches) > 1:
        listed = ", ".join(repr(m.path) for m in matches)
        raise UnsafePathError(f"{where}: {listed} differ only by case", "keep one of them in the input")
    if matches[0].kind == EntryKind.SYMLINK:
        raise UnsafePathError(f"{where}: {matches[0].path!r} is a symbolic link; links are never followed",
                              "replace the link with the real folder in the input")
    return matches[0] if matches[0].kind == EntryKind.DIR else None


def _resolve_folder(by_dir: dict[str, list[Entry]], path: str, where: str) -> Entry | None:
    # Walk component by component so 'NetKVM/w7/AMD64' resolves whatever the case on disk.
    current = ""
    entry: Entry | None = None
    for part in path.split("/"):
        entry = _find_dir(by_dir, f"{current}/{part}" if current else part, where)
        if entry is None:
            return None
        current = entry.path
    return entry


def select(entries: list[Entry], spec: Spec, where: str, layout: str | None = None,
           skip_links: bool = False) -> Selection:
    """Apply the selection rules of ``spec`` to a tree's entries.

    Raises :class:`SourceError` when a required driver is missing on a target arch
    (naming every folder looked at) or, under ``optional: strict``, when an optional
    one is. Package file names are checked for Windows safety and case clashes here,
    before anything is written. Symbolic links fail, unless ``skip_links`` (upstream
    ISOs), where a link is skipped with a warning unless it stands for a core file.
    """
    layout = layout or spec.source.kind.layout
    for e in entries:
        # A traversal name anywhere in an untrusted tree is refused, selected or not.
        split_relpath(e.path, where)
    skipped: list[str] | None = [] if skip_links else None
    found, looked = _locate(_index(entries), spec, LAYOUTS[layout], where, skipped)
    missing, warnings = _apply_optional_rules(spec, found, looked, where)

    notices: tuple[Entry, ...] = ()
    metadata: tuple[Entry, ...] = ()
    info_json: Entry | None = None
    if layout == "virtio-win":
        notices = notice_entries(entries)
        metadata = tuple(sorted((e for e in entries if e.kind == EntryKind.FILE and "/" not in e.path
                                 and e.name.lower() in METADATA_NAMES), key=lambda e: e.path))
        info = [e for e in entries if e.kind == EntryKind.FILE and e.path.casefold() == INFO_JSON]
        info_json = info[0] if info else None

    order = {d.name: i for i, d in enumerate(spec.drivers)}
    packages = sorted(found.values(), key=lambda p: (p.arch.value, order[p.driver.name]))
    return Selection(tuple(packages), tuple(sorted(missing, key=lambda m: (m.driver, m.arch or ""))),
                     tuple([*(skipped or []), *warnings]), notices, info_json, metadata)


def _locate(by_dir: dict[str, list[Entry]], spec: Spec, patterns: tuple[tuple[str, ...], ...], where: str,
            skipped: list[str] | None) -> tuple[dict[tuple[str, Arch], Package], dict[tuple[str, Arch], list[str]]]:
    """Find each driver's package folder per arch (the first pattern that has one wins); also return every folder
    looked at."""
    found: dict[tuple[str, Arch], Package] = {}
    looked: dict[tuple[str, Arch], list[str]] = {}
    for drv in spec.drivers:
        for arch in spec.arches:
            tried: list[str] = []
            os_dirs = spec.source.os_dirs.get(arch, arch.os_dirs)
            candidates = [c for pattern in patterns for c in _candidates(pattern, drv.name, arch, os_dirs)]
            for path, os_dir in candidates:
                tried.append(path + "/")
                folder = _resolve_folder(by_dir, path, where)
                if folder is None:
                    continue
                staged = MediaLayout.STAGED.driver_dir(arch, drv.name)
                files = [f for f in _package_files(by_dir, folder, where, drv.name, skipped)
                         if not spec.source.excludes(f"{staged}/{f.rel}")]
                if not any(f.rel.lower().endswith(".inf") and "/" not in f.rel for f in files):
                    tried[-1] += " (no .inf)"
                    continue
                found[(drv.name, arch)] = Package(drv, arch, folder.path, os_dir, tuple(files))
                break
            looked[(drv.name, arch)] = tried
    return found, looked


def _apply_optional_rules(spec: Spec, found: dict[tuple[str, Arch], Package],
                          looked: dict[tuple[str, Arch], list[str]],
                          where: str) -> tuple[list[MissingOptional], list[str]]:
    """Fail on missing required drivers; drop optional ones missing anywhere (from ``found``)."""
    strict = spec.optional_policy is OptionalPolicy.STRICT
    problems: list[str] = []
    warnings: list[str] = []
    missing: list[MissingOptional] = []
    for drv in spec.drivers:
        absent = [a for a in spec.arches if (drv.name, a) not in found]
        if not absent:
            continue
        for arch in absent:
            places = ", ".join(looked[(drv.name, arch)])
            text = f"driver {drv.name!r} ({drv.device.name}) not found for {arch.value} in {where}; looked at: {places}"
            if drv.required:
                problems.append(text)
            elif strict:
                problems.append(f"optional {text} ({spec.vocabulary.term('optional', 'strict')})")
        if drv.required:
            continue
        present = [a for a in spec.arches if a not in absent]
        missing += [MissingOptional(drv.name, arch, "not found in source") for arch in absent]
        if present:
            # Half a driver confuses users more than none: drop it everywhere.
            for arch in present:
                del found[(drv.name, arch)]
                missing.append(MissingOptional(drv.name, arch,
                                               f"dropped: missing for {', '.join(a.value for a in absent)}"))
            warnings.append(f"optional driver {drv.name!r} exists only for {', '.join(a.value for a in present)}; "
                            f"dropped from all arches")
        else:
            warnings.append(f"optional driver {drv.name!r} not found for any arch; media will not include it")
    if problems:
        v = spec.vocabulary
        hint = (f"check {v.name('source.path')} and the folder names, or {v.fix('drivers.required', 'false')}"
                if not strict else f"add the driver to the source or {v.fix('optional', 'best-effort')}")
        raise SourceError("\n".join(problems), hint)
    return missing, warnings


def notice_entries(entries: list[Entry]) -> tuple[Entry, ...]:
    """Return the licence, notice and readme files at the root of an upstream tree."""
    return tuple(sorted((e for e in entries if e.kind == EntryKind.FILE and "/" not in e.path
                         and any(fnmatch.fnmatch(e.name.lower(), p) for p in NOTICE_PATTERNS)),
                        key=lambda e: e.path))


def staged_path(pkg: Package, f: PackageFile) -> str:
    """Media path of a package file: ``win7/<arch>/<driver>/<rel>``."""
    return str(PurePosixPath(pkg.staged_dir) / f.rel)
