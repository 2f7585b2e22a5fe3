"""Render the Guest Tools batch scripts (setup, uninstall, verify) and their config files.

The scripts are Windows 7 ``cmd.exe`` batch files kept as package data under
``aero_media/media/templates/`` and rendered by :mod:`aero_media.media.templates`
(strict: a missing or unused value fails the build).

Everything media-specific that the scripts need at run time is written to two
small generated files that the scripts ``call``:

* ``config/devices.cmd``: the device contract (services, hardware IDs, class
  GUIDs, CriticalDeviceDatabase keys for the boot-critical device);
* ``config/media.cmd``: what this media holds (version, signing policy, the INF
  packages per architecture, the certificates, the storage pre-seed files).

``config/checks.cmd`` holds the read-only checks that ``setup.cmd`` and
``verify.cmd`` share (media files against ``config/files.sha256`` and
``manifest.json``, the manifest's SHA-256, the SHA-2 updates of :data:`HOTFIXES`,
the system clock against :data:`CLOCK_YEARS`), so that both judge them alike.
``setup.cmd /verify-media`` and ``verify.cmd`` read ``config/files.sha256``
(see :func:`render_media_hashes`).

All output is ASCII with CRLF line ends; bad input raises :class:`TemplateError`.
Values that end up inside batch code are restricted to characters that are inert
in ``cmd.exe`` (no ``% ! ^ & | < > "``), so no escaping is ever needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..spec.contract import Contract, Device
from ..spec.types import SigningPolicy
from ..win7.pnp import cdd_keys, contract_ids
from ..winnames import MEDIA_NAME
from .templates import TemplateError, crlf, render, require_ascii

ARCHES: tuple[str, ...] = ("x86", "amd64")

#: Media-relative path of the hash list that ``setup.cmd /verify-media`` reads.
MEDIA_HASHES_PATH = "config/files.sha256"
#: Media-relative paths of the generated config files.
DEVICES_CMD_PATH = "config/devices.cmd"
MEDIA_CMD_PATH = "config/media.cmd"
#: The checks setup.cmd and verify.cmd share (media integrity, updates, clock).
CHECKS_CMD_PATH = "config/checks.cmd"

#: Windows 7 updates that setup.cmd and verify.cmd warn about when missing, with
#: what each one is. Without them Windows 7 cannot check SHA-2 signatures.
HOTFIXES: tuple[tuple[str, str], ...] = (
    ("KB3033929", "SHA-2 code signing support, 2015"),
    ("KB4474419", "SHA-2 code signing support, 2019"),
    ("KB4490628", "servicing stack update that KB4474419 needs"),
)
#: A system clock outside these years (inclusive) is implausible: signature and
#: certificate checks compare against it, so setup.cmd and verify.cmd warn.
CLOCK_YEARS: tuple[int, int] = (2010, 2050)

#: Exit codes of the scripts, as documented in README.txt (the tests check both agree).
SETUP_EXIT_CODES: dict[int, str] = {
    0: "success (or, with /check: setup would succeed)",
    2: "bad command line",
    10: "not running as Administrator",
    11: "driver folder or driver package for this architecture missing (or unsupported architecture)",
    12: "a certificate file named by config\\media.cmd is missing under certs\\",
    13: "storage pre-seed impossible: virtio-blk driver, its .sys, or its AddService line missing",
    14: "media integrity: a file is missing or differs from config\\files.sha256 or manifest.json, "
        "or config is missing",
    15: "an install step failed (driver package, certificate or boot setting); see install.log",
}
UNINSTALL_EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "finished, but some recorded items could not be removed (they stay recorded; see uninstall.log)",
    2: "bad command line",
    10: "not running as Administrator",
    13: "/cleanupstorage refused: the storage driver is in use (pass /cleanupstorageforce)",
    14: "config\\devices.cmd or config\\media.cmd missing next to uninstall.cmd",
}
VERIFY_EXIT_CODES: dict[int, str] = {
    0: "PASS",
    1: "WARN: works, but something needs attention",
    2: "FAIL: the drivers will not work as installed, or this media is damaged",
    3: "bad command line",
    14: "config\\devices.cmd, config\\media.cmd or config\\checks.cmd missing next to verify.cmd",
}

@dataclass(frozen=True)
class ScriptOption:
    """One option of a Guest Tools script: the ``AGT_OPT_<variable>`` it sets, and its spellings.

    ``flag`` is the spelling ``/?`` and README.txt describe; ``aliases`` are other
    spellings that do exactly the same. They are the ones Aero's own Guest Tools
    accept (``guest-tools/setup.cmd`` and ``guest-tools/uninstall.cmd`` in Aero) and
    its ``docs/windows7-guest-tools.md`` tells users to run, so those command lines
    work on this media too. Matching is case-insensitive, and a leading ``-``
    counts as ``/``.
    """

    flag: str
    variable: str
    value: str = "1"
    aliases: tuple[str, ...] = ()


#: Aero's spellings of ``/forcesigningpolicy:<policy>`` for older policy names
#: (``guest-tools/setup.cmd`` in Aero: "legacy aliases").
_LEGACY_POLICY_NAMES: dict[SigningPolicy, tuple[str, ...]] = {
    SigningPolicy.TEST: ("testsigning",),
    SigningPolicy.NONE: ("nointegritychecks",),
}

#: The options of setup.cmd: the only place a spelling is accepted (the parser is
#: rendered from it; anything else exits 2 "unknown option").
SETUP_OPTIONS: tuple[ScriptOption, ...] = (
    ScriptOption("/check", "CHECK", aliases=("/validate",)),
    ScriptOption("/force", "FORCE"),
    ScriptOption("/quiet", "QUIET"),
    ScriptOption("/stageonly", "STAGEONLY", aliases=("/stage-only",)),
    ScriptOption("/testsigning", "TESTSIGNING", aliases=("/forcetestsigning", "/force-testsigning")),
    ScriptOption("/notestsigning", "NOTESTSIGNING", aliases=("/no-testsigning",)),
    ScriptOption("/nointegritychecks", "NOINTEGRITYCHECKS",
                 aliases=("/forcenointegritychecks", "/no-integrity-checks")),
    *(ScriptOption(f"/forcesigningpolicy:{p.value}", "SIGNINGPOLICY", p.value,
                   aliases=tuple(f"/forcesigningpolicy:{a}" for a in _LEGACY_POLICY_NAMES.get(p, ())))
      for p in SigningPolicy),
    ScriptOption("/installcerts", "INSTALLCERTS", aliases=("/install-certs",)),
    ScriptOption("/verify-media", "VERIFYMEDIA", aliases=("/verifymedia",)),
    ScriptOption("/noreboot", "NOREBOOT", aliases=("/no-reboot",)),
    ScriptOption("/skipstorage", "SKIPSTORAGE", aliases=("/skip-storage",)),
    ScriptOption("/?", "HELP", aliases=("/h", "/help")),
)
#: The options of uninstall.cmd (see :data:`SETUP_OPTIONS`).
UNINSTALL_OPTIONS: tuple[ScriptOption, ...] = (
    ScriptOption("/check", "CHECK"),
    ScriptOption("/force", "FORCE"),
    ScriptOption("/quiet", "QUIET"),
    ScriptOption("/noreboot", "NOREBOOT", aliases=("/no-reboot",)),
    ScriptOption("/cleanupstorage", "CLEANUPSTORAGE", aliases=("/cleanup-storage",)),
    ScriptOption("/cleanupstorageforce", "CLEANUPSTORAGEFORCE", aliases=("/cleanup-storage-force",)),
    ScriptOption("/?", "HELP", aliases=("/h", "/help")),
)

# A spelling is compared with `if /i "%AGT_ARG%"=="..."`: no quotes, spaces or
# cmd.exe metacharacters, and no "=" or ";" (cmd.exe splits arguments there).
_OPTION_RE = re.compile(r"^/(\?|[a-z][a-z0-9-]*(:[a-z0-9-]+)?)$")
_OPTION_VAR_RE = re.compile(r"^[A-Z][A-Z0-9]*$")


def _check_options(script: str, options: Sequence[ScriptOption]) -> None:
    seen: dict[str, str] = {}
    for opt in options:
        if not _OPTION_VAR_RE.match(opt.variable) or not _NAME_RE.match(opt.value):
            raise TemplateError(f"{script} option {opt.flag}: variable {opt.variable!r} or value {opt.value!r} "
                                "is not safe in cmd.exe")
        for spelling in (opt.flag, *opt.aliases):
            if not _OPTION_RE.match(spelling):
                raise TemplateError(f"{script} option {spelling!r} must be '/' and lower-case letters, digits, "
                                    "'-' and one ':' (safe as one cmd.exe argument)")
            if spelling in seen:
                raise TemplateError(f"{script} option {spelling} is listed twice (for {seen[spelling]} "
                                    f"and {opt.flag})")
            seen[spelling] = opt.flag


def _option_values(script: str, options: Sequence[ScriptOption]) -> tuple[dict[str, str], str]:
    """A script's option values (variables, parser lines, ``/?`` alias lines) and README.txt's alias list."""
    _check_options(script, options)
    variables = list(dict.fromkeys(o.variable for o in options))
    parse = [f'if /i "%AGT_ARG%"=="{s}" set "AGT_OPT_{o.variable}={o.value}" & goto :parse_args'
             for o in options for s in (o.flag, *o.aliases)]
    # The help spellings are listed with /? itself.
    aliases = [f"  {' '.join(o.aliases)} = {o.flag}" for o in options if o.aliases and o.variable != "HELP"]
    values = {"OPTION_VARIABLES": " ".join(variables), "OPTION_PARSE": "\n".join(parse),
              "OPTION_ALIASES": "\n".join(f"echo {a}" for a in aliases)}
    return values, "\n".join(aliases)


# Characters that are inert inside quoted cmd.exe arguments and `set "X=..."`.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_PATH_PART_RE = MEDIA_NAME
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SHA1_RE = re.compile(r"^[0-9A-F]{40}$")


@dataclass(frozen=True)
class DriverEntry:
    """One driver package on the media, as ``drivers\\<arch>\\<name>\\<inf>``."""

    arch: str  # "x86" | "amd64"
    name: str  # driver folder name, e.g. "viostor"
    inf: str  # INF file name in that folder, e.g. "viostor.inf"
    service: str  # service from the contract
    device: str  # contract device name, e.g. "virtio-blk"
    sys_file: str | None  # service binary file name (for storage pre-seed), e.g. "viostor.sys"

    @property
    def folder(self) -> str:
        """Media-relative folder, with backslashes."""
        return f"drivers\\{self.arch}\\{self.name}"

    @property
    def inf_path(self) -> str:
        """Media-relative INF path, with backslashes (what setup.cmd passes to pnputil)."""
        return f"{self.folder}\\{self.inf}"


def _require_name(what: str, value: str) -> str:
    require_ascii(what, value)
    if not _NAME_RE.match(value):
        raise TemplateError(f"{what} {value!r} must be letters, digits, '.', '_', '+' or '-' (safe in cmd.exe)")
    return value


def _quoted_list(items: Sequence[str]) -> str:
    """Space-separated, double-quoted items for `for %%X in (...)`; empty string for none."""
    return " ".join(f'"{i}"' for i in items)


def device_prefix(device: Device | str) -> str:
    """Variable prefix for a contract device: ``virtio-blk`` -> ``AERO_VIRTIO_BLK``, ``aero-gpu`` -> ``AERO_GPU``.

    A name that already starts with ``aero-`` is not prefixed twice: Aero's ``devices.cmd``
    names AeroGPU ``AERO_GPU_SERVICE``/``AERO_GPU_HWIDS`` (tools/guest-tools/validate_config.py in Aero).
    """
    name = device if isinstance(device, str) else device.name
    body = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")
    return body if body.startswith("AERO_") else "AERO_" + body


def _require_contract_file(path: str) -> str:
    require_ascii("contract file", path)
    if not re.fullmatch(r"[A-Za-z0-9._/+-]+", path):
        raise TemplateError(f"contract file {path!r} must be letters, digits, '.', '_', '+', '-' or '/' "
                            "(it is written into a cmd.exe comment)")
    return path


def render_devices_cmd(contract: Contract) -> str:
    """Render ``config/devices.cmd`` (LF text) from the device contract."""
    entries: list[str] = []
    prefixes: list[str] = []
    for dev in contract.devices.values():
        prefix = device_prefix(dev)
        prefixes.append(prefix)
        for what, value in (("service", dev.service), ("sys", dev.sys), ("inf", dev.inf),
                            ("setup class", dev.setup_class)):
            _require_name(f"contract device {dev.name} {what}", value)
        require_ascii(f"contract device {dev.name} class GUID", dev.class_guid)
        if not re.fullmatch(r"\{[0-9A-F-]{36}\}", dev.class_guid):
            raise TemplateError(f"contract device {dev.name}: class GUID {dev.class_guid!r} is not a {{GUID}}")
        hwids = contract_ids(dev)
        for h in hwids:
            if not re.fullmatch(r"[A-Za-z0-9_&\\]+", h):
                raise TemplateError(f"contract device {dev.name}: hardware ID {h!r} has unexpected characters")
        entries.append(
            render(
                "devices.entry.cmd",
                {
                    "DEVICE": dev.name,
                    "PREFIX": prefix,
                    "VENDOR_ID": dev.vendor_id,
                    "DEVICE_ID": dev.device_id,
                    "REVISION": dev.revision or "(any)",
                    "CLASS_CODE": dev.class_code,
                    "SERVICE": dev.service,
                    "SYS": dev.sys,
                    "INF": dev.inf,
                    "SETUP_CLASS": dev.setup_class,
                    "CLASS_GUID": dev.class_guid,
                    "BOOT_CRITICAL": "1" if dev.boot_critical else "0",
                    "HWIDS": _quoted_list(hwids),
                    "CDD_KEYS": _quoted_list(cdd_keys(dev)) if dev.boot_critical else "",
                },
            ).rstrip("\n")
        )
    return render(
        "devices.cmd",
        {
            "CONTRACT": _require_name("contract name", contract.name),
            "CONTRACT_VERSION": _require_name("contract version", contract.version),
            "CONTRACT_FILE": _require_contract_file(contract.file),
            "HEADER_NAME": _require_name("contract header name", contract.header.name),
            "HEADER_VERSION": _require_name("contract header version", contract.header.version),
            "HEADER_SCHEMA_VERSION": str(contract.header.schema_version),
            "DEVICE_PREFIXES": " ".join(prefixes),
            "DEVICE_ENTRIES": "\n\n".join(entries),
        },
    )


def _check_drivers(contract: Contract, drivers: Sequence[DriverEntry]) -> None:
    seen: set[tuple[str, str]] = set()
    infs: set[str] = set()
    for d in drivers:
        if d.arch not in ARCHES:
            raise TemplateError(f"driver {d.name}: arch {d.arch!r} must be one of {', '.join(ARCHES)}")
        _require_name("driver folder name", d.name)
        _require_name(f"driver {d.name} INF name", d.inf)
        _require_name(f"driver {d.name} service", d.service)
        if not d.inf.lower().endswith(".inf"):
            raise TemplateError(f"driver {d.name}: INF name {d.inf!r} does not end in .inf")
        if d.sys_file is not None:
            _require_name(f"driver {d.name} sys file", d.sys_file)
        if d.device not in contract.devices:
            raise TemplateError(f"driver {d.name}: device {d.device!r} is not in the contract")
        key = (d.arch, d.name.lower())
        if key in seen:
            raise TemplateError(f"driver {d.name} listed twice for {d.arch}")
        seen.add(key)
        if d.inf_path.lower() in infs:
            raise TemplateError(f"INF {d.inf_path} listed twice")
        infs.add(d.inf_path.lower())


def _storage_values(contract: Contract, drivers: Sequence[DriverEntry]) -> dict[str, str]:
    """media.cmd values for the storage pre-seed: device prefix, INF and .sys per arch."""
    dev = contract.boot_critical
    values = {"STORAGE_PREFIX": device_prefix(dev) if dev else ""}
    for arch in ARCHES:
        values.update({f"STORAGE_INF_{arch.upper()}": "", f"STORAGE_SYS_{arch.upper()}": "",
                       f"STORAGE_SYS_NAME_{arch.upper()}": ""})
        if dev is None:
            continue
        entries = [d for d in drivers if d.arch == arch and d.device == dev.name]
        if len(entries) > 1:
            raise TemplateError(f"{len(entries)} drivers for boot-critical device {dev.name} on {arch}; expected one")
        inf = sys_path = sys_name = ""
        if entries:
            e = entries[0]
            if e.service.lower() != dev.service.lower():
                raise TemplateError(
                    f"driver {e.name} ({arch}) installs service {e.service!r} but the contract's "
                    f"{dev.name} service is {dev.service!r}; the storage pre-seed would not match"
                )
            if not e.sys_file:
                raise TemplateError(f"driver {e.name} ({arch}) is boot-critical but has no sys_file "
                                    "for the storage pre-seed")
            inf, sys_path, sys_name = e.inf_path, f"{e.folder}\\{e.sys_file}", e.sys_file
        values[f"STORAGE_INF_{arch.upper()}"] = inf
        values[f"STORAGE_SYS_{arch.upper()}"] = sys_path
        values[f"STORAGE_SYS_NAME_{arch.upper()}"] = sys_name
    return values


def _thumbprint_lines(certs: Sequence[str], thumbprints: Mapping[str, str] | None) -> str:
    """``set "AGT_CERT_SHA1_<file>=<HEX>"`` lines (a comment when there are none)."""
    thumbprints = dict(thumbprints or {})
    unknown = set(thumbprints) - set(certs)
    if unknown:
        raise TemplateError(f"cert_thumbprints names certificate(s) not on the media: {', '.join(sorted(unknown))}")
    lines = []
    for name in certs:
        if name in thumbprints:
            t = thumbprints[name]
            require_ascii(f"thumbprint of {name}", t)
            if not _SHA1_RE.match(t):
                raise TemplateError(f"thumbprint of {name} {t!r} must be 40 hex digits in upper case "
                                    "(SHA-1, as aero_media.win7.certs.thumbprint gives it)")
            lines.append(f'set "AGT_CERT_SHA1_{name}={t}"')
    return "\n".join(lines) if lines else "@rem (none)"


@dataclass(frozen=True)
class MediaInfo:
    """What the scripts need to know about the media beyond its drivers."""

    signing_policy: SigningPolicy
    certs: Sequence[str]
    trust_certs: Sequence[str]
    sha256_only: bool
    version: str
    build_id: str
    label: str
    cert_thumbprints: Mapping[str, str] | None = None


def render_media_cmd(contract: Contract, drivers: Sequence[DriverEntry], media: MediaInfo) -> str:
    """Render ``config/media.cmd`` (LF text): what this media holds."""
    _check_drivers(contract, drivers)
    all_certs = list(dict.fromkeys([*media.trust_certs, *media.certs]))
    values = {
        "VERSION": media.version,
        "BUILD_ID": media.build_id,
        "LABEL": media.label,
        "SIGNING_POLICY": media.signing_policy.value,
        "SHA256_ONLY": "1" if media.sha256_only else "0",
        "TEST_CERTS": _quoted_list(media.certs),
        "TRUST_CERTS": _quoted_list(media.trust_certs),
        "CERT_THUMBPRINTS": _thumbprint_lines(all_certs, media.cert_thumbprints),
    }
    for arch in ARCHES:
        values[f"INFS_{arch.upper()}"] = _quoted_list([d.inf_path for d in drivers if d.arch == arch])
    values.update(_storage_values(contract, drivers))
    return render("media.cmd", values)


_KB_RE = re.compile(r"^KB[0-9]+$")
# Text that is echoed by batch code: letters, digits, spaces and inert punctuation.
_TEXT_RE = re.compile(r"^[A-Za-z0-9 ,.:;()+/_-]+$")


def _hotfix_values() -> dict[str, str]:
    """checks.cmd values for :data:`HOTFIXES` and :data:`CLOCK_YEARS`."""
    lines = []
    for kb, what in HOTFIXES:
        if not _KB_RE.match(kb):
            raise TemplateError(f"hotfix {kb!r} must be KB and digits")
        if not _TEXT_RE.match(what):
            raise TemplateError(f"hotfix {kb} text {what!r} has a character cmd.exe treats specially")
        lines.append(f'set "AGT_HOTFIX_{kb}={what}"')
    low, high = CLOCK_YEARS
    if not 1980 <= low < high <= 9999:
        raise TemplateError(f"CLOCK_YEARS {CLOCK_YEARS!r} must be two increasing four-digit years")
    return {"HOTFIXES": " ".join(kb for kb, _ in HOTFIXES), "HOTFIX_TEXTS": "\n".join(lines),
            "CLOCK_MIN_YEAR": str(low), "CLOCK_MAX_YEAR": str(high)}


def _readme_driver_table(contract: Contract, drivers: Sequence[DriverEntry]) -> str:
    rows = []
    for arch in ARCHES:
        for d in (d for d in drivers if d.arch == arch):
            dev = contract.devices[d.device]
            rows.append(f"  {arch:<6} {d.device:<13} {d.inf_path:<44} service {d.service}, class {dev.setup_class}")
    return "\n".join(rows) if rows else "  (none)"


def _validate_common(
    signing_policy: SigningPolicy, certs: Sequence[str], trust_certs: Sequence[str], version: str, build_id: str,
    label: str
) -> None:
    _require_name("version", version)
    _require_name("build_id", build_id)
    _require_name("label", label)
    for c in [*certs, *trust_certs]:
        _require_name("certificate file name", c)
    if len({c.lower() for c in certs}) != len(certs) or len({c.lower() for c in trust_certs}) != len(trust_certs):
        raise TemplateError("a certificate file is listed twice")
    if signing_policy.certs_required and not certs:
        raise TemplateError(f"signing_policy {signing_policy.value} needs at least one certificate in certs "
                            "(for Root and TrustedPublisher)")


def render_guest_tools_scripts(
    contract: Contract,
    drivers: Sequence[DriverEntry],
    *,
    signing_policy: SigningPolicy,
    certs: Sequence[str],
    trust_certs: Sequence[str],
    sha256_only: bool,
    version: str,
    build_id: str,
    label: str,
    cert_thumbprints: Mapping[str, str] | None = None,
) -> dict[str, bytes]:
    """Render the Guest Tools scripts and their config; media-relative path -> CRLF ASCII bytes.

    ``certs`` are file names under ``certs/`` that go to Root and TrustedPublisher
    (test signing; also with ``setup.cmd /installcerts`` under other policies);
    ``trust_certs`` are file names under ``certs/`` that go to TrustedPublisher only
    (publisher pre-trust, always). ``sha256_only`` says the catalogs carry only a
    SHA-256 signature: then a missing KB3033929 (which setup and verify warn about
    on any media, with the other :data:`HOTFIXES`) also skips the storage pre-seed on
    64-bit Windows and is a FAIL in verify.cmd there.
    ``cert_thumbprints`` maps certificate file names to their SHA-1 thumbprints
    (upper-case hex of the SHA-1 of the DER bytes, as :func:`aero_media.win7.certs.thumbprint`
    gives them); pass it for every certificate, so that setup and uninstall identify
    certificates in the stores on any display language (without it they read
    ``certutil -dump``, which only works on English Windows).

    Returns ``setup.cmd``, ``uninstall.cmd``, ``verify.cmd``, ``README.txt``,
    ``config/devices.cmd``, ``config/media.cmd`` and ``config/checks.cmd``. The
    caller adds ``config/files.sha256`` from :func:`render_media_hashes` once every
    other media file but ``manifest.json`` is final, then ``manifest.json``, which
    must list ``config/files.sha256`` with its sha256 on a ``"sha256": "<hex>"``
    line of its own (``config/checks.cmd`` looks for it there).
    """
    _validate_common(signing_policy, certs, trust_certs, version, build_id, label)
    common = {"VERSION": version, "BUILD_ID": build_id, "LABEL": label}
    setup_options, setup_aliases = _option_values("setup.cmd", SETUP_OPTIONS)
    uninstall_options, uninstall_aliases = _option_values("uninstall.cmd", UNINSTALL_OPTIONS)
    out_text: dict[str, str] = {
        "setup.cmd": render("setup.cmd", {**common, **setup_options}),
        "uninstall.cmd": render("uninstall.cmd", {**common, **uninstall_options}),
        "verify.cmd": render("verify.cmd", common),
        DEVICES_CMD_PATH: render_devices_cmd(contract),
        MEDIA_CMD_PATH: render_media_cmd(contract, drivers, MediaInfo(
            signing_policy, certs, trust_certs, sha256_only, version, build_id, label, cert_thumbprints)),
        CHECKS_CMD_PATH: render("checks.cmd", {**common, **_hotfix_values()}),
        "README.txt": render(
            "README.txt",
            {
                **common,
                "CONTRACT": f"{contract.name} {contract.version}",
                "SIGNING_POLICY": signing_policy.value,
                "SHA256_ONLY": "yes" if sha256_only else "no",
                "TEST_CERTS": ", ".join(f"certs\\{c}" for c in certs) or "(none)",
                "TRUST_CERTS": ", ".join(f"certs\\{c}" for c in trust_certs) or "(none)",
                "DRIVER_TABLE": _readme_driver_table(contract, drivers),
                "SETUP_ALIASES": setup_aliases,
                "UNINSTALL_ALIASES": uninstall_aliases,
                "SETUP_EXIT_CODES": _exit_code_table(SETUP_EXIT_CODES),
                "UNINSTALL_EXIT_CODES": _exit_code_table(UNINSTALL_EXIT_CODES),
                "VERIFY_EXIT_CODES": _exit_code_table(VERIFY_EXIT_CODES),
                "HOTFIX_TABLE": "\n".join(f"      {kb}  {what}" for kb, what in HOTFIXES),
                "CLOCK_MIN_YEAR": str(CLOCK_YEARS[0]),
                "CLOCK_MAX_YEAR": str(CLOCK_YEARS[1]),
            },
        ),
    }
    return {path: crlf(text) for path, text in out_text.items()}


def _exit_code_table(codes: Mapping[int, str]) -> str:
    return "\n".join(f"  {code:>3}  {text}" for code, text in codes.items())


def media_path(path: str) -> str:
    """Normalise a media-relative path to backslashes and check it is safe for the scripts."""
    require_ascii("media path", path)
    p = path.replace("/", "\\")
    parts = p.split("\\")
    if not p or p.startswith("\\") or ":" in p or any(part in ("", ".", "..") for part in parts):
        raise TemplateError(f"media path {path!r} must be relative, without empty, '.' or '..' parts")
    for part in parts:
        if not _PATH_PART_RE.match(part) or part != part.strip():
            raise TemplateError(
                f"media path {path!r}: {part!r} has a character cmd.exe treats specially "
                "(allowed: letters, digits, space, and _ . + ( ) [ ] { } # $ @ , ; = ~ -)"
            )
    return p


def render_media_hashes(files: Sequence[tuple[str, str, int]]) -> bytes:
    """Render ``config/files.sha256``: one ``<sha256> <size> <path>`` line per media file.

    ``files`` are (media-relative path, lower-case hex SHA-256, size in bytes). List
    every file on the media except ``config/files.sha256`` itself (and, if its own
    entry would be circular, ``manifest.json``). Lines are sorted by path, paths use
    backslashes; ``#`` lines are comments. CRLF, ASCII.
    """
    seen: dict[str, str] = {}
    lines = []
    for path, sha, size in files:
        p = media_path(path)
        if p.lower() == MEDIA_HASHES_PATH.replace("/", "\\"):
            raise TemplateError(f"{MEDIA_HASHES_PATH} cannot list itself")
        if p.lower() in seen:
            raise TemplateError(f"media path {path!r} listed twice (as {seen[p.lower()]!r})")
        seen[p.lower()] = path
        if not _SHA256_RE.match(sha):
            raise TemplateError(f"media path {path!r}: sha256 {sha!r} must be 64 lower-case hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise TemplateError(f"media path {path!r}: size {size!r} must be a non-negative int")
        lines.append((p.lower(), f"{sha} {size} {p}"))
    header = [
        "# Aero Guest Tools media file list, read by setup.cmd /verify-media.",
        "# <sha256> <size in bytes> <path relative to the media root>",
    ]
    return crlf("\n".join(header + [line for _, line in sorted(lines)]))
