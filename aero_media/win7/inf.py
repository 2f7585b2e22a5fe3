"""Our own INF parser, with the driver-package semantics Windows 7 applies.

configparser cannot read real virtio INFs (line continuations, duplicate keys,
case-insensitive sections, quoting, ``%strkey%`` substitution), so this module
implements the documented INF syntax ("General Syntax Rules for INF Files";
summarised in docs/windows7.md#inf-syntax):

* section names, keys and string keys are case-insensitive; repeated sections merge;
* duplicate keys are kept in order; lines without ``=`` are plain values;
* ``;`` starts a comment outside quotes; a trailing ``\\`` joins the next line;
* ``%key%`` comes from ``[Strings]`` (``[Strings.0409]`` wins), ``%%`` is a literal
  percent, ``%<number>%`` (a DIRID) is kept as written, ``""`` inside quotes is a quote;
* input is ANSI (cp1252) or UTF-16LE with a BOM.

INF files are untrusted: parsing never raises; anything Windows would trip over
becomes an :class:`InfProblem` carrying the line number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .findings import Severity

WIN7_VERSION = (6, 1)
WIN7_BUILD = 7601  # Windows 7 SP1; decorations with a higher build number never apply
VER_NT_WORKSTATION = 1
OS_NAMES = {
    (5, 0): "Windows 2000", (5, 1): "Windows XP", (5, 2): "Windows Server 2003", (6, 0): "Windows Vista",
    (6, 1): "Windows 7", (6, 2): "Windows 8", (6, 3): "Windows 8.1", (10, 0): "Windows 10",
}
_DECORATION = re.compile(
    r"^NT(?P<arch>x86|amd64|ia64|arm64|arm)?"
    r"(?:\.(?P<major>\d+)(?:\.(?P<minor>\d+)(?:\.(?P<ptype>[0-9A-Fa-fx]*)(?:\.(?P<suite>[0-9A-Fa-fx]*)"
    r"(?:\.(?P<build>\d+))?)?)?)?)?$",
    re.IGNORECASE,
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


# --- Data model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InfProblem:
    """Something in the INF text that Windows would reject or misread."""

    severity: Severity
    code: str
    line: int | None
    message: str
    fix: str


@dataclass(frozen=True)
class Line:
    """One logical line of a section (continuations joined, comment removed)."""

    key: str | None
    """Text before ``=``, unquoted and with strings resolved; None for lines without ``=``."""
    values: tuple[str, ...]
    """Comma-separated fields after ``=`` (or the whole line), unquoted, strings resolved."""
    raw: str
    lineno: int
    """1-based number of the first physical line."""

    @property
    def value(self) -> str:
        """The first field, or '' when there is none."""
        return self.values[0] if self.values else ""

    def field(self, index: int) -> str:
        """Field ``index`` (0-based) or '' when the line is shorter."""
        return self.values[index] if index < len(self.values) else ""


@dataclass(frozen=True)
class Decoration:
    """A models-section decoration: ``NT[arch][.major[.minor[.producttype[.suitemask[.build]]]]]``."""

    text: str
    valid: bool
    arch: str | None = None
    version: tuple[int, int] | None = None
    product_type: int | None = None
    build: int | None = None

    def applies_to(self, arch: str) -> str | None:
        """Return None when Windows 7 on ``arch`` may use it, else why not."""
        if not self.valid:
            return f"{self.text!r} is not a valid NT decoration"
        if self.arch is not None and self.arch != arch:
            return f"{self.text} is for {self.arch}"
        if self.version is not None and self.version > WIN7_VERSION:
            return f"{self.text} is for {os_name(self.version)}"
        if self.product_type not in (None, VER_NT_WORKSTATION):
            return f"{self.text} is for Windows Server (product type {self.product_type:#x})"
        if self.build is not None and self.build > WIN7_BUILD:
            return f"{self.text} needs build {self.build} (Windows 7 SP1 is {WIN7_BUILD})"
        return None


@dataclass(frozen=True)
class Manufacturer:
    """A ``[Manufacturer]`` entry: ``%Name% = models[,decoration...]``."""

    name: str
    models: str
    decorations: tuple[Decoration, ...]
    lineno: int


@dataclass(frozen=True)
class Model:
    """A models-section line: ``description = install-section[,hw-id][,compatible-id...]``."""

    description: str
    install: str
    hardware_id: str | None
    compatible_ids: tuple[str, ...]
    lineno: int

    @property
    def ids(self) -> tuple[str, ...]:
        return ((self.hardware_id,) if self.hardware_id else ()) + self.compatible_ids


@dataclass(frozen=True)
class ModelsChoice:
    """The models section Windows 7 uses for one manufacturer on one arch."""

    manufacturer: Manufacturer
    section: str
    decoration: Decoration | None
    exists: bool
    models: tuple[Model, ...]


@dataclass(frozen=True)
class ModelsSelection:
    """Result of decoration matching; ``reason`` explains an empty ``chosen``."""

    arch: str
    chosen: tuple[ModelsChoice, ...]
    reason: str | None
    lineno: int | None


@dataclass(frozen=True)
class SourceFile:
    """A ``[SourceDisksFiles]`` entry and where it lives relative to the INF."""

    name: str
    disk_id: str
    subdir: str
    lineno: int
    disk_known: bool
    disk_path: str

    @property
    def relpath(self) -> str:
        """Path relative to the INF folder, '/'-separated."""
        parts = [p for p in re.split(r"[\\/]", self.disk_path) + re.split(r"[\\/]", self.subdir) if p and p != "."]
        return "/".join([*parts, self.name])


@dataclass(frozen=True)
class FileRef:
    """A file an install section copies, with the line that names it."""

    name: str
    section: str
    lineno: int


@dataclass(frozen=True)
class AddService:
    """An ``AddService`` directive."""

    name: str
    flags: int
    install_section: str
    lineno: int

    @property
    def is_function_driver(self) -> bool:
        # SPSVCINST_ASSOCSERVICE: this service drives the device.
        return bool(self.flags & 0x2)


@dataclass(frozen=True)
class ServiceInstall:
    """The service-install section an ``AddService`` points to."""

    section: str
    exists: bool
    service_type: int | None = None
    start_type: int | None = None
    start_raw: str | None = None
    binary: str | None = None
    binary_path: str | None = None
    lineno: int | None = None
    start_lineno: int | None = None
    binary_lineno: int | None = None


@dataclass(frozen=True)
class CoInstaller:
    """A ``CoInstallers32`` registry value: ``"file.dll[,entrypoint]"``."""

    dll: str
    entry: str | None
    lineno: int


@dataclass(frozen=True)
class Inf:
    """A parsed INF. Section lookups are case-insensitive; repeated sections are merged."""

    name: str
    encoding: str
    problems: tuple[InfProblem, ...]
    strings: dict[str, str] = field(repr=False)
    _sections: dict[str, tuple[Line, ...]] = field(repr=False)
    _headers: dict[str, tuple[str, int]] = field(repr=False)

    # --- generic access --------------------------------------------------------------------

    @property
    def section_names(self) -> tuple[str, ...]:
        """Section names as first written, in file order."""
        return tuple(name for name, _ in self._headers.values())

    def has_section(self, name: str) -> bool:
        return name.lower() in self._sections

    def section(self, name: str) -> tuple[Line, ...]:
        """All lines of every ``[name]`` section (case-insensitive), in file order."""
        return self._sections.get(name.lower(), ())

    def section_line(self, name: str) -> int | None:
        """Line of the first ``[name]`` header."""
        entry = self._headers.get(name.lower())
        return entry[1] if entry else None

    def section_title(self, name: str) -> str:
        """The section name as written in the file (or ``name`` if absent)."""
        entry = self._headers.get(name.lower())
        return entry[0] if entry else name

    def get_all(self, section: str, key: str) -> tuple[Line, ...]:
        """Every line of ``section`` whose key is ``key`` (case-insensitive)."""
        low = key.lower()
        return tuple(ln for ln in self.section(section) if ln.key is not None and ln.key.lower() == low)

    def get(self, section: str, key: str) -> Line | None:
        """The first line of ``section`` with ``key``, or None."""
        found = self.get_all(section, key)
        return found[0] if found else None

    # --- [Version] -------------------------------------------------------------------------

    def version_value(self, key: str) -> Line | None:
        """A ``[Version]`` entry such as Signature, Class, ClassGuid, DriverVer."""
        return self.get("Version", key)

    def catalog_file(self, arch: str) -> Line | None:
        """The CatalogFile entry Windows uses on ``arch``: ``.NT<arch>``, then ``.NT``, then plain."""
        for key in (f"CatalogFile.NT{arch}", "CatalogFile.NT", "CatalogFile"):
            line = self.version_value(key)
            if line is not None:
                return line
        return None

    # --- [Manufacturer] and models ---------------------------------------------------------

    def manufacturers(self) -> tuple[Manufacturer, ...]:
        """The ``[Manufacturer]`` entries with their parsed decorations."""
        out = []
        for ln in self.section("Manufacturer"):
            if not ln.values or not ln.values[0]:
                continue
            name = ln.key if ln.key is not None else ln.values[0]
            decorations = tuple(parse_decoration(v) for v in ln.values[1:] if v)
            out.append(Manufacturer(name=name, models=ln.values[0], decorations=decorations, lineno=ln.lineno))
        return tuple(out)

    def model_lines(self, section: str) -> tuple[Model, ...]:
        """Parse a models section into :class:`Model` entries."""
        out = []
        for ln in self.section(section):
            if ln.key is None:
                continue  # not a model line (Windows ignores it)
            ids = tuple(v for v in ln.values[1:] if v)
            out.append(Model(description=ln.key, install=ln.value, hardware_id=ids[0] if ids else None,
                             compatible_ids=ids[1:], lineno=ln.lineno))
        return tuple(out)

    def all_model_ids(self) -> tuple[str, ...]:
        """Every hardware/compatible ID in every models section any manufacturer names."""
        out: list[str] = []
        for m in self.manufacturers():
            names = [m.models] + [f"{m.models}.{d.text}" for d in m.decorations]
            for name in names:
                for model in self.model_lines(name):
                    out.extend(model.ids)
        return tuple(dict.fromkeys(out))

    def models(self, arch: str) -> ModelsSelection:
        """Pick the models section(s) Windows 7 (NT 6.1) uses on ``arch`` ('x86' or 'amd64').

        Per manufacturer: among decorations for this arch (or none) whose version
        is not above 6.1, the highest wins; the undecorated section is the last
        resort, and only on x86 (x64 Windows requires a decoration).
        """
        mans = self.manufacturers()
        if not mans:
            line = self.section_line("Manufacturer")
            why = "has no [Manufacturer] section" if line is None else "has an empty [Manufacturer] section"
            return ModelsSelection(arch, (), f"the INF {why}: it is not a device driver INF", line)
        chosen: list[ModelsChoice] = []
        rejected: list[str] = []
        for man in mans:
            best: Decoration | None = None
            for dec in man.decorations:
                if dec.applies_to(arch) is not None:
                    continue
                if best is None or _rank(dec) > _rank(best):
                    best = dec
            if best is not None:
                name = f"{man.models}.{best.text}"
            elif arch == "x86" and self.has_section(man.models):
                name = man.models
            else:
                rejected.extend(d.text for d in man.decorations)
                continue
            chosen.append(ModelsChoice(man, self.section_title(name), best, self.has_section(name),
                                       self.model_lines(name)))
        if chosen:
            return ModelsSelection(arch, tuple(chosen), None, None)
        return ModelsSelection(arch, (), self._no_models_reason(arch, mans, rejected), mans[0].lineno)

    def _no_models_reason(self, arch: str, mans: tuple[Manufacturer, ...], rejected: list[str]) -> str:
        if not rejected:
            names = ", ".join(f"[{m.models}]" for m in mans)
            return (f"the INF only has undecorated models ({names}), which 64-bit Windows ignores: "
                    f"add an NT{arch} decoration")
        decs = [parse_decoration(t) for t in dict.fromkeys(rejected)]
        listing = ", ".join(d.text for d in decs)
        other_arch = {d.arch for d in decs if d.valid and d.arch not in (None, arch)}
        newer = [d.version for d in decs if d.valid and d.version is not None and d.version > WIN7_VERSION]
        if decs and all(d.valid and d.arch not in (None, arch) for d in decs):
            return (f"the INF only has {listing} models: this is {_article(sorted(other_arch)[0])} "
                    f"{'/'.join(sorted(other_arch))} driver (wrong arch folder?)")
        if newer and len(newer) == len(decs):
            return (f"the INF only has {listing} models: this is {_article(os_name(min(newer)))} "
                    f"{os_name(min(newer))} driver (wrong OS folder?)")
        return f"the INF only has {listing} models: none applies to Windows 7 {arch}"

    # --- install sections ------------------------------------------------------------------

    def install_section(self, name: str, arch: str) -> str | None:
        """The DDInstall section Windows uses: ``name.NT<arch>.<major>.<minor>`` (the highest not above 6.1),
        ``name.NT<arch>``, ``name.NT``, then ``name``.

        SetupDiGetActualSectionToInstallEx decorates install sections as it decorates models sections
        (the OS version in SP_ALTPLATFORM_INFO_V2), so Aero's aerogpu_dx11.inf, whose install sections
        are ``AeroGPU_Install.NTx86.6.1`` and ``.NTamd64.6.1``, installs on Windows 7.
        """
        prefix = f"{name}.NT{arch}.".lower()
        versioned = []
        for title in self._sections:
            if title.startswith(prefix):
                dec = parse_decoration(title[len(name) + 1:])
                if dec.valid and dec.version is not None and dec.version <= WIN7_VERSION and dec.product_type is None:
                    versioned.append((dec.version, title))
        if versioned:
            return self.section_title(max(versioned)[1])
        for candidate in (f"{name}.NT{arch}", f"{name}.NT", name):
            if self.has_section(candidate):
                return self.section_title(candidate)
        return None

    def copy_files(self, section: str) -> tuple[tuple[FileRef, ...], tuple[Line, ...]]:
        """Files the ``CopyFiles`` directives of ``section`` copy, and directive lines naming missing sections."""
        files: list[FileRef] = []
        missing: list[Line] = []
        for ln in self.get_all(section, "CopyFiles"):
            for target in ln.values:
                if not target:
                    continue
                if target.startswith("@"):
                    files.append(FileRef(target[1:].strip(), self.section_title(section), ln.lineno))
                    continue
                if not self.has_section(target):
                    missing.append(Line(ln.key, (target,), ln.raw, ln.lineno))
                    continue
                for entry in self.section(target):
                    # dest[,source[,temp[,flags]]]: the source name is what must exist
                    if entry.key is not None:
                        continue
                    name = entry.field(1) or entry.field(0)
                    if name:
                        files.append(FileRef(name, self.section_title(target), entry.lineno))
        return tuple(files), tuple(missing)

    def copies_to_syswow64(self, ref: FileRef) -> bool:
        """Whether ``ref`` lands in SysWOW64: its copy list's ``[DestinationDirs]`` entry (else
        ``DefaultDestDir``) is DIRID 16425 or ``10,SysWOW64``. Such a file is the 32-bit half of an
        x64 package (AeroGPU's WOW64 user-mode drivers), so it is an x86 image by design."""
        line = self.get("DestinationDirs", ref.section) or self.get("DestinationDirs", "DefaultDestDir")
        if line is None:
            return False
        dirid = (line.field(0) or "").strip()
        sub = (line.field(1) or "").strip().strip("\\").lower()
        return dirid == "16425" or (dirid == "10" and sub == "syswow64")

    def add_services(self, install: str) -> tuple[AddService, ...]:
        """``AddService`` directives of ``[<install>.Services]``."""
        out = []
        for ln in self.get_all(f"{install}.Services", "AddService"):
            flags = parse_int(ln.field(1))
            out.append(AddService(ln.value, flags if flags is not None else 0, ln.field(2), ln.lineno))
        return tuple(out)

    def boot_start_binaries(self) -> tuple[str, ...]:
        """File names of the drivers any ``AddService`` of the INF installs with StartType 0 (boot start).

        Windows 7 x64 checks those from their embedded signature, before any catalog is readable.
        """
        found: set[str] = set()
        for section in self.section_names:
            if not section.lower().endswith(".services"):
                continue
            for ln in self.get_all(section, "AddService"):
                si = self.service_install(ln.field(2))
                if si.exists and si.start_type == 0 and si.binary:
                    found.add(si.binary)
        return tuple(sorted(found, key=str.lower))

    def service_install(self, section: str) -> ServiceInstall:
        """Read ServiceType, StartType and ServiceBinary from a service-install section."""
        if not section or not self.has_section(section):
            return ServiceInstall(section=section, exists=False)
        start = self.get(section, "StartType")
        stype = self.get(section, "ServiceType")
        binary = self.get(section, "ServiceBinary")
        path = binary.value if binary else None
        return ServiceInstall(
            section=self.section_title(section),
            exists=True,
            service_type=parse_int(stype.value) if stype else None,
            start_type=parse_int(start.value) if start else None,
            start_raw=start.value if start else None,
            binary=re.split(r"[\\/]", path)[-1] if path else None,
            binary_path=path,
            lineno=self.section_line(section),
            start_lineno=start.lineno if start else None,
            binary_lineno=binary.lineno if binary else None,
        )

    def coinstallers(self, install: str) -> tuple[tuple[CoInstaller, ...], tuple[FileRef, ...]]:
        """Co-installer DLLs registered by ``[<install>.CoInstallers]`` and the files it copies."""
        section = f"{install}.CoInstallers"
        found: list[CoInstaller] = []
        for ln in self.get_all(section, "AddReg"):
            for reg_section in ln.values:
                for entry in self.section(reg_section):
                    if entry.key is None and entry.field(2).lower() == "coinstallers32":
                        for spec in entry.values[4:]:
                            dll, _, entry_point = spec.partition(",")
                            if dll.strip():
                                found.append(CoInstaller(dll.strip(), entry_point.strip() or None, entry.lineno))
        files, _missing = self.copy_files(section)
        return tuple(found), files

    # --- source media ----------------------------------------------------------------------

    def source_disks_files(self, arch: str) -> dict[str, SourceFile]:
        """Files of ``[SourceDisksFiles.<arch>]`` over ``[SourceDisksFiles]``, keyed by lower-case name."""
        disks: dict[str, str] = {}
        for section in ("SourceDisksNames", f"SourceDisksNames.{arch}"):
            for ln in self.section(section):
                if ln.key is not None:
                    disks[ln.key.strip()] = ln.field(3)
        out: dict[str, SourceFile] = {}
        for section in ("SourceDisksFiles", f"SourceDisksFiles.{arch}"):
            for ln in self.section(section):
                name = ln.key if ln.key is not None else ln.value
                if not name:
                    continue
                disk = ln.value if ln.key is not None else ""
                out[name.lower()] = SourceFile(name=name, disk_id=disk, subdir=ln.field(1) if ln.key else "",
                                               lineno=ln.lineno, disk_known=disk in disks,
                                               disk_path=disks.get(disk, ""))
        return out


# --- helpers -------------------------------------------------------------------------------


def os_name(version: tuple[int, int]) -> str:
    """'Windows 10' for (10, 0); 'NT 6.4' for versions without a name."""
    return OS_NAMES.get(version, f"NT {version[0]}.{version[1]}")


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiox" else "a"


def _rank(dec: Decoration) -> tuple[tuple[int, int], int]:
    # Highest version first; at equal versions an arch-specific decoration is more specific.
    return (dec.version or (0, 0), 1 if dec.arch else 0)


def parse_int(text: str) -> int | None:
    """Parse an INF number (decimal or 0x hex); None when it is not one."""
    t = text.strip()
    try:
        return int(t, 16) if t.lower().startswith("0x") else int(t, 10)
    except ValueError:
        return None


def parse_decoration(text: str) -> Decoration:
    """Parse ``NTamd64.6.1`` and friends; invalid text gives ``valid=False``."""
    t = text.strip()
    m = _DECORATION.match(t)
    if not m:
        return Decoration(text=t, valid=False)
    version = None
    if m["major"] is not None:
        version = (int(m["major"]), int(m["minor"]) if m["minor"] is not None else 0)
    ptype = parse_int(m["ptype"]) if m["ptype"] else None
    if m["ptype"] and ptype is None:
        return Decoration(text=t, valid=False)
    build = int(m["build"]) if m["build"] else None
    arch = m["arch"].lower() if m["arch"] else None
    return Decoration(text=t, valid=True, arch=arch, version=version, product_type=ptype, build=build)


# --- Parsing -------------------------------------------------------------------------------


def _decode(data: bytes, name: str, problems: list[InfProblem]) -> tuple[str, str] | None:
    if data.startswith(b"\xff\xfe"):
        text = data[2:].decode("utf-16-le", errors="replace")
        if "\ufffd" in text:
            problems.append(InfProblem(Severity.ERROR, "inf-encoding", None,
                                       "the INF has a UTF-16LE BOM but invalid UTF-16 data",
                                       "re-save the INF as UTF-16LE (Unicode) or ANSI"))
        return text, "utf-16-le"
    if data.startswith(b"\xfe\xff"):
        problems.append(InfProblem(Severity.ERROR, "inf-encoding", None,
                                   "the INF is UTF-16 big-endian, which Windows 7 cannot read",
                                   "re-save the INF as UTF-16LE (Unicode) or ANSI"))
        return data[2:].decode("utf-16-be", errors="replace"), "utf-16-be"
    if data.startswith(b"\xef\xbb\xbf"):
        problems.append(InfProblem(Severity.WARNING, "inf-encoding", 1,
                                   "the INF is UTF-8 with a BOM; Windows 7 reads INFs as ANSI or UTF-16LE, "
                                   "so non-ASCII text and the BOM turn into junk characters",
                                   "re-save the INF as ANSI (cp1252) or UTF-16LE with a BOM"))
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if b"\0" in data:
        odd_zeros = data[1::2].count(0)
        if len(data) >= 4 and odd_zeros >= len(data) // 2 * 0.9:
            msg = "the INF looks like UTF-16LE without a byte-order mark, which Windows reads as ANSI"
            fix = "re-save the INF as UTF-16LE with a BOM, or as ANSI"
        else:
            msg = "the INF contains NUL bytes: it is binary data, not an INF text file"
            fix = "replace it with the INF shipped in the virtio-win folder"
        problems.append(InfProblem(Severity.ERROR, "inf-encoding", None, msg, fix))
        return None
    return data.decode("cp1252", errors="replace"), "cp1252"


def _strip_comment(text: str) -> tuple[str, bool]:
    """Remove a ``;`` comment outside quotes; also report an unterminated quote."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            return text[:i], False
    return text, quoted


def _logical_lines(text: str, name: str, problems: list[InfProblem]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    pending: str | None = None
    start = 0
    for number, physical in enumerate(_LINE_BREAK.split(text), start=1):
        body, open_quote = _strip_comment(physical)
        if open_quote:
            problems.append(InfProblem(Severity.WARNING, "inf-unterminated-quote", number,
                                       "a quoted string is not closed on this line",
                                       'add the closing " (inside quotes, write "" for a literal quote)'))
        if pending is None:
            start = number
            pending = ""
        stripped = body.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1]
            continue
        out.append((pending + body, start))
        pending = None
    if pending is not None:
        problems.append(InfProblem(Severity.WARNING, "inf-dangling-continuation", start,
                                   "the last line ends with a \\ continuation",
                                   "remove the trailing backslash"))
        out.append((pending, start))
    return out


class _Resolver:
    """Applies quoting, ``%%`` and ``%strkey%`` rules to one field."""

    def __init__(self, strings: dict[str, str], name: str, problems: list[InfProblem]) -> None:
        self.strings = strings
        self.name = name
        self.problems = problems
        self.reported: set[tuple[str, int]] = set()

    def field(self, text: str, lineno: int, substitute: bool = True) -> str:
        out: list[str] = []
        quoted = False
        trail = 0  # length of out that is protected from trailing-space trimming
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch == '"':
                if quoted and i + 1 < n and text[i + 1] == '"':
                    out.append('"')
                    i += 2
                    trail = len(out)
                    continue
                quoted = not quoted
                trail = len(out)
                i += 1
                continue
            if ch == "%" and substitute:
                end = text.find("%", i + 1)
                if end == -1:
                    out.append(ch)
                    i += 1
                    continue
                key = text[i + 1:end]
                out.append(self._lookup(key, lineno))
                i = end + 1
                if quoted:
                    trail = len(out)
                continue
            if not quoted and not out and ch in " \t":
                i += 1  # leading blanks outside quotes
                continue
            out.append(ch)
            if quoted:
                trail = len(out)
            i += 1
        joined = "".join(out[:trail]) + "".join(out[trail:]).rstrip(" \t")
        return joined

    def _lookup(self, key: str, lineno: int) -> str:
        if key == "":
            return "%"
        value = self.strings.get(key.lower())
        if value is not None:
            return value
        if key.isdigit():
            return f"%{key}%"  # a DIRID such as %12%: resolved by Windows at install time
        if (key.lower(), lineno) not in self.reported:
            self.reported.add((key.lower(), lineno))
            self.problems.append(InfProblem(
                Severity.WARNING, "inf-undefined-string", lineno,
                f"%{key}% is not defined in [Strings]; Windows shows the literal text",
                f'add {key} = "..." to [Strings], or write %% for a literal percent sign'))
        return f"%{key}%"


def _split_unquoted(text: str, sep: str, first_only: bool = False) -> list[str]:
    parts: list[str] = []
    quoted = False
    last = 0
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append(text[last:i])
            last = i + 1
            if first_only:
                break
    parts.append(text[last:])
    return parts


def parse_inf(data: bytes, name: str = "driver.inf") -> Inf:
    """Parse INF bytes. Never raises: problems (with line numbers) are in ``Inf.problems``."""
    problems: list[InfProblem] = []
    decoded = _decode(data, name, problems)
    if decoded is None:
        return Inf(name, "binary", tuple(problems), {}, {}, {})
    text, encoding = decoded
    raw_sections: dict[str, list[tuple[str, int]]] = {}
    headers: dict[str, tuple[str, int]] = {}
    current: str | None = None
    outside_reported = False
    for logical, lineno in _logical_lines(text, name, problems):
        stripped = logical.strip()
        if not stripped:
            continue
        if stripped.startswith("["):
            close = stripped.find("]")
            title = stripped[1:close].strip() if close != -1 else ""
            if close == -1 or not title:
                problems.append(InfProblem(Severity.ERROR, "inf-bad-section", lineno,
                                           f"malformed section header {stripped[:60]!r}",
                                           "write section headers as [SectionName]"))
                current = None
                continue
            current = title.lower()
            headers.setdefault(current, (title, lineno))
            raw_sections.setdefault(current, [])
            continue
        if current is None:
            if not outside_reported:
                outside_reported = True
                problems.append(InfProblem(Severity.WARNING, "inf-text-outside-section", lineno,
                                           f"text before the first [section] is ignored: "
                                           f"{stripped[:60]!r}",
                                           "move it into a section or make it a ; comment"))
            continue
        raw_sections[current].append((stripped, lineno))

    if not headers:
        problems.append(InfProblem(Severity.ERROR, "inf-no-sections", None,
                                   "the file has no [sections]: it is not an INF file",
                                   "replace it with the INF shipped in the virtio-win folder"))

    strings = _read_strings(raw_sections, name, problems)
    resolver = _Resolver(strings, name, problems)
    sections: dict[str, tuple[Line, ...]] = {}
    for key, entries in raw_sections.items():
        is_strings = key == "strings" or key.startswith("strings.")
        lines = []
        for raw, lineno in entries:
            lines.append(_parse_line(raw, lineno, resolver, substitute=not is_strings))
        sections[key] = tuple(lines)
    return Inf(name, encoding, tuple(problems), strings, sections, headers)


def _parse_line(raw: str, lineno: int, resolver: _Resolver, substitute: bool) -> Line:
    head = _split_unquoted(raw, "=", first_only=True)
    if len(head) == 2:
        key: str | None = resolver.field(head[0], lineno, substitute).strip()
        rest = head[1]
    else:
        key, rest = None, raw
    values = tuple(resolver.field(v, lineno, substitute) for v in _split_unquoted(rest, ","))
    if values == ("",):
        values = ()
    return Line(key, values, raw, lineno)


def _read_strings(raw_sections: dict[str, list[tuple[str, int]]], name: str,
                  problems: list[InfProblem]) -> dict[str, str]:
    # [Strings] first, then [Strings.0409] (US English) overrides: what an en-US Windows 7 reads.
    plain = _Resolver({}, name, problems)
    strings: dict[str, str] = {}
    for section in ("strings", "strings.0409"):
        for raw, lineno in raw_sections.get(section, []):
            head = _split_unquoted(raw, "=", first_only=True)
            if len(head) != 2:
                continue
            key = plain.field(head[0], lineno, substitute=False).strip().lower()
            strings[key] = plain.field(head[1], lineno, substitute=False).strip()
    return strings
