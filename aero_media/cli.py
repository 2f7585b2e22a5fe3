"""``aero-media``: the command-line face of the pipeline (same engine as the doit tasks).

Exit codes: 0 success, 1 a check failed (verification, validation), 2 usage or
input error, 3 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import __version__, buildlock, log
from .errors import PipelineError, SpecError, UsageError, disk_error
from .fsutil import not_a_file, relpath_for_humans
from .paths import Run
from .spec.contract import Contract
from .spec.load import load_contract, load_each, project_contract, spec_from_mapping
from .spec.model import Context, Spec
from .spec.types import Arch, Flag, PlaceholderPolicy, SigningPolicy, Stage, Vocabulary
from .taskgraph import interrupt

ARCH_CHOICES = {"both": ("x86", "amd64"), "x86": ("x86",), "amd64": ("amd64",)}

# How each command's messages name the spec settings its options stand for (errors under a
# spec file name the spec's fields instead).
_PLACEHOLDERS = Flag("--allow-placeholder-catalogs", "pass --allow-placeholder-catalogs")
_SHA256_ONLY = Flag("--allow-sha256-only", "pass --allow-sha256-only")
_SIGNING = Flag("--signing-policy", "pass --signing-policy test")
BUILD_ISO_FLAGS = Vocabulary("build-iso", {
    "source.path": Flag("--drivers-root", "pass an existing driver tree with --drivers-root"),
    "checks.placeholder_catalogs": _PLACEHOLDERS,
    "checks.allow_sha256_only": _SHA256_ONLY,
    "signing.policy": _SIGNING,
    "drivers.required": Flag("--require-arch", "build only for the arch the tree has, with --require-arch"),
    "target.arches": Flag("--require-arch", "choose the arches with --require-arch"),
    "outputs.drivers_iso.volume_label": Flag("--label", "pass another --label"),
    "media.winpe_drivers": Flag("--no-winpe-drivers", "pass --no-winpe-drivers"),
})
BUILD_FAT_FLAGS = Vocabulary("build-fat", {
    **{k: v for k, v in BUILD_ISO_FLAGS.flags.items() if k != "outputs.drivers_iso.volume_label"},
    "outputs.fat_disk.volume_label": Flag("--label", "pass another --label (at most 11 characters)"),
    "outputs.fat_disk.size_mib": Flag("--size-mib", "pass a larger --size-mib, or leave it out for auto"),
})
EXTRACT_FLAGS = Vocabulary("extract", {
    "source.path": Flag("--virtio-win-iso", "pass an existing ISO with --virtio-win-iso"),
    "drivers.required": Flag("--drivers", "leave the driver out of --drivers"),
    "optional": Flag("--strict-optional", "drop --strict-optional"),
})
SERVICE_ISO_FLAGS = Vocabulary("service-iso", {
    "install_media.path": Flag("--windows-iso", "pass a Windows 7 install ISO with --windows-iso"),
    "install_media.filename": Flag("--output", "give --output another file name"),
    "signing.certs": Flag("--cert", "give --cert the test certificate (.cer)"),
    "source.path": Flag("--drivers-root", "pass an existing driver tree with --drivers-root"),
    "checks.placeholder_catalogs": _PLACEHOLDERS,
    "signing.policy": Flag("--testsigning", "pass --testsigning with --cert"),
    "drivers.required": Flag("--arch", "give --arch the arch of the Windows 7 image"),
    "target.arches": Flag("--arch", "give --arch the arch of the Windows 7 image"),
    "media.winpe_drivers": Flag("--no-winpe-drivers", "pass --no-winpe-drivers"),
    "install_media.winre": Flag("--no-winre", "pass --no-winre"),
    "install_media.nointegritychecks": Flag("--nointegritychecks", "pass --nointegritychecks"),
    "install_media.answer_file": Flag("--answer-file", "leave out --answer-file"),
    "install_media.unattended.password_file": Flag("--password-file", "give --password-file a readable file"),
    "install_media.unattended.password_env": Flag("--password-env", "export the variable --password-env names"),
    "install_media.unattended.product_key_file": Flag("--product-key-file",
                                                      "give --product-key-file a readable file"),
    "install_media.unattended.product_key_env": Flag("--product-key-env",
                                                     "export the variable --product-key-env names"),
})
# service-iso's options for a full answer file -> the install_media.unattended fields they set.
UNATTENDED_FLAGS = {"locale": "locale", "time_zone": "time_zone", "account": "account",
                    "password_file": "password_file", "password_env": "password_env",
                    "product_key_file": "product_key_file", "product_key_env": "product_key_env"}
CHECK_FLAGS = Vocabulary("check", {
    "checks.placeholder_catalogs": _PLACEHOLDERS,
    "checks.allow_sha256_only": _SHA256_ONLY,
    "signing.policy": _SIGNING,
})
DEFAULT_DRIVERS = (("viostor", "virtio-blk", True), ("netkvm", "virtio-net", True),
                   ("vioinput", "virtio-input", False), ("viosnd", "virtio-snd", False))


def _ctx(args: argparse.Namespace) -> Context:
    cache = getattr(args, "cache_dir", None)
    return Context(root=Path(args.root).absolute(), cache_override=Path(cache).expanduser() if cache else None)


def _find_spec(ctx: Context, name: str) -> Spec:
    """The spec ``name``; another spec being broken does not matter, this one being broken does."""
    _require_specs_dir(ctx)
    results = {path.stem: r for path, r in load_each(ctx)}
    found = results.get(name)
    if isinstance(found, SpecError):
        raise found
    if found is not None:
        return found
    raise UsageError(f"no spec named {name!r} in {relpath_for_humans(ctx.specs_dir, absolute=True)}",
                     f"use one of: {', '.join(sorted(results)) or '(none: add specs/<name>.yaml)'}")


def _require_specs_dir(ctx: Context) -> None:
    if not ctx.specs_dir.is_dir():
        raise UsageError(f"{os.path.abspath(ctx.root)}: not a project folder (no specs/)",
                         "run from the checkout, or pass --root with the folder that holds specs/")


def _refuse_recipes(root: Path, flag: str) -> None:
    """A pack of stand-in recipes (the repo's sample pack) holds no drivers until doit expands it."""
    if root.is_dir() and any(p.name.lower().endswith(".pestub") for p in root.rglob("*")):
        raise UsageError(f"{flag} {root}: holds stand-in recipes (*.pestub), not driver binaries",
                         "run `doit` first and pass the expanded pack it writes (build/sample/pack for the sample "
                         "pack), or a real driver tree")


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def _adhoc_spec(ctx: Context, args: argparse.Namespace, contract: Contract, vocabulary: Vocabulary) -> Spec:
    drivers_root = Path(args.drivers_root).absolute()
    data: dict[str, Any] = {
        "schema_version": 1,
        "name": "adhoc",
        # The folder's name, not the path typed: the same tree gives the same ISO from any folder.
        "description": f"Drivers from {drivers_root.name}",
        "source": {"kind": "pack-dir", "path": str(drivers_root)},
        "target": {"os": "win7", "arches": list(ARCH_CHOICES[args.require_arch])},
        "drivers": [{"name": n, "device": d, "required": r} for n, d, r in DEFAULT_DRIVERS],
        "checks": {"placeholder_catalogs": "allow" if args.allow_placeholder_catalogs else "error",
                   "allow_sha256_only": bool(args.allow_sha256_only)},
        "signing": {"policy": args.signing_policy},
        "media": {"winpe_drivers": not args.no_winpe_drivers},
        "outputs": {"drivers_iso": {"volume_label": _given(getattr(args, "label", None), "AERO_VIRTIO")},
                    # `--size-mib 0` and `--label ""` are values to check, not "use the default".
                    "fat_disk": {"volume_label": _given(getattr(args, "fat_label", None), "AERO"),
                                 "size_mib": _given(getattr(args, "size_mib", None), "auto")}},
    }
    return spec_from_mapping(data, ctx, vocabulary, contract)


def _iso_input(iso: Path, flag: str, fix: str) -> Path:
    """``iso`` when it is a readable ISO image; else a usage error naming ``flag`` and what the path is."""
    from .media.isoscan import not_an_iso

    why = not_a_file(iso, "an ISO file") if not iso.is_file() else not_an_iso(iso)
    if why is not None:
        raise UsageError(f"{flag} {iso}: {why}", fix)
    return iso


def _output_file(raw: str, flag: str, inputs: list[tuple[str, Path]], suffix: str = ".iso") -> Path:
    """A file path to write: not a folder, not a name ending in a separator, not an input or inside one."""
    if raw.endswith(("/", os.sep)):
        raise UsageError(f"{flag} {raw}: ends with a slash, so it names a folder",
                         f"give {flag} the path of the file to write, e.g. {raw.rstrip('/' + os.sep)}{suffix}")
    out = Path(raw)
    if out.is_dir():
        raise UsageError(f"{flag} {raw}: is a folder", f"give {flag} the path of the file to write")
    here = Path(os.path.abspath(out))
    for what, given in inputs:
        src = Path(os.path.abspath(given))
        same = here == src or (out.exists() and given.exists() and os.path.samefile(out, given))
        if same or src in here.parents:
            raise UsageError(f"{flag} {raw}: {'is' if same else 'lies inside'} {what} {given}, which is never written",
                             f"give {flag} a path outside the inputs")
    return out


class Reported(Exception):
    """A failed run of the task graph: the stage's error to print (None: doit has said why), and the exit code."""

    def __init__(self, exit_code: int, cause: PipelineError | None = None) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code
        self.cause = cause


def run_graph(ctx: Context, specs: Sequence[Spec], epoch: int, goals: Sequence[str]) -> None:
    """Run ``goals`` of the task graph in the scratch project ``ctx`` on the specs a command made.

    The same graph as `doit`: what runs after what is stated there once. A stage's
    error comes back in :class:`Reported` for :func:`main` to print whole; a task that
    crashed (doit's 1 with no stage error) is a bug, exit 3; a refusal while loading
    or Ctrl-C keeps doit's code (2, 130).
    """
    from .taskgraph.main import AeroDoitMain, Prepared, SpecTaskLoader

    prepared = Prepared(tuple(specs), epoch, ctx.cache_dir() / "last-error.txt")
    old = os.getcwd()
    try:
        rc = AeroDoitMain(SpecTaskLoader(ctx.root, prepared)).run(list(goals))
    finally:
        os.chdir(old)
    if rc != 0:
        if prepared.failures:
            raise Reported(prepared.failures[0].exit_code, prepared.failures[0])
        raise Reported(3 if rc == 1 else rc)


WORK_MARKER = ".aero-media-work"
"""Written into every work folder a command makes beside its output: a sweep removes only folders that hold it."""


@contextmanager
def _work_folder(kind: str, folder: Path) -> Iterator[Path]:
    """A scratch project beside the output (big files then move there by a rename, holes kept).

    A killed command's folder is removed by the next command of that kind, once its
    process is gone, and only when it carries our marker: a user's folder of a similar
    name is never touched.
    """
    from .fsutil import pid_alive, remove_tree

    prefix = f".aero-{kind}-"
    for stale in folder.glob(f"{prefix}*-*"):
        pid = stale.name[len(prefix):].split("-", 1)[0]
        if (stale.is_dir() and not stale.is_symlink() and (stale / WORK_MARKER).is_file() and pid.isdigit()
                and not pid_alive(int(pid))):
            remove_tree(stale)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-", dir=folder) as tmp:
        work = Path(os.path.abspath(tmp))  # doit runs in it: a relative --output must not move with it
        (work / WORK_MARKER).write_bytes(b"")
        try:
            yield work
        except OSError as exc:
            raise _without_work_paths(disk_error(exc), work, folder) from None
        except PipelineError as exc:
            raise _without_work_paths(exc, work, folder) from None
        except Reported as exc:
            if exc.cause is not None:
                _without_work_paths(exc.cause, work, folder)
            raise


def _without_work_paths(exc: PipelineError, work: Path, folder: Path) -> PipelineError:
    """Rewrite an error that names a path in the work folder, which is deleted before the user reads it.

    A folder there becomes the output's folder (the same file system, so "MiB free" stays
    true); a file becomes its bare name.
    """
    pattern = re.compile(re.escape(os.fspath(work)) + r"(?:/[^\s'\":;,]*)?")

    def shown(match: re.Match[str]) -> str:
        path = Path(match.group(0))
        if path == work or path.is_dir():
            return relpath_for_humans(folder, absolute=True)
        return path.name

    exc.message = pattern.sub(shown, exc.message)
    if exc.hint:
        exc.hint = pattern.sub(shown, exc.hint)
    return exc


def _build_adhoc(args: argparse.Namespace, medium: str) -> int:
    """Build one medium of ``--drivers-root`` by the task graph, in a scratch project; publish it to ``--output``."""
    from .media.epoch import check_epoch, source_date_epoch

    repo = Context(root=Path(args.root).absolute())
    epoch = (check_epoch(args.source_date_epoch, "--source-date-epoch") if args.source_date_epoch is not None
             else source_date_epoch())
    fat = medium == "fat"
    output = _output_file(args.output, "--output", [("--drivers-root", Path(args.drivers_root))],
                          ".vhd" if fat else ".iso")
    _refuse_recipes(Path(args.drivers_root), "--drivers-root")
    output.parent.mkdir(parents=True, exist_ok=True)
    with _work_folder("build", output.parent) as tmp:
        ctx = Context(root=tmp, scratch=True)
        # The ad-hoc spec is checked against the device contract in force where the command runs.
        spec = _adhoc_spec(ctx, args, project_contract(repo), BUILD_FAT_FLAGS if fat else BUILD_ISO_FLAGS)
        # The one medium asked for, under the name it is delivered as (so verify names it so).
        if fat:
            spec = replace(spec, fat_disk=replace(spec.fat_disk, filename=output.name))
        else:
            spec = replace(spec, drivers_iso=replace(spec.drivers_iso, filename=output.name),
                           fat_disk=replace(spec.fat_disk, enabled=False))
        run = Run(spec, ctx, epoch)
        # Verified before it is published: --output appears only once it is proven (a Ctrl-C or a
        # kill during verification leaves nothing that looks complete). The rename below publishes it.
        run_graph(ctx, [spec], epoch, [f"{Stage.VERIFY_FAT_DISK if fat else Stage.VERIFY}:{spec.name}"])
        built = run.pending.fat_disk if fat else run.pending.drivers_iso
        digest, size = run.memo.sha256(built), built.stat().st_size  # the writer's hash, from the memo
        # One rename on the same file system: the medium appears whole, a sparse disk stays sparse.
        os.replace(built, output)
    print(f"Wrote {output} ({size} bytes, sha256={digest})")
    return 0


def cmd_build_iso(args: argparse.Namespace) -> int:
    """Stage a driver tree, write a drivers ISO and verify it."""
    return _build_adhoc(args, "iso")


def cmd_build_fat(args: argparse.Namespace) -> int:
    """Stage a driver tree and write a FAT driver disk (a fixed VHD with x86\\, x64\\, $WinPEDriver$\\), verified."""
    return _build_adhoc(args, "fat")


def _answer_file(args: argparse.Namespace) -> dict[str, Any]:
    """``--answer-file`` and its settings as ``install_media`` fields (secrets stay where the flags point)."""
    given = {field: getattr(args, attr) for attr, field in UNATTENDED_FLAGS.items() if getattr(args, attr)}
    if args.wipe_disk_0:
        given["partitioning"] = "wipe-disk-0"
    if args.answer_file != "full":
        if given:
            flag = "--wipe-disk-0" if "partitioning" in given else f"--{next(iter(given)).replace('_', '-')}"
            raise UsageError(f"{flag} goes with --answer-file full", "add --answer-file full, or drop the option")
        return {"answer_file": args.answer_file} if args.answer_file else {}
    missing = [f"--{f.replace('_', '-')}" for f in ("locale", "time_zone", "account") if f not in given]
    if missing:
        raise UsageError(f"--answer-file full needs {', '.join(missing)}",
                         "give the locale (en-US), time zone (UTC) and account name of the unattended install")
    if ("password_file" in given) == ("password_env" in given):
        raise UsageError("--answer-file full needs exactly one of --password-file and --password-env",
                         "give the file or environment variable that holds the account's password")
    for attr in ("password_file", "product_key_file"):
        if attr in given:
            given[attr] = str(Path(given[attr]).absolute())
    return {"answer_file": "full", "unattended": given}


def cmd_service_iso(args: argparse.Namespace) -> int:
    """Service a Windows 7 install ISO: boot-critical viostor, drivers, certificates and test mode in its WIMs."""
    from .media.epoch import source_date_epoch

    iso = Path(args.windows_iso)
    if not iso.is_file():
        raise UsageError(f"--windows-iso {iso}: {not_a_file(iso, 'an ISO file')}",
                         "give the path of a Windows 7 install ISO")
    if args.cert and not args.testsigning:
        raise UsageError("--cert goes with --testsigning: it is the certificate test-signed drivers need trusted",
                         "add --testsigning, or drop --cert (upstream's publisher is trusted from the catalogs)")
    if args.testsigning and not args.cert:
        raise UsageError("--testsigning needs the test certificate the drivers are signed with",
                         "add --cert aero-test.cer (aero-media make-test-cert makes one)")
    for cert in map(Path, args.cert):  # before gigabytes are copied
        if not cert.is_file():
            raise UsageError(f"--cert {cert}: {not_a_file(cert, 'a certificate file')}",
                             "give --cert the test certificate (.cer) the drivers are signed with")
    output = _output_file(args.output, "--output", [("--windows-iso", iso), ("--drivers-root", Path(args.drivers_root)),
                                                    *(("--cert", Path(c)) for c in args.cert)])
    _refuse_recipes(Path(args.drivers_root), "--drivers-root")
    output.parent.mkdir(parents=True, exist_ok=True)
    repo = Context(root=Path(args.root).absolute())
    epoch = source_date_epoch()
    # WIMs are gigabytes: work beside the output, where the result has to fit anyway, not in the temp folder.
    with _work_folder("service", output.parent) as tmp:
        ctx = Context(root=tmp, scratch=True)
        drivers_root = Path(args.drivers_root).absolute()
        data: dict[str, Any] = {
            "schema_version": 1, "name": "adhoc", "description": f"Drivers from {drivers_root.name}",
            "source": {"kind": "pack-dir", "path": str(drivers_root)},
            "target": {"arches": [args.arch]},
            "drivers": [{"name": n, "device": d, "required": r} for n, d, r in DEFAULT_DRIVERS],
            "checks": {"placeholder_catalogs": "allow" if args.allow_placeholder_catalogs else "error"},
            "signing": {"policy": "test" if args.testsigning else "none",
                        "certs": [str(Path(c).absolute()) for c in args.cert]},
            "media": {"winpe_drivers": not args.no_winpe_drivers},
            "install_media": {"path": str(iso.absolute()), "filename": output.name, "winre": not args.no_winre,
                              "nointegritychecks": args.nointegritychecks, **_answer_file(args)},
        }
        spec = spec_from_mapping(data, ctx, SERVICE_ISO_FLAGS, project_contract(repo))
        assert spec.install_media is not None
        # This command delivers the ISO alone (and its record, which lists only that).
        spec = replace(spec, install_media=replace(spec.install_media, publish_wims=False))
        run_graph(ctx, [spec], epoch, [f"{Stage.SERVICE}:{spec.name}"])
        paths = Run(spec, ctx, epoch).paths
        # The stage recorded the ISO's sha256 in servicing.json: gigabytes are not read again.
        record = json.loads(paths.servicing_record.read_bytes())
        digest = next(o["sha256"] for o in record["outputs"] if o["path"] == paths.serviced_iso.name)
        os.replace(paths.servicing_record, output.with_name(output.name + ".servicing.json"))
        os.replace(paths.serviced_iso, output)
    print(f"Wrote {output} (sha256={digest}) and {output.name}.servicing.json")
    return 0


def cmd_verify_iso(args: argparse.Namespace) -> int:
    """Verify a drivers or Guest Tools ISO: required files, and every hash in its manifest.json."""
    from .media.verify import verify_iso

    iso = _iso_input(Path(args.iso), "--iso", "give --iso the drivers ISO (aero-media build-iso or doit wrote it)")
    result = verify_iso(iso, ARCH_CHOICES[args.require_arch], report=Path(args.report) if args.report else None)
    print(f"OK: {iso} ({result.files_checked} files, label {result.label})")
    return 0


def cmd_list_specs(args: argparse.Namespace) -> int:
    """List the specs in specs/ (a broken one is listed as such, with its first problem)."""
    ctx = _ctx(args)
    _require_specs_dir(ctx)
    results = load_each(ctx)
    width = max([len(p.stem) for p, _ in results] + [4])
    print(f"{'name':<{width}}  default  source          description")
    for path, s in results:
        if isinstance(s, Spec):
            print(f"{s.name:<{width}}  {'yes' if s.default else 'no':<7}  {s.source.kind:<14}  {s.description}")
        else:
            print(f"{path.stem:<{width}}  BROKEN   -               {relpath_for_humans(path, ctx.root)}")
            for line in s.render().splitlines():
                print(f"{'':<{width}}    {line}")
    broken = [p for p, s in results if not isinstance(s, Spec)]
    if broken:
        log.error(f"{len(broken)} broken spec(s): {', '.join(relpath_for_humans(p, ctx.root) for p in broken)}; "
                  "fix: correct them (each line above says where), or move them out of specs/")
        return 2
    return 0


def cmd_downloads(args: argparse.Namespace) -> int:
    """Print what decides each download: the cache entry and URL of every spec's ISO (CI keys its cache on this)."""
    from .sources.isocache import cache_file_for

    ctx = _ctx(args)
    _require_specs_dir(ctx)
    lines: set[str] = set()
    for path, s in load_each(ctx):
        if not isinstance(s, Spec):
            log.warn(f"{relpath_for_humans(path, ctx.root)} is broken; a download it names is not listed")
        elif s.source.is_iso and s.source.url:
            # The entry, relative to the cache: the URL and the whole-ISO pin decide it, nothing else in the spec.
            entry = cache_file_for(Path(), s.source.url, s.source.sha256)
            lines.add(f"{entry.as_posix()}  {s.source.url}")
    for line in sorted(lines):
        log.result(line)
    return 0


def cmd_show_spec(args: argparse.Namespace) -> int:
    """Print a spec as the pipeline resolved it (JSON)."""
    spec = _find_spec(_ctx(args), args.name)
    slices = {stage.value: spec.fingerprint(stage) for stage in Stage}
    out = {"name": spec.name, "file": spec.display, "default": spec.default, "slices": slices}
    print(json.dumps(out, indent=2, sort_keys=True, default=str))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Build named specs (or the default ones) through the doit task graph."""
    from .taskgraph.main import AeroDoitMain, SpecTaskLoader

    ctx = _ctx(args)
    _require_specs_dir(ctx)
    for n in args.specs:
        _find_spec(ctx, n)
    # No names: the default specs, as a bare `doit` builds them (a broken spec is left out and fails the end).
    targets = [f"build:{n}" for n in args.specs] or ["default"]
    # Taken here so that --no-wait applies; doit's dep-file backend takes it again (re-entrant).
    buildlock.acquire(ctx.build_dir, buildlock.LockPolicy.FAIL if args.no_wait else None)
    old = os.getcwd()
    reports: list[dict[str, Any]] | None = [] if args.json else None
    try:
        rc = AeroDoitMain(SpecTaskLoader(ctx.root, sink=reports)).run(targets)
    finally:
        os.chdir(old)
        buildlock.release(ctx.build_dir)
    if reports and rc == 0:  # the summary's content, on stdout alone; a failed build prints none (jq -e fails)
        log.result(json.dumps(reports[0], indent=2, sort_keys=True))
    if log.pipe_closed():
        return log.PIPE_EXIT
    return rc if rc in (0, 1, interrupt.EXIT_CODE, log.PIPE_EXIT) else 2


def cmd_pin(args: argparse.Namespace) -> int:
    """Write a spec's pins from its last build (the ISO's sha256, each staged file's): a diff first, --yes writes."""
    from .media.epoch import source_date_epoch
    from .stage.pinfile import built_pins, pin_spec
    from .taskgraph.pins import check_current

    ctx = _ctx(args)
    spec = _find_spec(ctx, args.spec)
    epoch = source_date_epoch()
    run = Run(spec, ctx, epoch)
    pins = built_pins(run)
    check_current(ctx, spec, pins, epoch)
    pin_spec(run, pins, yes=args.yes, replace=args.replace)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """Download (or locate) a spec's virtio-win ISO into the cache and prove its bytes."""
    from .sources.fetch import obtain_iso

    ctx = _ctx(args)
    spec = _find_spec(ctx, args.spec)
    if not spec.source.is_iso:
        raise UsageError(f"spec {spec.name!r} reads a {spec.source.kind}, not an ISO", "nothing to fetch")
    res = obtain_iso(spec.source, ctx.cache_dir(spec), spec_display=spec.display)
    print(f"{res.path}  sha256={res.sha256}  size={res.size}  ({res.origin})")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    """Extract the Windows 7 drivers of a virtio-win ISO into a folder, with provenance (Aero's extract.py)."""
    from .fsutil import write_json_atomic
    from .manifests import Provenance, read_manifest
    from .sources.extract import PROVENANCE_NAME, aero_extract_provenance
    from .sources.fetch import proof_of

    iso = Path(args.virtio_win_iso)
    out = Path(args.out_root)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out}: exists and is not an empty folder", "choose a new or empty --out-root")
    names = [n.strip().lower() for n in args.drivers.split(",") if n.strip()]
    known = {n: (d, r) for n, d, r in DEFAULT_DRIVERS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"--drivers: unknown driver(s) {', '.join(unknown)}", f"use some of: {', '.join(known)}")
    repo = Context(root=Path(args.root).absolute())
    data: dict[str, Any] = {
        "schema_version": 1, "name": "extract",
        "source": {"kind": "virtio-win-iso", "path": str(iso.absolute())},
        "drivers": [{"name": n, "device": known[n][0], "required": known[n][1]} for n in names],
        "optional": "strict" if args.strict_optional else "best-effort",
    }
    spec = spec_from_mapping(data, repo, EXTRACT_FLAGS)
    _iso_input(iso, "--virtio-win-iso", "give the path of a virtio-win release ISO")
    shown = relpath_for_humans(iso)  # as the user knows it, from where the command runs
    folder = Path(os.path.abspath(out)).parent
    folder.mkdir(parents=True, exist_ok=True)
    # Beside --out-root, so the extracted tree moves there by a rename.
    with _work_folder("extract", folder) as tmp:
        ctx = Context(root=tmp, scratch=True)
        # Extraction dates nothing: the epoch is not read.
        run = Run(spec, ctx, 0)
        run_graph(ctx, [spec], run.epoch, [f"{Stage.EXTRACT}:{spec.name}"])
        prov = read_manifest(run.paths.provenance, Provenance.from_json)
        # The ISO's sha256 (the fetch stage started hashing it; the prove stage is not run here).
        digest, _size = proof_of(iso, run.memo, progress=False)
        prov = replace(prov, source=replace(prov.source, path=shown, sha256=digest))
        write_json_atomic(run.paths.extract_dir / PROVENANCE_NAME, aero_extract_provenance(prov))
        os.replace(run.paths.extract_dir, out)
    print(f"Extracted {sum(len(p.files) for p in prov.packages)} files to {out}")
    return 0


def _check_contract(args: argparse.Namespace) -> Contract:
    """The contract `check` holds the folder to: ``--contract`` (ours or Aero's JSON), else the project's."""
    if args.contract is None:
        return project_contract(Context(root=Path(args.root)))
    path = Path(args.contract)
    if not path.is_file():
        raise UsageError(f"--contract {args.contract}: no such file",
                         "give --contract a device contract: specs/contracts/aero-in-tree.json, Aero's "
                         "docs/windows-device-contract.json, or a file like specs/devices.yaml")
    return load_contract(path, args.contract)


def cmd_check(args: argparse.Namespace) -> int:
    """Check a driver folder (one package, or a pack root) the way Windows 7 would see it."""
    from .fsutil import write_json_atomic
    from .spec.types import WarningPolicy
    from .win7.findings import CheckPolicy, format_table
    from .win7.folders import check_folder

    folder = Path(args.dir)
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder", "give a package folder (with an .inf) or a pack root")
    _refuse_recipes(folder, "check")
    contract = _check_contract(args)
    if args.device is not None:
        contract.device(args.device)
    policy = CheckPolicy(allow_sha256_only=args.allow_sha256_only,
                         placeholder_catalogs=(PlaceholderPolicy.ALLOW if args.allow_placeholder_catalogs
                                               else PlaceholderPolicy.ERROR),
                         signing_policy=SigningPolicy(args.signing_policy), vocabulary=CHECK_FLAGS)
    reports = check_folder(folder, contract, policy, Arch(args.arch) if args.arch else None, args.device)
    log.info(format_table(reports))
    if args.json:
        write_json_atomic(Path(args.json), [r.to_json() for r in reports])
    warnings = WarningPolicy.ERROR if args.warnings_as_errors else WarningPolicy.WARN
    failing = [f for r in reports for f in r.failing(warnings)]
    print(f"{len(reports)} package(s) checked: "
          f"{sum(len(r.errors) for r in reports)} error(s), {sum(len(r.warnings) for r in reports)} warning(s)")
    return 1 if failing else 0


def _refuse_key_folder_in_checkout(out: Path, root: Path) -> None:
    """The build refuses a key inside the checkout: refuse to write one there in the first place."""
    from .win7.signing import key_inside

    here = Path(os.path.abspath(out))
    checkouts = [root] if (root / "specs").is_dir() else []
    checkouts += [d for d in (here, *here.parents) if (d / ".git").exists()][:1]
    for checkout in checkouts:
        if key_inside(here / "key", checkout):
            raise UsageError(f"--out {out}: inside the checkout {Path(os.path.abspath(checkout))}; the private key "
                             "would be one commit away from leaking, and the build refuses a key there",
                             "leave --out out (~/.config/aero-virtio-media) or give a folder outside the checkout")


def cmd_make_test_cert(args: argparse.Namespace) -> int:
    """Create a code-signing test certificate (.cer for the media; .pfx/.key.pem stay with you)."""
    from .devtools.testcert import make_test_cert
    from .media.epoch import source_date_epoch

    # Outside any checkout by default: a key in the repo tree is refused when signing.
    out = Path(args.out).expanduser() if args.out else Path.home() / ".config" / "aero-virtio-media"
    _refuse_key_folder_in_checkout(out, Path(args.root))
    # Valid from the build epoch, which is the signing time of every build at the default SOURCE_DATE_EPOCH.
    tc = make_test_cert(out, args.name, args.subject, args.days, not_before=source_date_epoch())
    print(f"certificate: {tc.cer} (sha1 {tc.thumbprint})")
    print(f"private key: {tc.key_pem} and {tc.pfx}: sign with them, never ship them")
    print(f"use it: signing: {{mode: test, cert: {tc.cer}, key: {tc.key_pem}}}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``aero-media``."""
    ap = argparse.ArgumentParser(prog="aero-media", description="Build Windows 7 virtio driver media for Aero.")
    ap.add_argument("--version", action="version", version=f"aero-media {__version__}")
    ap.add_argument("--root", default=".", help="project folder holding specs/, build/ and dist/ (default: .)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=(fn.__doc__ or "").splitlines()[0], description=fn.__doc__)
        p.set_defaults(func=fn)
        return p

    p = add("build-iso", cmd_build_iso)
    p.add_argument("--drivers-root", required=True, help="Aero pack: win7/<arch>/<driver>/ + THIRD_PARTY_NOTICES.md")
    p.add_argument("--output", required=True, help="the ISO to write")
    p.add_argument("--require-arch", choices=list(ARCH_CHOICES), default="both")
    p.add_argument("--label", help="volume label (default AERO_VIRTIO)")
    p.add_argument("--source-date-epoch", type=int, help="timestamp for every entry (default: $SOURCE_DATE_EPOCH, "
                                                        "else 315532800 = 1980-01-01)")
    p.add_argument("--allow-placeholder-catalogs", action="store_true",
                   help="accept the sample pack's placeholder .cat files")
    p.add_argument("--allow-sha256-only", action="store_true",
                   help="accept SHA-256-only catalogs (they need KB3033929 and fail in Windows 7 Setup)")
    p.add_argument("--signing-policy", choices=[p.value for p in SigningPolicy], default="none",
                   help="test: accept unsigned catalogs, which you test-sign before use (default: none)")
    p.add_argument("--no-winpe-drivers", action="store_true",
                   help="leave out $WinPEDriver$\\ (the copy Windows 7 Setup finds by itself)")

    p = add("build-fat", cmd_build_fat)
    p.add_argument("--drivers-root", required=True, help="Aero pack: win7/<arch>/<driver>/ + THIRD_PARTY_NOTICES.md")
    p.add_argument("--output", required=True, help="the .vhd to write")
    p.add_argument("--require-arch", choices=list(ARCH_CHOICES), default="both")
    p.add_argument("--label", dest="fat_label", help="FAT volume label, at most 11 characters (default AERO)")
    p.add_argument("--size-mib", type=int, help="disk size (default: at least 64 MiB and 1.2 x the payload + 8 MiB)")
    p.add_argument("--source-date-epoch", type=int, help="timestamp for every entry (default: $SOURCE_DATE_EPOCH, "
                                                        "else 315532800 = 1980-01-01)")
    p.add_argument("--allow-placeholder-catalogs", action="store_true",
                   help="accept the sample pack's placeholder .cat files")
    p.add_argument("--allow-sha256-only", action="store_true", help="accept SHA-256-only catalogs")
    p.add_argument("--signing-policy", choices=[p.value for p in SigningPolicy], default="none",
                   help="test: accept unsigned catalogs, which you test-sign before use (default: none)")
    p.add_argument("--no-winpe-drivers", action="store_true", help="leave out $WinPEDriver$\\")
    p.set_defaults(label=None)

    p = add("service-iso", cmd_service_iso)
    p.add_argument("--windows-iso", required=True, help="a Windows 7 install ISO (never modified)")
    p.add_argument("--drivers-root", required=True, help="Aero pack: win7/<arch>/<driver>/ + THIRD_PARTY_NOTICES.md")
    p.add_argument("--output", required=True, help="the serviced ISO to write (servicing.json goes beside it)")
    p.add_argument("--arch", choices=["x86", "amd64"], default="amd64", help="the image's arch (default amd64)")
    p.add_argument("--cert", action="append", default=[], help="test certificate for Root and TrustedPublisher")
    p.add_argument("--testsigning", action="store_true", help="turn on test mode (test-signed drivers)")
    p.add_argument("--allow-placeholder-catalogs", action="store_true",
                   help="accept the sample pack's placeholder .cat files")
    p.add_argument("--no-winpe-drivers", action="store_true", help="leave $WinPEDriver$\\ off the ISO")
    p.add_argument("--no-winre", action="store_true",
                   help="leave the recovery image (winre.wim) inside each install image as it is")
    p.add_argument("--nointegritychecks", action="store_true",
                   help="also set nointegritychecks where test mode goes (off by default; a last resort)")
    p.add_argument("--answer-file", choices=["drivers-only", "full"],
                   help="write autounattend.xml at the ISO's root (default: none); full needs the options below")
    p.add_argument("--locale", help="full: Setup's and the system's locale, e.g. en-US")
    p.add_argument("--time-zone", help="full: a Windows time zone ID, e.g. UTC")
    p.add_argument("--account", help="full: the local administrator to create")
    p.add_argument("--password-file", help="full: a file whose first line is the account's password")
    p.add_argument("--password-env", help="full: an environment variable holding the account's password")
    p.add_argument("--product-key-file", help="full: a file whose first line is the product key (else Setup asks)")
    p.add_argument("--product-key-env", help="full: an environment variable holding the product key")
    p.add_argument("--wipe-disk-0", action="store_true", help="full: erase disk 0 and install onto it")

    p = add("verify-iso", cmd_verify_iso)
    p.add_argument("--iso", required=True)
    p.add_argument("--require-arch", choices=list(ARCH_CHOICES), default="both")
    p.add_argument("--report", help="also write the JSON report here")

    p = add("fetch", cmd_fetch)
    p.add_argument("spec", help="spec name")
    p.add_argument("--cache-dir", help="download cache (default: $AERO_MEDIA_CACHE, else ~/.cache/aero-virtio-media)")

    p = add("extract", cmd_extract)
    p.add_argument("--virtio-win-iso", required=True)
    p.add_argument("--out-root", required=True, help="new or empty folder; gets <Driver>/<os>/<arch>/ as on the ISO")
    p.add_argument("--drivers", default=",".join(n for n, _, _ in DEFAULT_DRIVERS),
                   help="comma-separated (default: all four; viostor and netkvm are required)")
    p.add_argument("--strict-optional", action="store_true", help="fail when an optional driver is missing")

    p = add("check", cmd_check)
    p.add_argument("dir", help="a package folder, or a pack root with win7/<arch>/<driver>/")
    p.add_argument("--arch", choices=["x86", "amd64"], help="default: from the folder names or the PE files")
    p.add_argument("--device", help="contract device, e.g. virtio-blk (default: from the INF's IDs and service)")
    p.add_argument("--contract", help="the device contract to check against: ours (.yaml) or Aero's JSON "
                                      "(docs/windows-device-contract.json); default: the project's")
    p.add_argument("--signing-policy", choices=[p.value for p in SigningPolicy], default="none")
    p.add_argument("--allow-sha256-only", action="store_true", help="accept SHA-256-only catalogs")
    p.add_argument("--allow-placeholder-catalogs", action="store_true", help="accept the sample pack's placeholders")
    p.add_argument("--warnings-as-errors", action="store_true", help="exit 1 on warnings too")
    p.add_argument("--json", help="also write the reports as JSON here")

    p = add("make-test-cert", cmd_make_test_cert)
    p.add_argument("--out", help="folder for the files (default: ~/.config/aero-virtio-media, outside the checkout)")
    p.add_argument("--name", default="aero-test", help="file name stem (default: aero-test)")
    p.add_argument("--subject", default="Aero virtio test signing", help="certificate common name")
    p.add_argument("--days", type=int, default=3650, help="validity in days (default: 3650)")

    add("list-specs", cmd_list_specs)
    add("downloads", cmd_downloads)
    p = add("show-spec", cmd_show_spec)
    p.add_argument("name")
    p = add("pin", cmd_pin)
    p.add_argument("spec", help="the spec whose file gets the pins (build it and check its media first)")
    p.add_argument("--yes", action="store_true", help="write the pins (without it, only the diff is shown)")
    p.add_argument("--replace", action="store_true",
                   help="replace pins that differ from the build (without it, each is an error line)")

    p = add("build", cmd_build)
    p.add_argument("specs", nargs="*", help="spec names (default: the specs marked default: true)")
    p.add_argument("--no-wait", action="store_true",
                   help="exit 2 at once if another build holds this checkout (as AERO_MEDIA_LOCK=fail does)")
    p.add_argument("--json", action="store_true",
                   help="print the combined report (specs/report.schema.json) on stdout instead of the summary")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args = build_parser().parse_args(argv)
    # Ctrl-C unwinds the command (its temp files are removed) into one line; whatever fails after
    # it (an exception Python wraps, a pipe closed under a reader) is that Ctrl-C, not a crash.
    restore_sigint = interrupt.install(interrupt.AGAIN)
    try:
        return int(interrupt.unwinding(args.func)(args))
    except PipelineError as exc:
        log.error(exc.render())
        if args.debug:
            raise
        return exc.exit_code
    except BrokenPipeError:
        # The reader of stdout went away (`aero-media ... | head -1`): nothing to tell it, no traceback.
        log.silence(sys.stdout)
        return log.PIPE_EXIT
    except OSError as exc:
        # Unwritable output folders, a full disk and the like: the user's to fix, not a crash.
        err = disk_error(exc)
        log.error(err.render())
        if args.debug:
            raise
        return err.exit_code
    except Reported as exc:
        if exc.cause is not None:  # a stage's error, whole; doit has said anything else in one line
            log.error(exc.cause.render())
            if args.debug:
                raise exc.cause from None
        return exc.exit_code
    except interrupt.Interrupted:
        interrupt.stop(interrupt.AGAIN)  # its line, unless the handler wrote it
        return interrupt.EXIT_CODE
    finally:
        restore_sigint()


if __name__ == "__main__":  # python -m aero_media.cli, as well as python -m aero_media
    sys.exit(main())
