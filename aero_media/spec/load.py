"""Load build specs (``specs/<name>.yaml``) and the device contract, with every problem positioned.

A spec is checked against its JSON Schema and then against the device contract;
each problem comes back as ``file:line:col: /pointer: what; fix: how``, all of
them at once. The schema and the default contract ship with the package; a
project's own ``specs/schema.json`` or ``specs/devices.yaml`` takes precedence.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..log import warn
from ..winnames import component_problem
from .aerocontract import SCHEMA_FILE as AERO_CONTRACT_SCHEMA_FILE
from .aerocontract import load_aero_contract
from .contract import Contract, ContractRef, Device, Subsystem
from .distnames import REPORT_SUFFIX, DistName
from .model import (
    Checks,
    Context,
    DriverReq,
    DriversIsoOut,
    FatDiskOut,
    GuestToolsOut,
    InstallMedia,
    Media,
    SecretSource,
    Signer,
    Signing,
    SignMode,
    Source,
    Spec,
    Unattended,
)
from .types import (
    ALL_ARCHES,
    DEPRECATED_TEST_NAME,
    AeroInput,
    AnswerFile,
    Arch,
    OptionalPolicy,
    Partitioning,
    PlaceholderPolicy,
    SigningPolicy,
    SourceKind,
    Vocabulary,
    WarningPolicy,
    WinPEDrivers,
)
from .yamldoc import Doc, load_doc, raise_problems, schema_problems

CONTRACT_FILE = "devices.yaml"
SCHEMA_FILE = "schema.json"
CONTRACT_SCHEMA_FILE = "devices.schema.json"
NON_SPEC_FILES = {CONTRACT_FILE}
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Settings that moved to the noun they govern: old JSON pointer -> new place. The signing policy,
# its certificates and publisher trust govern staging, every medium and servicing, not the Guest
# Tools alone; $WinPEDriver$ goes on every medium, not the drivers ISO alone.
MOVED_SETTINGS: dict[str, str] = {
    "/outputs/guest_tools/signing_policy": "signing.policy",
    "/outputs/guest_tools/certs": "signing.certs",
    "/outputs/guest_tools/trust_publisher": "signing.trust_publisher",
    "/outputs/drivers_iso/winpe_drivers": "media.winpe_drivers",
    "/install_media/winpe_drivers": "media.winpe_drivers",
}


def data_file(ctx: Context, name: str) -> Path:
    """The schema or contract file in force: the project's ``specs/<name>``, else the one shipped with the tool."""
    own = ctx.specs_dir / name
    if own.is_file():
        return own
    return shipped_file(name)


def shipped_file(name: str) -> Path:
    """A schema or contract file as shipped: package data in a wheel, ``specs/`` beside the code in a checkout."""
    try:
        shipped = Path(str(resources.files("aero_media.specdata").joinpath(name)))
        if shipped.is_file():
            return shipped
    except ModuleNotFoundError:
        pass  # an editable install maps no data package: read the checkout's specs/
    return Path(__file__).resolve().parents[2] / "specs" / name


def load_contract(path: Path, display: str | None = None, memo: Path | None = None) -> Contract:
    """Load and validate a device contract; ``memo`` as for :func:`schema_problems`.

    A ``.json`` file is Aero's contract format (``docs/windows-device-contract.json`` in Aero),
    anything else ours (``specs/devices.yaml``).
    """
    if path.suffix.lower() == ".json":
        shown = display or str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise SpecError(f"{shown}: cannot read: {exc.strerror}", "check the path") from None
        contract = load_aero_contract(path, shown, hashlib.sha256(raw).hexdigest(),
                                      shipped_file(AERO_CONTRACT_SCHEMA_FILE))
        return replace(contract, file=_contract_display(path, shown), source=path)
    doc = load_doc(path, display)
    raise_problems(schema_problems(doc, _schema_beside(path, CONTRACT_SCHEMA_FILE), memo))
    devices = {}
    for name, d in doc.data["devices"].items():
        devices[name] = Device(
            name=name,
            virtio_type=d["virtio_type"],
            vendor_id=d["vendor_id"],
            device_id=d["device_id"],
            transitional_device_id=d.get("transitional_device_id"),
            subsystem_vendor_id=d["subsystem_vendor_id"],
            subsystems=tuple(Subsystem(s["name"], s["id"]) for s in d["subsystems"]),
            revision=d["revision"],
            class_code=d["class_code"],
            service=d["service"],
            service_aliases=tuple(d.get("service_aliases", ())),
            inf=d["inf"],
            setup_class=d["setup_class"],
            class_guid=d["class_guid"].upper(),
            boot_critical=d["boot_critical"],
            sys=d.get("sys", ""),
        )
    aero = doc.data.get("aero_contract")
    return Contract(name=doc.data["contract"], version=doc.data["contract_version"], devices=devices,
                    schema_version=doc.data["schema_version"], file=_contract_display(path, doc.display),
                    sha256=doc.sha256 or hashlib.sha256(path.read_bytes()).hexdigest(),
                    aero=ContractRef(aero["name"], aero["version"], aero["schema_version"]) if aero else None,
                    source=path)


def _contract_display(path: Path, display: str) -> str:
    # The shipped contract is named as it is in the source tree, never by where it is installed.
    if os.path.isabs(display) or display.startswith(".."):
        shipped = shipped_file(CONTRACT_FILE).parent.resolve()
        if path.resolve().is_relative_to(shipped):
            return "specs/" + path.resolve().relative_to(shipped).as_posix()
        return f"specs/{CONTRACT_FILE}" if path.name == CONTRACT_FILE else path.name
    return display


def _schema_beside(path: Path, name: str) -> Path:
    beside = path.with_name(name)
    return beside if beside.is_file() else shipped_file(name)


def project_contract(ctx: Context) -> Contract:
    """The device contract in force for a project."""
    path = data_file(ctx, CONTRACT_FILE)
    return load_contract(path, _display(path, ctx.root), ctx.validation_memo)


def _display(path: Path, root: Path) -> str:
    try:
        return path.absolute().relative_to(root.absolute()).as_posix()
    except ValueError:
        return str(path)


def load_spec(path: Path, ctx: Context, contract: Contract | None = None) -> Spec:
    """Load one spec file, raising :class:`SpecError` with every problem found."""
    return _validate(load_doc(path, _display(path, ctx.root)), ctx, contract)


def spec_from_mapping(data: dict[str, Any], ctx: Context, vocabulary: Vocabulary,
                      contract: Contract | None = None) -> Spec:
    """Build a spec from a command's options, with the same checks as a file; messages use ``vocabulary``."""
    display = f"aero-media {vocabulary.command}" if vocabulary.command else "command line"
    doc = Doc(path=Path(display), display=display, data=data, marks={}, flags=vocabulary.pointers())
    spec = _validate(doc, ctx, contract)
    return replace(spec, vocabulary=vocabulary)


def _validate(doc: Doc, ctx: Context, contract: Contract | None) -> Spec:
    if not isinstance(doc.data, dict):
        raise SpecError(f"{doc.where('')}: expected a mapping of keys", "start from specs/sample.yaml")
    raise_problems(moved_setting_problems(doc))
    raise_problems(schema_problems(doc, data_file(ctx, SCHEMA_FILE), ctx.validation_memo))
    if "contract" in doc.data:
        return _build(doc, ctx, spec_contract(doc, ctx))
    return _build(doc, ctx, contract or project_contract(ctx))


def _spec_path(doc: Doc, ctx: Context, raw: str) -> Path:
    """A path the spec names relative to the spec file (``contract:``); a command's options, to the project."""
    p = Path(raw).expanduser()
    if p.is_absolute() or doc.flags is not None:
        return ctx.resolve(raw)
    return doc.path.parent / p


def spec_contract(doc: Doc, ctx: Context) -> Contract:
    """The contract a spec names (``contract: <path>``, relative to the spec file), loaded and checked."""
    raise_problems(_input_inside_output_problems(doc, ctx, ("/contract",)))
    raw = doc.data["contract"]
    path = _spec_path(doc, ctx, raw)
    if not path.is_file():
        raise SpecError(f"{doc.where('/contract')}: contract file {raw!r} not found (paths are relative to the "
                        "spec file)", "name a contract such as contracts/aero-in-tree.json, or drop contract: "
                        f"for specs/{CONTRACT_FILE}")
    return load_contract(path, _display(path, ctx.root), ctx.validation_memo)


def moved_setting_problems(doc: Doc) -> list[str]:
    """One line per setting an older spec keeps in its old place, naming the new one."""
    out = []
    for old, new in MOVED_SETTINGS.items():
        node: Any = doc.data
        for part in old.strip("/").split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            continue
        old_name = old.strip("/").replace("/", ".")
        section, _, key = new.partition(".")
        line, col = doc.marks.get(old + "#key") or doc.marks.get(old, (1, 1))  # the key's line: the value's may follow
        out.append(f"{doc.display}:{line}:{col}: {old_name} has moved to {new}; "
                   f"fix: delete it here and write {section}: {{{key}: {_yaml_value(node)}}}")
    return out


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def _name_clash_fix(path: Path, name: str, stem: str) -> str:
    """How to make ``name:`` and the file name agree, never by renaming the file onto another spec's file."""
    if path.with_name(f"{name}.yaml").exists() or path.with_name(f"{name}.yml").exists():
        # specs/<name>.yaml is another spec: the name must change, not the file.
        return f"write name: {stem}, or drop name: (it defaults to the file name; {name!r} is another spec's)"
    return f"rename the file to specs/{name}.yaml, or drop name: (it defaults to the file name)"


def _drivers(doc: Doc, contract: Contract, problems: list[str]) -> tuple[list[DriverReq], dict[str, int]]:
    drivers: list[DriverReq] = []
    seen: dict[str, int] = {}
    for i, d in enumerate(doc.data["drivers"]):
        if d["name"] in seen:
            problems.append(f"{doc.where(f'/drivers/{i}/name')}: driver {d['name']!r} is listed twice "
                            f"(also /drivers/{seen[d['name']]}); fix: keep one entry")
        seen[d["name"]] = i
        dev = contract.devices.get(d["device"])
        if dev is None:
            close = difflib.get_close_matches(d["device"], list(contract.devices), n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(sorted(contract.devices))}"
            problems.append(f"{doc.where(f'/drivers/{i}/device')}: unknown device {d['device']!r} "
                            f"(not in {contract.file}); fix: {fix}")
            continue
        drivers.append(DriverReq(name=d["name"], device=dev, required=bool(d.get("required", False))))
    names = {f"/drivers/{i}/name": d["name"] for i, d in enumerate(doc.data["drivers"])}
    problems += _windows_name_problems(doc, names)
    if drivers and not any(d.required for d in drivers):
        problems.append(f"{doc.where('/drivers')}: no driver is required; fix: mark at least viostor required: true")
    return drivers, seen


def _source(doc: Doc, ctx: Context, arches: tuple[Arch, ...], drivers: dict[str, int],
            problems: list[str]) -> Source:
    s = doc.data["source"]
    os_dirs = {Arch(a): tuple(v) for a, v in s.get("os_dirs", {}).items()}
    for arch, dirs in os_dirs.items():
        for d in dirs:
            if d not in arch.os_dirs:  # the schema allows every arch's folders; 2k8R2 (64-bit only) is amd64's
                problems.append(f"{doc.where(f'/source/os_dirs/{arch.value}')}: {d} has no {arch.value} "
                                f"Windows 7 build; fix: list only {', '.join(arch.os_dirs)} under {arch.value}")
    expect = dict(s.get("expect", {}))
    for key in expect:
        _, arch, drv = key.split("/")[:3]
        where = doc.where("/source/expect/" + key.replace("/", "~1"))
        if drv not in drivers:
            problems.append(f"{where}: pin for driver {drv!r}, which is not in drivers; "
                            "fix: remove the pin or add the driver")
        if Arch(arch) not in arches:
            problems.append(f"{where}: pin for arch {arch!r}, which is not in target.arches; "
                            "fix: remove the pin or add the arch")
    path, unset = _checkout_path(s, ctx)
    return Source(
        kind=SourceKind(s["kind"]),
        path=path,
        path_unset_env=unset,
        path_raw=s.get("path"),
        url=s.get("url"),
        sha256=s.get("sha256"),
        size=s.get("size"),
        os_dirs=os_dirs,
        expect=expect,
        license_file=ctx.resolve(s["license_file"]) if "license_file" in s else None,
        license_file_raw=s.get("license_file"),
        exclude=tuple(s.get("exclude", ())),
        stand_ins=bool(s.get("stand_ins", False)),
        aero_input=AeroInput(s.get("input", AeroInput.BUILD_OUTPUT.value)),
    )


def _checkout_path(s: dict[str, Any], ctx: Context) -> tuple[Path | None, str | None]:
    """``source.path`` resolved, and the variable it names that is not set (then the path is None).

    An Aero checkout lives wherever its user cloned it, so ``aero-checkout`` paths may name environment
    variables (``${AERO_ROOT}``); other sources' paths are taken as written.
    """
    if "path" not in s:
        return None, None
    raw = s["path"]
    if s["kind"] != SourceKind.AERO_CHECKOUT.value:
        return ctx.resolve(raw), None
    for name in _ENV_REF.findall(raw):
        if not os.environ.get(name, "").strip():
            return None, name
    return ctx.resolve(_ENV_REF.sub(lambda m: os.environ[m.group(1)].strip(), raw)), None


def _fat_disk(raw: dict[str, Any]) -> FatDiskOut:
    size = raw.get("size_mib", "auto")
    return FatDiskOut(**{**raw, "size_mib": None if size == "auto" else int(size)})


def _windows_name_problems(doc: Doc, names: dict[str, str]) -> list[str]:
    """Names that become files, folders or labels on Windows get the rules package files get."""
    out = []
    for pointer, name in names.items():
        problem = component_problem(name)
        if problem:
            out.append(f"{doc.where(pointer)}: {problem}; fix: choose another name")
    return out


def _output_name_problems(doc: Doc, outputs: dict[str, Any], guest_tools: GuestToolsOut,
                          arches: tuple[Arch, ...]) -> list[str]:
    drivers_iso = DriversIsoOut(**outputs.get("drivers_iso", {}))
    names = {"outputs/drivers_iso/filename": drivers_iso.filename,
             "install_media/filename": doc.data.get("install_media", {}).get("filename", InstallMedia.filename),
             "outputs/fat_disk/filename": outputs.get("fat_disk", {}).get("filename", FatDiskOut.filename),
             "outputs/guest_tools/iso_filename": guest_tools.iso_filename,
             "outputs/guest_tools/zip_filename": guest_tools.zip_filename}
    labels = {"outputs/drivers_iso/volume_label": outputs.get("drivers_iso", {}).get("volume_label"),
              "outputs/guest_tools/volume_label": outputs.get("guest_tools", {}).get("volume_label"),
              "outputs/fat_disk/volume_label": outputs.get("fat_disk", {}).get("volume_label")}
    problems = _windows_name_problems(doc, {"/" + k: v for k, v in (names | labels).items() if v is not None})
    # Every name of dist/<spec>/ and its folders, so no output lands on another (or on a folder).
    taken: dict[str, str] = {n.value: n.what for n in DistName}
    checked = list(names.items())
    if WinPEDrivers.of(doc.data.get("media", {}).get("winpe_drivers", True)).arch_media:
        # The one-arch drivers ISOs take their names from the drivers ISO's.
        checked += [("outputs/drivers_iso/filename", drivers_iso.arch_filename(a)) for a in arches]
    for where, fname in checked:
        key = fname.lower()
        if key in taken or key.endswith(REPORT_SUFFIX):
            problems.append(f"{doc.where('/' + where)}: {fname!r} is already used by {taken.get(key, 'a report')}; "
                            "fix: choose a different file name")
        taken[key] = "/" + where
    return problems


def _build(doc: Doc, ctx: Context, contract: Contract) -> Spec:
    data = doc.data
    problems: list[str] = []
    stem = doc.path.stem
    name = data.get("name", stem)
    if "name" not in data and not valid_name(stem):
        problems.append(f"{doc.where('/')}: the file name {stem!r} is not a valid spec name; "
                        "fix: rename the file to lower-case letters, digits, '.', '_' or '-'")
    elif "name" in data and name != stem and doc.path.suffix == ".yaml":
        # doit build:<stem> is what users type after looking at specs/: the two must agree.
        problems.append(f"{doc.where('/name')}: name {name!r} differs from the file name {stem!r}; "
                        f"fix: {_name_clash_fix(doc.path, name, stem)}")
    drivers, seen = _drivers(doc, contract, problems)
    target = data.get("target", {})
    wanted = {Arch(a) for a in target.get("arches", [a.value for a in ALL_ARCHES])}
    arches = tuple(a for a in ALL_ARCHES if a in wanted)
    source = _source(doc, ctx, arches, seen, problems)

    outputs = data.get("outputs", {})
    guest_tools = GuestToolsOut(**outputs.get("guest_tools", {}))
    signing = _signing(doc, ctx, problems)
    raw_checks = data.get("checks", {})
    checks = Checks(warnings=WarningPolicy(raw_checks.get("warnings", "warn")),
                    allow_sha256_only=bool(raw_checks.get("allow_sha256_only", False)),
                    placeholder_catalogs=PlaceholderPolicy(raw_checks.get("placeholder_catalogs", "error")))
    problems += _output_name_problems(doc, outputs, guest_tools, arches)
    cache_dir = ctx.resolve(data["cache_dir"]) if "cache_dir" in data else None
    if cache_dir is not None:
        problems += _cache_dir_problems(doc, ctx, cache_dir)
    problems += _input_inside_output_problems(doc, ctx)
    raise_problems(problems)
    return Spec(
        name=name,
        file=doc.path,
        display=doc.display,
        description=data.get("description", ""),
        default=bool(data.get("default", False)),
        source=source,
        arches=arches,
        drivers=tuple(drivers),
        optional_policy=OptionalPolicy(data.get("optional", "best-effort")),
        checks=checks,
        drivers_iso=DriversIsoOut(**outputs.get("drivers_iso", {})),
        fat_disk=_fat_disk(outputs.get("fat_disk", {})),
        guest_tools=guest_tools,
        signing=signing,
        media=Media(winpe_drivers=WinPEDrivers.of(data.get("media", {}).get("winpe_drivers", True)),
                    answer_file=AnswerFile(data["media"]["answer_file"]) if "answer_file" in data.get("media", {})
                    else None),
        install_media=_install_media(doc, ctx),
        cache_dir=cache_dir,
        contract=contract,
    )


def _install_media(doc: Doc, ctx: Context) -> InstallMedia | None:
    raw = doc.data.get("install_media")
    if raw is None:
        return None

    def images(key: str) -> tuple[int, ...] | None:
        value = raw.get(key, "all")
        return None if value == "all" else tuple(int(i) for i in value)

    return InstallMedia(iso=ctx.resolve(raw["path"]) if "path" in raw else None, iso_raw=raw.get("path"),
                        sha256=raw.get("sha256"),
                        boot_wim=ctx.resolve(raw["boot_wim"]) if "boot_wim" in raw else None,
                        boot_wim_raw=raw.get("boot_wim"),
                        install_wim=ctx.resolve(raw["install_wim"]) if "install_wim" in raw else None,
                        install_wim_raw=raw.get("install_wim"),
                        filename=raw.get("filename", InstallMedia.filename),
                        boot_images=images("boot_images"), install_images=images("install_images"),
                        winre=bool(raw.get("winre", InstallMedia.winre)),
                        nointegritychecks=bool(raw.get("nointegritychecks", InstallMedia.nointegritychecks)),
                        answer_file=AnswerFile(raw["answer_file"]) if "answer_file" in raw else None,
                        unattended=_unattended(raw.get("unattended"), ctx))


def _secret(raw: dict[str, Any], name: str, ctx: Context) -> SecretSource | None:
    if f"{name}_env" in raw:
        return SecretSource(env=raw[f"{name}_env"])
    if f"{name}_file" in raw:
        return SecretSource(file=ctx.resolve(raw[f"{name}_file"]), file_raw=raw[f"{name}_file"])
    return None


def _unattended(raw: dict[str, Any] | None, ctx: Context) -> Unattended | None:
    if raw is None:
        return None
    password = _secret(raw, "password", ctx)
    assert password is not None  # the schema requires one source
    return Unattended(locale=raw["locale"], time_zone=raw["time_zone"], account=raw["account"], password=password,
                      product_key=_secret(raw, "product_key", ctx),
                      partitioning=Partitioning(raw.get("partitioning", Partitioning.ASK.value)))


def _signing(doc: Doc, ctx: Context, problems: list[str]) -> Signing:
    """The ``signing:`` block: the policy, the certificates setup trusts, and whether the build signs itself."""
    raw = doc.data.get("signing", {})
    certs_raw = tuple(raw.get("certs", ()))
    signer = _signer(doc, ctx, problems)
    policy = SigningPolicy.TEST if signer is not None else SigningPolicy.NONE
    if "policy" in raw:
        if raw["policy"] == DEPRECATED_TEST_NAME:
            warn(f"{doc.where('/signing/policy')}: policy {DEPRECATED_TEST_NAME} is deprecated; "
                 "fix: write policy: test (the name Aero's manifests use)")
        given = SigningPolicy(raw["policy"])
        if signer is not None and given is not SigningPolicy.TEST:
            problems.append(f"{doc.where('/signing/policy')}: policy {given.value} contradicts mode: test "
                            "(the build test-signs the drivers); fix: drop signing.policy (it follows mode: test)")
        policy = given if signer is None else SigningPolicy.TEST
    return Signing(policy=policy, trust_publisher=bool(raw.get("trust_publisher", True)),
                   certs=tuple(ctx.resolve(c) for c in certs_raw), certs_raw=certs_raw, signer=signer)


def _signer(doc: Doc, ctx: Context, problems: list[str]) -> Signer | None:
    """``signing: {mode: test, ...}``: a generated throwaway pair, or a certificate and where its key is read from."""
    raw = doc.data.get("signing", {})
    where = doc.where("/signing")
    if "mode" not in raw:
        return None
    mode = SignMode(raw["mode"])
    dual = bool(raw.get("dual_sign", False))
    if mode is SignMode.KEEP:
        # Nothing is signed here, so nothing needs a key: only the certificate every signature must verify with.
        given = [k for k in ("key", "key_env", "generate", "dual_sign") if k in raw]
        if given:
            problems.append(f"{where}: mode: keep keeps the packages' signatures and signs nothing, but "
                            f"{', '.join(given)} is set too; fix: drop {', '.join(given)}, or write mode: test")
        if "cert" not in raw:
            problems.append(f"{where}: mode: keep needs cert: (the certificate the packages are signed with, "
                            "e.g. Aero's out/certs/aero-test.cer); fix: add cert:")
        return Signer(cert=ctx.resolve(raw["cert"]) if "cert" in raw else None, cert_raw=raw.get("cert"),
                      key=None, key_env=None, mode=mode)
    if "pfx" in raw or "pfx_env" in raw:
        return _pfx_signer(raw, where, ctx, dual, problems)
    if "pfx_password_env" in raw:
        problems.append(f"{where}: pfx_password_env is the password of a PFX, but no pfx: or pfx_env: is given; "
                        "fix: add pfx: or pfx_env:, or drop pfx_password_env")
    if raw.get("generate"):
        given = [k for k in ("cert", "key", "key_env") if k in raw]
        if given:
            problems.append(f"{where}: generate: true makes its own certificate and key, but {', '.join(given)} "
                            "is set too; fix: drop generate, or drop those keys")
        return Signer(cert=None, cert_raw=None, key=None, key_env=None, generate=True, dual_sign=dual)
    if "cert" not in raw:
        problems.append(f"{where}: test signing needs the certificate; fix: add cert: (make one with "
                        "`aero-media make-test-cert --out ~/.config/aero`), or set generate: true for sample media")
    if ("key" in raw) == ("key_env" in raw):
        problems.append(f"{where}: name the private key by exactly one of key: (a path outside the checkout) or "
                        "key_env: (an environment variable); fix: keep one of them")
    return Signer(cert=ctx.resolve(raw["cert"]) if "cert" in raw else None, cert_raw=raw.get("cert"),
                  key=ctx.resolve(raw["key"]) if "key" in raw else None, key_env=raw.get("key_env"), dual_sign=dual)


def _pfx_signer(raw: dict[str, Any], where: str, ctx: Context, dual: bool, problems: list[str]) -> Signer:
    """A PFX carries the certificate and its key (Aero's stable signing PFX); ``generate`` beside ``pfx_env``
    makes the throwaway pair only when the variable is unset, as Aero's ``ci/sign-drivers.ps1`` does."""
    clash = [k for k in ("cert", "key", "key_env") if k in raw]
    if clash:
        problems.append(f"{where}: a PFX holds the certificate and its key, but {', '.join(clash)} is set too; "
                        f"fix: drop {', '.join(clash)}, or drop pfx/pfx_env")
    if "pfx" in raw and "pfx_env" in raw:
        problems.append(f"{where}: name the PFX by one of pfx: (a path) or pfx_env: (an environment variable); "
                        "fix: keep one of them")
    if raw.get("generate") and "pfx" in raw:
        problems.append(f"{where}: generate: true makes its own pair, but pfx: names one; fix: drop generate, "
                        "or use pfx_env: (generate then stands in only while that variable is unset)")
    return Signer(cert=None, cert_raw=None, key=None, key_env=None, generate=bool(raw.get("generate")),
                  dual_sign=dual, pfx=ctx.resolve(raw["pfx"]) if "pfx" in raw else None,
                  pfx_env=raw.get("pfx_env"), pfx_password_env=raw.get("pfx_password_env"))


def _cache_dir_problems(doc: Doc, ctx: Context, cache_dir: Path) -> list[str]:
    """The cache is written to and never cleaned by us: it must not be a folder that holds anything else."""
    where = doc.where("/cache_dir")
    target = Path(os.path.abspath(cache_dir))
    root = Path(os.path.abspath(ctx.root))
    if target == Path(target.anchor) or target == Path(os.path.abspath(Path.home())):
        return [f"{where}: {doc.data['cache_dir']!r} is the file system root or your home folder; "
                "fix: name a folder of its own, e.g. ~/.cache/aero-virtio-media"]
    if root.is_relative_to(target):
        return [f"{where}: {doc.data['cache_dir']!r} is the project folder or a folder above it; "
                "fix: name a folder of its own, e.g. ~/.cache/aero-virtio-media or .cache/downloads"]
    for inputs in (ctx.specs_dir, ctx.root / "prebuilt", ctx.build_dir, ctx.dist_dir):
        if target.is_relative_to(Path(os.path.abspath(inputs))):
            return [f"{where}: {doc.data['cache_dir']!r} is inside {inputs.name}/, which the pipeline owns "
                    "or reads; fix: name a folder of its own, e.g. .cache/downloads"]
    return []


# Every spec field that names a file or folder the build only reads (JSON pointer -> the raw value(s)).
_INPUT_FIELDS = ("/source/path", "/source/license_file", "/install_media/path", "/install_media/boot_wim",
                 "/install_media/install_wim", "/signing/cert", "/signing/key", "/signing/certs", "/signing/pfx",
                 "/install_media/unattended/password_file", "/install_media/unattended/product_key_file")


def _input_inside_output_problems(doc: Doc, ctx: Context, fields: tuple[str, ...] = _INPUT_FIELDS) -> list[str]:
    """Inputs may not live in build/ or dist/: a build empties and swaps those folders and would delete them.

    Resolved through symlinks, so a link that points in there is refused too.
    """
    owned = [(Path(os.path.realpath(d)), d.name) for d in (ctx.build_dir, ctx.dist_dir)]
    out = []
    for pointer in fields:
        node: Any = doc.data
        for part in pointer.strip("/").split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        values = node if isinstance(node, list) else [node]
        for i, raw in enumerate(values):
            if not isinstance(raw, str):
                continue
            target = Path(os.path.realpath(_spec_path(doc, ctx, raw) if pointer == "/contract" else ctx.resolve(raw)))
            for folder, shown in owned:
                if target.is_relative_to(folder):
                    where = doc.where(f"{pointer}/{i}" if isinstance(node, list) else pointer)
                    out.append(f"{where}: {raw!r} is inside {shown}/, which the build empties and replaces "
                               f"(the file would be deleted); fix: move it out of {shown}/ and point there")
                    break
    return out


def valid_name(name: str) -> bool:
    """Whether ``name`` may name a spec (and so a build/ and dist/ folder)."""
    return bool(_NAME.fullmatch(name)) and len(name) <= 64


def spec_files(ctx: Context) -> list[Path]:
    """Return the spec files in ``specs/``, sorted (the contract file is not a spec)."""
    if not ctx.specs_dir.is_dir():
        return []
    return sorted(p for p in ctx.specs_dir.glob("*.y*ml")
                  if p.suffix in (".yaml", ".yml") and p.name not in NON_SPEC_FILES)


def load_each(ctx: Context) -> list[tuple[Path, Spec | SpecError]]:
    """Every spec file in ``specs/`` with its spec, or what is wrong with it (one bad file spoils no other)."""
    contract = project_contract(ctx)
    out: list[tuple[Path, Spec | SpecError]] = []
    for path in spec_files(ctx):
        if path.suffix == ".yml":  # one spelling, so `doit build:<stem>` and the file always agree
            out.append((path, SpecError(f"{_display(path, ctx.root)}: spec files end in .yaml; "
                                        f"fix: rename it to {path.stem}.yaml")))
            continue
        try:
            out.append((path, load_spec(path, ctx, contract)))
        except SpecError as exc:
            out.append((path, exc))
    return out


@dataclass(frozen=True)
class BrokenSpec:
    """A spec file in specs/ that does not load: left out of a run, named at its start and failing its end."""

    file: str
    """The file as the user sees it (``specs/<name>.yaml``)."""
    name: str
    """The spec name its file gives (the stem)."""
    reason: str
    """Its first problem, one line: ``file:line:col: what; fix: how``."""
    more: int
    """How many more problems the file has."""

    def line(self) -> str:
        """The one warning line for this spec."""
        also = f"; and {self.more} more problem(s)" if self.more else ""
        return f"{self.reason}{also} (spec {self.name!r} is left out until it is fixed)"


def broken_specs(results: Sequence[tuple[Path, Spec | SpecError]], root: Path) -> tuple[BrokenSpec, ...]:
    """The broken spec files among loaded ``results``, each with its first problem (what a summary names)."""
    out = []
    for path, r in results:
        if isinstance(r, SpecError):
            first, *more = r.message.splitlines()
            out.append(BrokenSpec(_display(path, root), path.stem, first, len(more)))
    return tuple(out)


def load_specs(ctx: Context) -> list[Spec]:
    """Load every spec in ``specs/``; report all problems of all files at once."""
    results = load_each(ctx)
    # Names are file stems (checked per spec), so no two specs can share one.
    raise_problems([r.message for _, r in results if isinstance(r, SpecError)])
    return [r for _, r in results if isinstance(r, Spec)]
