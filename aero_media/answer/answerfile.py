r"""``autounattend.xml`` for a serviced Windows 7 DVD: Setup stages the drivers itself, optionally installs unattended.

Windows 7 Setup reads ``autounattend.xml`` from the root of a CD/DVD by itself (the implicit
answer-file search order of the Unattended Windows Setup Reference). With
``Microsoft-Windows-PnpCustomizationsWinPE`` (pass ``windowsPE``) it loads the drivers in its
Windows PE and copies them into the new system's driver store; with
``Microsoft-Windows-PnpCustomizationsNonWinPE`` (pass ``offlineServicing``) it stages every
package into the offline image's driver store: the part of DISM that cannot run on Linux.

Drive letters in Windows PE depend on the disks attached, so each package is listed under every
letter the DVD may get (``C:`` to ``Z:`` except ``X:``, Windows PE's own RAM disk), always as
``<letter>:\win7\<arch>\<driver>`` (the drivers ISO's layout, which the serviced ISO then carries
too). That Setup skips a listed path that does not exist is not confirmed on Windows 7 (docs/windows7.md,
Answer files, weighs this against ``%configsetroot%``), one reason the file is opt-in. Everything we write is
checked against our own XML Schema (``unattend.xsd``) before it is placed.

Secrets (the account's password, the product key) are read from a file or an environment variable
when the medium is written and go straight into the ISO from memory: never into a file of their own
(which a killed run would leave behind), messages, records or doit's dep file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets as _random
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import InternalError, SpecError
from ..paths import MediaLayout
from ..spec.model import SecretSource, Spec, Unattended
from ..spec.types import AnswerFile, Arch, Partitioning

FILE_NAME = "autounattend.xml"
"""Where Setup looks on removable media: the root (then ``\\Sources``)."""
SCHEMA_FILE = Path(__file__).with_name("unattend.xsd")

UNATTEND_NS = "urn:schemas-microsoft-com:unattend"
WCM_NS = "http://schemas.microsoft.com/WMIConfig/2002/State"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
PUBLIC_KEY_TOKEN = "31bf3856ad364e35"
"""Every Windows component's token (the reference's component pages)."""

PROCESSOR_ARCHITECTURE: dict[Arch, str] = {Arch.X86: "x86", Arch.AMD64: "amd64"}
"""Our arch -> the component attribute (Windows SIM's names: amd64, never x64)."""

DRIVE_LETTERS = "CDEFGHIJKLMNOPQRSTUVWYZ"
"""Every letter Windows PE may give the DVD: not A/B (floppies) and not X (Windows PE's own RAM disk)."""

MAX_SECRET = 256
KEY_NAME = "secrets-digest.key"
"""In build/: the random key of :func:`secrets_digest`, made once per checkout, mode 0600."""
"""Longest secret read (a Windows password is at most 127 characters; a product key is 29)."""
_PRODUCT_KEY = re.compile(r"[0-9A-Z]{5}(?:-[0-9A-Z]{5}){4}")

# Which component goes into which pass (the reference's "Valid Configuration Passes"), one row per component.
DRIVER_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("windowsPE", "Microsoft-Windows-PnpCustomizationsWinPE"),
    ("offlineServicing", "Microsoft-Windows-PnpCustomizationsNonWinPE"),
)


@dataclass(frozen=True)
class Secrets:
    """The secrets of a full answer file, read when the medium is written (never stored anywhere else)."""

    password: str
    product_key: str | None = None

    def __repr__(self) -> str:  # a traceback or a debug print never shows them
        return "Secrets(<hidden>)"


# -- secrets ---------------------------------------------------------------------

def _read_secret(source: SecretSource, setting: str, where: str) -> str:
    """The secret's first line; one-line errors that name the source, never the value."""
    if source.env is not None:
        value = os.environ.get(source.env)
        if value is None:
            raise SpecError(f"{where}: {setting}_env: ${source.env} is not set",
                            f"export {source.env} before building, or use {setting}_file")
    else:
        assert source.file is not None
        try:
            with open(source.file, "rb") as fp:
                raw = fp.read(MAX_SECRET * 4 + 2)
        except OSError as exc:
            raise SpecError(f"{where}: {setting}_file: {source.file_raw}: cannot read it ({exc.strerror})",
                            f"point {setting}_file at a readable file") from None
        try:
            value = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SpecError(f"{where}: {setting}_file: {source.file_raw}: not UTF-8 text",
                            "save it as UTF-8") from None
    value = value.splitlines()[0] if value.splitlines() else ""
    if not value:
        raise SpecError(f"{where}: {setting}: {source.describe()} is empty", f"put the {setting.rsplit('.', 1)[-1]} "
                        "there (it is never taken from the spec)")
    if len(value) > MAX_SECRET or not value.isprintable():
        raise SpecError(f"{where}: {setting}: {source.describe()} holds more than {MAX_SECRET} characters or a "
                        "control character", "put the value alone on the first line")
    return value


def read_secrets(unattended: Unattended, where: str) -> Secrets:
    """The password and product key, from where ``install_media.unattended`` says."""
    base = "install_media.unattended"
    password = _read_secret(unattended.password, f"{base}.password", where)
    key = None
    if unattended.product_key is not None:
        key = _read_secret(unattended.product_key, f"{base}.product_key", where).strip().upper()
        if not _PRODUCT_KEY.fullmatch(key):
            raise SpecError(f"{where}: {base}.product_key: {unattended.product_key.describe()} does not hold a "
                            "product key (five groups of five letters and digits, joined by '-')",
                            "put the 25-character key there")
    return Secrets(password, key)


def _checkout_key(build_dir: Path) -> bytes:
    """The checkout's random digest key (32 bytes, 0600), made on first use; concurrent makers agree on one."""
    path = build_dir / KEY_NAME
    if not path.exists():
        build_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=build_dir, prefix=f".{KEY_NAME}.")  # mkstemp makes it 0600
        try:
            os.write(fd, _random.token_bytes(32))
            os.fsync(fd)
            os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # appears whole or not at all; the first maker wins
        finally:
            os.unlink(tmp)
    key = path.read_bytes()
    if len(key) != 32:
        raise SpecError(f"{path}: not a digest key of 32 bytes", f"delete {path} (it is made again)")
    return key


def secrets_digest(unattended: Unattended, where: str, build_dir: Path) -> str | None:
    """A keyed digest of the password and product key, for the service task's up-to-date data.

    A changed secret then reruns the task. HMAC-SHA256 under a random per-checkout key kept in
    ``build_dir`` (never a plain hash, which doit's database would keep and anyone could test
    guesses against). None when a secret cannot be read now: the task runs and says why.
    """
    try:
        got = read_secrets(unattended, where)
    except SpecError:
        return None
    message = got.password.encode() + b"\0" + (got.product_key or "").encode()
    return hmac.new(_checkout_key(build_dir), message, hashlib.sha256).hexdigest()


def hidden_password(password: str) -> str:
    """The form Windows SIM writes with "Hide Sensitive Data": base64 of UTF-16LE(password + "Password").

    It keeps the password from being read at a glance; it is an encoding, not encryption.
    """
    return base64.b64encode((password + "Password").encode("utf-16-le")).decode("ascii")


# -- the XML ---------------------------------------------------------------------

Node = tuple[str, Mapping[str, str], "Sequence[Node] | str"]


def _el(tag: str, content: Sequence[Node] | str, **attrs: str) -> Node:
    return (tag, {k.replace("wcm_", "wcm:"): v for k, v in attrs.items()}, content)


def _write(node: Node, depth: int, out: list[str]) -> None:
    # Imported when an answer file is written: xml.sax.saxutils imports urllib.request (http, ssl, email),
    # 80 ms that every drivers ISO would otherwise pay.
    from xml.sax.saxutils import escape, quoteattr

    tag, attrs, content = node
    pad = "  " * depth
    head = tag + "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    if isinstance(content, str):
        out.append(f"{pad}<{head}>{escape(content)}</{tag}>")
        return
    out.append(f"{pad}<{head}>")
    for child in content:
        _write(child, depth + 1, out)
    out.append(f"{pad}</{tag}>")


def _component(name: str, arch: Arch, content: Sequence[Node]) -> Node:
    # The five identity attributes, then the two namespace declarations Windows SIM puts on each component.
    return _el("component", content, name=name, processorArchitecture=PROCESSOR_ARCHITECTURE[arch],
               publicKeyToken=PUBLIC_KEY_TOKEN, language="neutral", versionScope="nonSxS",
               **{"xmlns:wcm": WCM_NS, "xmlns:xsi": XSI_NS})


def driver_paths(arch: Arch, drivers: Sequence[str]) -> list[str]:
    r"""``<letter>:\win7\<arch>\<driver>`` for every letter the DVD may get and every package."""
    return [f"{letter}:\\" + MediaLayout.STAGED.driver_dir(arch, d).replace("/", "\\")
            for letter in DRIVE_LETTERS for d in drivers]


def _driver_paths_node(arch: Arch, drivers: Sequence[str]) -> Node:
    return _el("DriverPaths", [_el("PathAndCredentials", [_el("Path", path)], wcm_action="add", wcm_keyValue=str(i))
                               for i, path in enumerate(driver_paths(arch, drivers), 1)])


def _locales(locale: str) -> list[Node]:
    return [_el(t, locale) for t in ("InputLocale", "SystemLocale", "UILanguage", "UserLocale")]


def _setup(arch: Arch, u: Unattended, secrets: Secrets) -> Node:
    content: list[Node] = []
    if u.partitioning is Partitioning.WIPE_DISK_0:
        # One active NTFS partition over all of disk 0 (MBR: Windows 7 boots from BIOS here).
        content.append(_el("DiskConfiguration", [
            _el("Disk", [
                _el("CreatePartitions", [_el("CreatePartition", [_el("Extend", "true"), _el("Order", "1"),
                                                                 _el("Type", "Primary")], wcm_action="add")]),
                _el("DiskID", "0"),
                _el("ModifyPartitions", [_el("ModifyPartition", [
                    _el("Active", "true"), _el("Format", "NTFS"), _el("Label", "Windows"), _el("Letter", "C"),
                    _el("Order", "1"), _el("PartitionID", "1")], wcm_action="add")]),
                _el("WillWipeDisk", "true")], wcm_action="add"),
            _el("WillShowUI", "OnError")]))
        content.append(_el("ImageInstall", [_el("OSImage", [
            _el("InstallTo", [_el("DiskID", "0"), _el("PartitionID", "1")]), _el("WillShowUI", "OnError")])]))
    user: list[Node] = [_el("AcceptEula", "true")]
    if secrets.product_key is not None:
        user.append(_el("ProductKey", [_el("Key", secrets.product_key), _el("WillShowUI", "OnError")]))
    content.append(_el("UserData", user))
    return _component("Microsoft-Windows-Setup", arch, content)


def _oobe(arch: Arch, u: Unattended, secrets: Secrets) -> list[Node]:
    account = _el("LocalAccount", [
        _el("DisplayName", u.account), _el("Group", "Administrators"), _el("Name", u.account),
        _el("Password", [_el("PlainText", "false"), _el("Value", hidden_password(secrets.password))])],
        wcm_action="add")
    return [
        _component("Microsoft-Windows-International-Core", arch, _locales(u.locale)),
        _component("Microsoft-Windows-Shell-Setup", arch, [
            # Work network, updates left to the user (3: "Ask me later"): no page waits for an answer.
            _el("OOBE", [_el("HideEULAPage", "true"), _el("NetworkLocation", "Work"), _el("ProtectYourPC", "3")]),
            _el("TimeZone", u.time_zone),
            _el("UserAccounts", [_el("LocalAccounts", [account])])]),
    ]


def render(kind: AnswerFile, drivers: Mapping[Arch, Sequence[str]], unattended: Unattended | None = None,
           secrets: Secrets | None = None) -> bytes:
    """The answer file: driver paths for each arch in ``drivers`` (a component per arch), and for ``full`` the rest."""
    if (kind is AnswerFile.FULL) != (unattended is not None and secrets is not None):
        raise InternalError("a full answer file needs its settings and secrets, and only it has them")
    passes: dict[str, list[Node]] = {"windowsPE": [], "offlineServicing": [], "oobeSystem": []}
    for arch, names in drivers.items():
        if unattended is not None and secrets is not None:
            passes["windowsPE"].append(_component("Microsoft-Windows-International-Core-WinPE", arch, [
                _el("SetupUILanguage", [_el("UILanguage", unattended.locale)]), *_locales(unattended.locale)]))
        for pass_name, component in DRIVER_COMPONENTS:
            passes[pass_name].append(_component(component, arch, [_driver_paths_node(arch, names)]))
        if unattended is not None and secrets is not None:
            passes["windowsPE"].append(_setup(arch, unattended, secrets))
            passes["oobeSystem"] += _oobe(arch, unattended, secrets)
    root = _el("unattend", [_el("settings", nodes, **{"pass": name}) for name, nodes in passes.items() if nodes],
               xmlns=UNATTEND_NS)
    out = ['<?xml version="1.0" encoding="utf-8"?>']
    _write(root, 0, out)
    return ("\r\n".join(out) + "\r\n").encode("utf-8")


# -- validation ------------------------------------------------------------------

@cache
def _schema() -> Any:
    import xmlschema  # imported when an answer file is written or checked, not on every run

    return xmlschema.XMLSchema11(str(SCHEMA_FILE))


def problems(xml: bytes) -> list[str]:
    """What in ``xml`` breaks our answer-file schema (well-formedness first), one line each; [] when valid."""
    from xml.etree import ElementTree

    import xmlschema

    try:
        doc = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        return [f"not well-formed XML: {exc}"]
    out = []
    for err in _schema().iter_errors(doc):
        assert isinstance(err, xmlschema.XMLSchemaValidationError)
        out.append(f"{str(err.path).replace('{' + UNATTEND_NS + '}', '')}: {err.reason or err.message}")
    return out


def check(xml: bytes, secrets: Secrets | None = None) -> None:
    """Refuse to place an answer file our schema rejects: Setup stops on one it cannot parse.

    A schema message may quote the offending value: any of ``secrets`` in it is replaced by ``<hidden>``.
    """
    found = problems(xml)
    if found:
        said = found[0]
        if secrets is not None:
            for value in (secrets.password, hidden_password(secrets.password), secrets.product_key):
                said = said.replace(value, "<hidden>") if value else said
        # Our own writer made it from validated settings: a bug, never the user's input.
        raise InternalError(f"the {FILE_NAME} written breaks unattend.xsd: {said}")


# -- the medium ------------------------------------------------------------------

def preflight(spec: Spec) -> None:
    """Read the secrets once before hours of servicing, so a missing one fails first (they are read again later)."""
    media = spec.install_media
    if media is not None and media.unattended is not None:
        read_secrets(media.unattended, spec.display)


def for_media(spec: Spec, arch: Arch, drivers: Mapping[str, Path]) -> tuple[dict[str, Path | bytes],
                                                                             dict[str, Any] | None]:
    """The files an answer file puts on the serviced ISO (ISO path -> local file or folder, or the answer file's
    bytes, held in memory only), and its record.

    ``drivers`` maps each staged package name to its folder. Nothing (and ``None``) when the spec asks for no
    answer file.
    """
    media = spec.install_media
    assert media is not None
    kind = media.answer_file
    if kind is None:
        return {}, None
    secrets = read_secrets(media.unattended, spec.display) if media.unattended is not None else None
    xml = render(kind, {arch: sorted(drivers)}, media.unattended, secrets)
    check(xml, secrets)
    turn_off = spec.vocabulary.fix("install_media.answer_file") if spec.vocabulary.from_command_line \
        else "remove install_media.answer_file from the spec"
    changes: dict[str, Path | bytes] = {FILE_NAME: xml}
    for name, folder in sorted(drivers.items()):
        changes[MediaLayout.STAGED.driver_dir(arch, name)] = folder
    record: dict[str, Any] = {
        "path": FILE_NAME, "variant": kind.value, "arch": PROCESSOR_ARCHITECTURE[arch],
        "what": "Windows 7 Setup reads it from the disc's root: it loads the drivers in Windows PE and stages them "
                "into the new system's driver store" + (", and installs unattended" if secrets else ""),
        "driver_paths": [p for p in driver_paths(arch, sorted(drivers)) if p.startswith("D:")],
        "drive_letters": DRIVE_LETTERS,
        "turn_off": turn_off,
    }
    if secrets is None:
        record["sha256"] = hashlib.sha256(xml).hexdigest()
    else:
        # No hash of a file that holds a password: it would let anyone test guesses against servicing.json.
        unattended = media.unattended
        assert unattended is not None
        record["secrets_from"] = {"password": unattended.password.describe(),
                                  "product_key": None if unattended.product_key is None
                                  else unattended.product_key.describe()}
        # What the serviced ISO's README says it answers (none of it secret).
        record.update(locale=unattended.locale, time_zone=unattended.time_zone, account=unattended.account,
                      partitioning=unattended.partitioning.value)
    return changes, record
