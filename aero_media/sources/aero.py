"""An Aero checkout as a source: each driver's ``ci-package.json`` decides what its package holds.

Aero opts a driver into packaging by giving it ``drivers/<driverRel>/ci-package.json``
(Aero's ci/README.md; schema: ci/driver-package.schema.json). Two of its outputs can be read:

- ``build-output``: msbuild's ``out/drivers/<driverRel>/{x86,x64}/``. The package is
  assembled here as Aero's ``ci/make-catalogs.ps1`` assembles ``out/packages/``, before
  its stampinf and Inf2Cat steps: the build output without its INFs and build leftovers;
  on x64 the ``wow64Files`` from the x86 output; the INFs (``infFiles``, or every INF of
  the driver's folder) flat at the root, each only for the arches its models sections
  name (ci/lib/Catalog.psm1 ``Get-InfArchitectureSupport``); ``additionalFiles`` (never
  binaries) and ``toolFiles`` at their relative paths. The packages are unsigned.
- ``packages``: ``out/packages/<driverRel>/{x86,x64}/`` as Aero's ``ci/sign-drivers.ps1``
  left them (catalogued and signed), with ``out/certs/aero-test.cer``; taken byte for
  byte, after checking they hold what ``ci-package.json`` lists.

The media keep our layout; a driver is named as Aero's ``ci/package-drivers.ps1`` names
it (``Get-DriverNameFromRelativeSegments``: ``windows7/virtio-blk`` is ``virtio-blk``).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import PipelineError, SourceError, UnsafePathError
from ..fsutil import relpath_for_humans, walk
from ..paths import Run
from ..spec.model import DriverReq, Spec
from ..spec.types import AeroInput, Arch
from ..win7.inf import parse_inf
from ..winnames import check_no_case_clash, check_relpath
from .resolve import unset_root_error
from .selection import MAX_PACKAGE_SUBFOLDERS, Package, PackageFile, Selection, _apply_optional_rules
from .tree import DirTree, Entry, EntryKind

CI_PACKAGE = "ci-package.json"
DRIVERS_DIR = "drivers"
CERTIFICATE = "out/certs/aero-test.cer"
"""The test certificate ci/sign-drivers.ps1 writes beside the signed packages."""

MAX_CI_PACKAGE = 1 << 20

# Folders ci/make-catalogs.ps1 skips when it looks for a driver's INFs itself (no infFiles).
INF_SEARCH_SKIPPED_DIRS = frozenset({"obj", "out", "build", "target"})

# Segments ci/package-drivers.ps1 skips when it names a driver after its driverRel (deepest segment first).
NAME_SKIPPED_SEGMENTS = frozenset({"drivers", "driver", "packages", "package", "signed", "release", "debug", "build",
                                   "bin", "dist", "windows", "wdk", "win7", "w7", "windows7", "win7sp1", "sp1",
                                   "x86", "i386", "win32", "x64", "amd64", "x86_64"})

# What ci/make-catalogs.ps1 (Invoke-PackageSanitation) deletes from a staged package: debug and
# intermediate build products, sources and project files, and folder metadata.
LEFTOVER_SUFFIXES = (".pdb", ".dbg", ".ipdb", ".iobj", ".obj", ".lib", ".exp", ".ilk", ".idb", ".map", ".tlog",
                     ".log", ".wrn", ".err", ".lastbuildstate", ".tmp", ".cache", ".pch", ".sdf", ".opensdf", ".ncb",
                     ".binlog", ".etl", ".dmp", ".c", ".cc", ".cpp", ".cxx", ".h", ".hpp", ".idl", ".inl", ".rc",
                     ".asm", ".s", ".vcxproj", ".sln", ".props", ".targets", ".filters", ".user")
LEFTOVER_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
# Binaries additionalFiles may not carry (ci/driver-package.schema.json): they go in by infFiles' build
# output, wow64Files or toolFiles, where the build made them.
BINARY_SUFFIXES = (".sys", ".dll", ".exe", ".cat", ".msi", ".cab")
# Likely key material, refused anywhere in a package (the schema's and ci/make-catalogs.ps1's list).
SECRET_SUFFIXES = (".pfx", ".p12", ".pvk", ".snk", ".key", ".pem", ".p8", ".pk8", ".der", ".csr", ".ppk", ".jks",
                   ".keystore", ".kdbx", ".gpg", ".pgp")


class CiField(StrEnum):
    """The keys of ``ci-package.json`` (ci/driver-package.schema.json); any other key is refused."""

    SCHEMA = "$schema"
    INF_FILES = "infFiles"
    WOW64_FILES = "wow64Files"
    REQUIRED_BUILD_OUTPUT_FILES = "requiredBuildOutputFiles"
    ADDITIONAL_FILES = "additionalFiles"
    TOOL_FILES = "toolFiles"
    WDF_COINSTALLER = "wdfCoInstaller"


@dataclass(frozen=True)
class ListRule:
    """What the entries of one list field of ``ci-package.json`` must be."""

    suffixes: tuple[str, ...] = ()
    """Entries must end with one of these (empty: any name)."""
    refused: tuple[str, ...] = ()
    """Entries may not end with these."""
    bare_name: bool = False
    """A file name, not a path."""
    non_empty: bool = False


# One rule per list field, as ci/driver-package.schema.json states them.
LIST_RULES: dict[CiField, ListRule] = {
    CiField.INF_FILES: ListRule(suffixes=(".inf",), non_empty=True),
    CiField.WOW64_FILES: ListRule(suffixes=(".dll",), bare_name=True),
    CiField.REQUIRED_BUILD_OUTPUT_FILES: ListRule(),
    CiField.ADDITIONAL_FILES: ListRule(refused=BINARY_SUFFIXES + SECRET_SUFFIXES),
    CiField.TOOL_FILES: ListRule(suffixes=(".exe",)),
}


@dataclass(frozen=True)
class CiPackage:
    """One driver's ``ci-package.json``, checked; every path '/'-separated."""

    display: str
    """``drivers/<driverRel>/ci-package.json``, as messages name it."""
    inf_files: tuple[str, ...] | None
    """None: every INF of the driver's folder."""
    wow64_files: tuple[str, ...] = ()
    required_build_output_files: tuple[str, ...] = ()
    additional_files: tuple[str, ...] = ()
    tool_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class AeroDriver:
    """A driver that opted into packaging."""

    rel: str
    """driverRel: its folder under ``drivers/``, '/'-separated."""
    name: str
    ci: CiPackage


def driver_name(rel: str) -> str:
    """The name Aero's ci/package-drivers.ps1 gives the driver at ``drivers/<rel>``: its deepest meaningful folder."""
    parts = rel.split("/")
    return next((p for p in reversed(parts) if p.lower() not in NAME_SKIPPED_SEGMENTS), parts[-1])


def _line_of(text: str, needle: str) -> int:
    """The line of the first ``"needle"`` in ``text`` (1 when absent): where a message points."""
    at = text.find(json.dumps(needle))
    if at < 0:
        at = text.find(f'"{needle}"')
    return text.count("\n", 0, max(at, 0)) + 1


def _entry_path(raw: str) -> str | None:
    """An entry as a '/'-separated relative path, or None when it is rooted or climbs out with '..'."""
    s = raw.strip().replace("\\", "/")
    if s.startswith("/") or (len(s) > 1 and s[1] == ":"):
        return None
    if ".." in s.split("/"):
        return None
    return "/".join(p for p in s.split("/") if p not in ("", "."))


def parse_ci_package(data: bytes, display: str) -> CiPackage:
    """Check a ``ci-package.json`` against Aero's schema; a problem is a one-line error at ``display:line``."""
    fix = f"fix {display} (its schema is Aero's ci/driver-package.schema.json)"
    try:
        text = data.decode("utf-8-sig")
        doc = json.loads(text)
    except UnicodeDecodeError:
        raise SourceError(f"{display}:1: not UTF-8 text", fix) from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"{display}:{exc.lineno}: not valid JSON ({exc.msg})", fix) from None
    if not isinstance(doc, dict):
        raise SourceError(f"{display}:1: must be a JSON object", fix)
    known = {f.value for f in CiField}
    for key in doc:
        if key not in known:
            raise SourceError(f"{display}:{_line_of(text, key)}: unknown field {key!r} "
                              f"(Aero's schema allows {', '.join(sorted(known))})", fix)
    if CiField.WDF_COINSTALLER.value in doc:
        raise SourceError(f"{display}:{_line_of(text, CiField.WDF_COINSTALLER.value)}: wdfCoInstaller needs the "
                          "WDK's WdfCoInstaller DLL, which only Aero's ci/make-catalogs.ps1 -IncludeWdfCoInstaller "
                          "adds", "build the packages with Aero's CI and read them with source.input: packages")
    lists = {f: _list_field(doc, text, f, display, fix) for f in LIST_RULES}
    return CiPackage(display=display,
                     inf_files=lists[CiField.INF_FILES] if CiField.INF_FILES.value in doc else None,
                     wow64_files=lists[CiField.WOW64_FILES] or (),
                     required_build_output_files=lists[CiField.REQUIRED_BUILD_OUTPUT_FILES] or (),
                     additional_files=lists[CiField.ADDITIONAL_FILES] or (),
                     tool_files=lists[CiField.TOOL_FILES] or ())


def _list_field(doc: dict[str, Any], text: str, field: CiField, display: str, fix: str) -> tuple[str, ...] | None:
    if field.value not in doc:
        return None
    raw = doc[field.value]
    rule = LIST_RULES[field]
    at = f"{display}:{_line_of(text, field.value)}"
    if not isinstance(raw, list):
        raise SourceError(f"{at}: {field.value} must be a list of paths", fix)
    if rule.non_empty and not raw:
        raise SourceError(f"{at}: {field.value} is present but empty (omit it to use every INF)", fix)
    out: list[str] = []
    seen: dict[str, str] = {}
    for item in raw:
        if not isinstance(item, str) or not item.strip():
            raise SourceError(f"{at}: {field.value} holds {json.dumps(item)}, not a path", fix)
        where = f"{display}:{_line_of(text, item)}"
        path = _entry_path(item)
        if path is None or not path:
            raise SourceError(f"{where}: {field.value} entry {item!r} must be a relative path inside the driver "
                              "folder (no drive, root or '..')", fix)
        low = path.lower()
        if rule.bare_name and "/" in path:
            raise SourceError(f"{where}: {field.value} entry {item!r} must be a file name, not a path", fix)
        if rule.suffixes and not low.endswith(rule.suffixes):
            raise SourceError(f"{where}: {field.value} entry {item!r} must end with {' or '.join(rule.suffixes)}",
                              fix)
        if low.endswith(rule.refused):
            kind = "key material" if low.endswith(SECRET_SUFFIXES) else "a binary (use toolFiles for an .exe)"
            raise SourceError(f"{where}: {field.value} entry {item!r} is {kind}, which {field.value} refuses", fix)
        if low in seen:
            raise SourceError(f"{where}: {field.value} lists {item!r} twice (also as {seen[low]!r}; case and "
                              "'/' or '\\' do not count)", fix)
        seen[low] = item
        check_relpath(path, display)
        out.append(path)
    return tuple(out)


def _ships(name: str) -> bool:
    """Whether a build-output file goes into the package: never its INFs (only those ci-package.json selects
    do) nor build leftovers."""
    low = name.lower()
    return not (low.endswith(".inf") or low.endswith(LEFTOVER_SUFFIXES) or low in LEFTOVER_NAMES)


def _is_file(p: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(p).st_mode)
    except OSError:
        return False


def _is_dir(p: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(p).st_mode)
    except OSError:
        return False


class AeroCheckout(DirTree):
    """An Aero checkout: the drivers that opted in, and their packages for each arch, read in place."""

    def __init__(self, root: Path, display: str, aero_input: AeroInput) -> None:
        super().__init__(root, display, top_only=True)  # entries(): the root's licences, as notices read them
        self.aero_input = aero_input
        self.reader = f"aero-{aero_input.value}"

    def _rel(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix()

    def _entry(self, p: Path) -> Entry:
        return Entry(self._rel(p), EntryKind.FILE, os.lstat(p).st_size, str(p))

    def drivers(self) -> dict[str, AeroDriver]:
        """Every driver with a ``ci-package.json`` under ``drivers/``, by name (casefolded)."""
        base = self.root / DRIVERS_DIR
        if not _is_dir(base):
            raise SourceError(f"{self.display}: no {DRIVERS_DIR}/ folder: not an Aero checkout",
                              "point source.path at the root of an Aero checkout")
        out: dict[str, AeroDriver] = {}
        for dirpath, dirnames, filenames in walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if CI_PACKAGE not in filenames:
                continue
            folder = Path(dirpath)
            rel = folder.relative_to(base).as_posix()
            display = f"{DRIVERS_DIR}/{rel}/{CI_PACKAGE}"
            manifest = folder / CI_PACKAGE
            if not _is_file(manifest):
                raise UnsafePathError(f"{self.display}: {display} is not a regular file", "replace it with the file")
            if manifest.stat().st_size > MAX_CI_PACKAGE:
                raise SourceError(f"{self.display}: {display} is larger than {MAX_CI_PACKAGE} bytes",
                                  "check the file")
            drv = AeroDriver(rel, driver_name(rel), parse_ci_package(manifest.read_bytes(), display))
            key = drv.name.casefold()
            if key in out:
                raise SourceError(f"{self.display}: drivers/{out[key].rel} and drivers/{rel} are both named "
                                  f"{drv.name!r} on the media", "give one of them another folder name")
            out[key] = drv
        return out

    def certificate(self) -> Path | None:
        """The test certificate signed packages come with (None for build output, which is unsigned)."""
        if not self.aero_input.signed:
            return None
        cert = self.root / CERTIFICATE
        if not _is_file(cert):
            raise SourceError(f"{self.display}: {CERTIFICATE} not found; signed packages come with the certificate "
                              "Aero's ci/sign-drivers.ps1 wrote", "copy it there, or read source.input: build-output")
        return cert

    def arch_dir(self, drv: AeroDriver, arch: Arch) -> str:
        """Where the driver's build output or package for ``arch`` is, relative to the checkout."""
        return f"{self.aero_input.out_dir}/{drv.rel}/{arch.x64_name}"

    def package_files(self, drv: AeroDriver, arch: Arch) -> list[PackageFile] | None:
        """The files of the driver's package for ``arch`` (None when that arch was not built)."""
        folder = self.root / self.arch_dir(drv, arch)
        if not _is_dir(folder):
            return None
        files = self._signed_package(drv, arch, folder) if self.aero_input.signed else self._assemble(drv, arch,
                                                                                                        folder)
        out = sorted(files.values(), key=lambda f: f.rel.casefold())
        for f in out:
            check_relpath(f.rel, self.display)
            if f.rel.count("/") > MAX_PACKAGE_SUBFOLDERS:
                raise UnsafePathError(f"{self.display}: {f.entry.path} is nested more than {MAX_PACKAGE_SUBFOLDERS} "
                                      "folders deep inside its package, deeper than the media can hold",
                                      "move it up in the build output or in ci-package.json")
            if f.rel.lower().endswith(SECRET_SUFFIXES):
                raise UnsafePathError(f"{self.display}: {f.entry.path} looks like key material; a driver package "
                                      "never carries it", "remove it from the build output")
        check_no_case_clash([f.rel for f in out], f"{self.display}: {self.arch_dir(drv, arch)}")
        return out

    def _missing(self, drv: AeroDriver, field: CiField, entry: str, looked: str) -> SourceError:
        return SourceError(f"{self.display}: driver {drv.name!r}: {entry} not found in {looked} (listed in "
                           f"{field.value} of {drv.ci.display})",
                           f"build it, or remove it from {field.value}")

    def _walk(self, folder: Path) -> list[Path]:
        """Every regular file under ``folder``; links and special files are refused, never followed."""
        out: list[Path] = []
        for e in DirTree(folder, f"{self.display}/{self._rel(folder)}").entries():
            if e.kind is EntryKind.DIR:
                continue
            if e.kind is not EntryKind.FILE:
                raise UnsafePathError(f"{self.display}: {self._rel(Path(str(e.ref)))} is a {e.kind.value}; "
                                      "links are never followed", "replace it with the real file")
            out.append(Path(str(e.ref)))
        return out

    def _infs(self, drv: AeroDriver) -> list[Path]:
        src = self.root / DRIVERS_DIR / drv.rel
        if drv.ci.inf_files is not None:
            infs = []
            for rel in drv.ci.inf_files:
                if not _is_file(src / rel):
                    raise self._missing(drv, CiField.INF_FILES, rel, f"{DRIVERS_DIR}/{drv.rel}/")
                infs.append(src / rel)
            return infs
        found = [p for p in self._walk(src) if p.name.lower().endswith(".inf")
                 and not INF_SEARCH_SKIPPED_DIRS.intersection(d.lower() for d in p.relative_to(src).parts[:-1])]
        if not found:
            raise SourceError(f"{self.display}: driver {drv.name!r}: no .inf under {DRIVERS_DIR}/{drv.rel}/",
                              f"add the INF, or list it in infFiles of {drv.ci.display}")
        return sorted(found)

    def infs_for(self, drv: AeroDriver, arch: Arch) -> list[Path]:
        """The driver's INFs that go into its ``arch`` package; two INFs of one name are refused (they go flat)."""
        out: dict[str, Path] = {}
        for inf in self._infs(drv):
            if arch not in inf_arches(inf.read_bytes(), inf.name):
                continue
            if inf.name.lower() in out:
                raise SourceError(f"{self.display}: driver {drv.name!r}: two INFs named {inf.name!r} "
                                  f"({self._rel(out[inf.name.lower()])}, {self._rel(inf)}) go to the package root",
                                  "rename one of them, or list one in infFiles")
            out[inf.name.lower()] = inf
        if not out:
            raise SourceError(f"{self.display}: driver {drv.name!r}: no INF of {drv.ci.display} is for {arch.value} "
                              "(no NT" f"{arch.inf_arch} models section)", "add the arch's models section to the INF")
        return list(out.values())

    def _assemble(self, drv: AeroDriver, arch: Arch, build: Path) -> dict[str, PackageFile]:
        """Assemble a package from build output, in ci/make-catalogs.ps1's order (a later file replaces one of the
        same name, as its Copy-Item -Force does)."""
        src = self.root / DRIVERS_DIR / drv.rel
        looked = f"{self.arch_dir(drv, arch)}/"
        missing = next((r for r in drv.ci.required_build_output_files if not _is_file(build / r)), None)
        if missing is not None:
            raise self._missing(drv, CiField.REQUIRED_BUILD_OUTPUT_FILES, missing, looked)
        files: dict[str, PackageFile] = {}

        def put(rel: str, p: Path) -> None:
            files[rel.casefold()] = PackageFile(rel, self._entry(p))

        for p in self._walk(build):
            if _ships(p.name):
                put(p.relative_to(build).as_posix(), p)
        if arch is Arch.AMD64:
            for name, p in self._wow64(drv, files):
                put(name, p)
        for inf in self.infs_for(drv, arch):
            put(inf.name, inf)
        for rel in drv.ci.additional_files:
            if not _is_file(src / rel):
                raise self._missing(drv, CiField.ADDITIONAL_FILES, rel, f"{DRIVERS_DIR}/{drv.rel}/")
            put(rel, src / rel)
        for rel in drv.ci.tool_files:
            # The driver's folder first, then the build output, as ci/make-catalogs.ps1 looks.
            tool = next((p for p in (src / rel, build / rel) if _is_file(p)), None)
            if tool is None:
                raise self._missing(drv, CiField.TOOL_FILES, rel, f"{DRIVERS_DIR}/{drv.rel}/ or {looked}")
            put(rel, tool)
        return files

    def _wow64(self, drv: AeroDriver, x64_files: dict[str, PackageFile]) -> list[tuple[str, Path]]:
        """The x86 DLLs ``wow64Files`` puts at the x64 package's root, never over the x64 build's own files."""
        x86 = self.root / self.arch_dir(drv, Arch.X86)
        out = []
        for name in drv.ci.wow64_files:
            if not _is_file(x86 / name):
                raise self._missing(drv, CiField.WOW64_FILES, name, f"{self.arch_dir(drv, Arch.X86)}/")
            if name.casefold() in x64_files:
                raise SourceError(f"{self.display}: driver {drv.name!r}: WOW64 file {name!r} (wow64Files of "
                                  f"{drv.ci.display}) would replace the x64 build's own {name!r}",
                                  "give the 64-bit build output another name (Aero uses a '_x64' suffix)")
            out.append((name, x86 / name))
        return out

    def _signed_package(self, drv: AeroDriver, arch: Arch, folder: Path) -> dict[str, PackageFile]:
        """A signed package as it is, after checking it holds every file ``ci-package.json`` lists for it."""
        files = {p.relative_to(folder).as_posix().casefold(): PackageFile(p.relative_to(folder).as_posix(),
                                                                          self._entry(p))
                 for p in self._walk(folder)}
        looked = f"{self.arch_dir(drv, arch)}/"
        wanted: list[tuple[CiField, str]] = [(CiField.INF_FILES, p.name) for p in self.infs_for(drv, arch)
                                             if drv.ci.inf_files is not None]
        wanted += [(CiField.WOW64_FILES, n) for n in drv.ci.wow64_files if arch is Arch.AMD64]
        wanted += [(CiField.REQUIRED_BUILD_OUTPUT_FILES, r) for r in drv.ci.required_build_output_files]
        wanted += [(CiField.ADDITIONAL_FILES, r) for r in drv.ci.additional_files]
        wanted += [(CiField.TOOL_FILES, r) for r in drv.ci.tool_files]
        for field, rel in wanted:
            if rel.casefold() not in files:
                raise self._missing(drv, field, rel, looked)
        return files


def inf_arches(data: bytes, name: str) -> tuple[Arch, ...]:
    """The arches whose package an INF goes into: those its models sections name (NTx86, NTamd64), or both when
    it names neither, as ci/lib/Catalog.psm1 ``Get-InfArchitectureSupport`` decides."""
    named = {d.arch for m in parse_inf(data, name).manufacturers() for d in m.decorations if d.valid}
    arches = tuple(a for a in (Arch.X86, Arch.AMD64) if a.inf_arch in named)
    return arches or (Arch.X86, Arch.AMD64)


def checkout(run: Run) -> AeroCheckout:
    """The spec's Aero checkout."""
    spec = run.spec
    if (unset := unset_root_error(spec)) is not None:
        raise unset
    assert spec.source.path is not None
    display = relpath_for_humans(spec.source.path, run.ctx.root)
    if not _is_dir(spec.source.path):
        raise SourceError(f"{spec.display}: source.path {display!r} is not a directory",
                          "point source.path at the root of an Aero checkout")
    return AeroCheckout(spec.source.path, display, spec.source.aero_input)


def select_aero(tree: AeroCheckout, spec: Spec) -> Selection:
    """The spec's drivers from the checkout, with the required/optional rules of every source."""
    drivers = tree.drivers()
    opted_in = ", ".join(sorted(d.name for d in drivers.values())) or "none"
    found: dict[tuple[str, Arch], Package] = {}
    looked: dict[tuple[str, Arch], list[str]] = {}
    for req in spec.drivers:
        drv = drivers.get(req.name.casefold())
        for arch in spec.arches:
            if drv is None:
                looked[(req.name, arch)] = [f"{DRIVERS_DIR}/**/{req.name}/{CI_PACKAGE} (no driver of that name "
                                            f"opted in; opted in: {opted_in})"]
                continue
            looked[(req.name, arch)] = [f"{tree.arch_dir(drv, arch)}/"]
            package = _package(tree, req, drv, arch, spec)
            if package is not None:
                found[(req.name, arch)] = package
    missing, warnings = _apply_optional_rules(spec, found, looked, tree.display)
    order = {d.name: i for i, d in enumerate(spec.drivers)}
    packages = sorted(found.values(), key=lambda p: (p.arch.value, order[p.driver.name]))
    return Selection(tuple(packages), tuple(sorted(missing, key=lambda m: (m.driver, m.arch or ""))),
                     tuple(warnings), (), None)


def _package(tree: AeroCheckout, req: DriverReq, drv: AeroDriver, arch: Arch, spec: Spec) -> Package | None:
    files = tree.package_files(drv, arch)
    if files is None:
        return None
    staged = PurePosixPath("win7", arch.value, req.name)
    kept = tuple(f for f in files if not spec.source.excludes(f"{staged}/{f.rel}"))
    return Package(req, arch, tree.arch_dir(drv, arch), None, kept)


def input_files(spec: Spec) -> list[str] | None:
    """Every file an Aero source is read from, as file_dep (None: the checkout cannot be listed, the stage says
    why): each opted-in driver's folder, the output read, and the certificate."""
    root = spec.source.path
    if root is None or not _is_dir(root / DRIVERS_DIR):
        return []
    tree = AeroCheckout(root, str(root), spec.source.aero_input)
    try:
        drivers = tree.drivers()
        folders = [root / DRIVERS_DIR / d.rel for d in drivers.values()]
        folders += [root / spec.source.aero_input.out_dir / d.rel for d in drivers.values()]
        files = [str(p) for f in folders if _is_dir(f) for p in tree._walk(f)]
    except PipelineError:
        return None
    cert = root / CERTIFICATE
    if spec.source.aero_input.signed and _is_file(cert):
        files.append(str(cert))
    return sorted(set(files))
