"""Stage one arch: copy the selected packages to ``build/<spec>/stage/win7/<arch>/``.

The stage's doit target is a manifest listing every staged file with size and
sha256. It is removed first and written last, so an interrupted stage never
leaves a manifest that looks complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import log
from .errors import SourceError
from .fsutil import copy_fp_hashed, relpath_for_humans, staging_dir, write_json_atomic
from .certs import refuse_private_keys
from .checks import CheckPolicy, check_package, format_table, gate
from .layout import LAYOUT_OF_SOURCE, Package, Selection, select, staged_path
from .paths import SpecPaths
from .spec import Arch, Context, Spec
from .tree import DirTree, Tree

MANIFEST_SCHEMA = 1


def source_tree(spec: Spec, ctx: Context) -> tuple[Tree, str]:
    """Return the tree staging reads from, and its layout name.

    Directory sources are read in place; an ISO source is read from what the
    extract stage copied out of it.
    """
    if spec.source.is_iso:
        root = SpecPaths(spec, ctx).extract_dir
        if not root.is_dir():
            raise SourceError(f"{relpath_for_humans(root, ctx.root)}: nothing extracted yet",
                              f"run `doit extract:{spec.name}` first")
        return DirTree(root, relpath_for_humans(root, ctx.root)), "virtio-win"
    assert spec.source.path is not None
    display = relpath_for_humans(spec.source.path, ctx.root)
    if not spec.source.path.is_dir():
        raise SourceError(f"{spec.display}: source.path {display!r} is not a directory",
                          "point source.path at the driver tree (relative to the repo root, or absolute)")
    return DirTree(spec.source.path, display), LAYOUT_OF_SOURCE[spec.source.kind]


def select_for(spec: Spec, ctx: Context) -> tuple[Tree, Selection]:
    """Run the selection rules of ``spec`` over its source tree."""
    tree, layout = source_tree(spec, ctx)
    return tree, select(tree.entries(), spec, tree.display, layout)


def check_expect(spec: Spec, arch: Arch, files: dict[str, dict[str, Any]]) -> list[str]:
    """Compare staged files against the spec's payload pins for ``arch``; return problems."""
    problems = []
    staged_drivers = {p.split("/")[2] for p in files}
    for path, want in sorted(spec.source.expect.items()):
        if path.split("/")[1] != arch.value:
            continue
        got = files.get(path)
        if got is None:
            drv = path.split("/")[2]
            if drv not in staged_drivers and not spec.driver(drv).required:
                log.warn(f"{spec.display}: source.expect pins {path}, but optional driver {drv!r} was not staged")
                continue
            problems.append(f"source.expect pins {path}, but no such file was staged")
        elif got["sha256"] != want:
            problems.append(f"{path}: sha256 {got['sha256']} does not match the pin {want} in source.expect")
    if spec.source.expect and spec.source.sha256 is None:
        # Without a whole-ISO pin, the per-file pins are the only proof: all or nothing.
        unpinned = sorted(p for p in files if p not in spec.source.expect)
        if unpinned:
            problems.append(f"source.expect pins some files but not {', '.join(unpinned)}; without source.sha256 "
                            "every staged file needs a pin (or an entry in source.exclude)")
    return problems


def validate_packages(spec: Spec, arch: Arch, root: Path, packages: tuple[Package, ...]) -> dict[str, Any]:
    """Check each staged package the way Windows 7 would; fail on errors (and warnings if the spec says)."""
    policy = CheckPolicy.from_spec(spec)
    reports = [check_package(root / p.driver.name, arch, p.driver.device, policy, driver=p.driver.name)
               for p in packages]
    if reports:
        log.info(format_table(reports))
    findings = [f for r in reports for f in r.findings]
    summary = {sev: sum(1 for f in findings if f.severity == sev) for sev in ("error", "warning", "info")}
    result = {"policy": {"warnings": spec.checks.warnings, "allow_sha256_only": policy.allow_sha256_only,
                         "placeholder_catalogs": policy.placeholder_catalogs,
                         "signing_policy": policy.signing_policy},
              "summary": {"packages": len(reports), **summary},
              "packages": [r.to_json() for r in reports]}
    gate(reports, spec.checks.warnings)
    return result


def stage_arch(spec: Spec, ctx: Context, arch: Arch) -> dict[str, Any]:
    """Stage every selected package for ``arch`` and write the stage manifest."""
    paths = SpecPaths(spec, ctx)
    manifest_path = paths.stage_manifest(arch)
    manifest_path.unlink(missing_ok=True)
    tree, selection = select_for(spec, ctx)
    for w in selection.warnings:
        log.warn(w)
    packages = selection.for_arch(arch)
    total = sum(f.entry.size for p in packages for f in p.files)
    progress = log.Progress(f"stage {spec.name} {arch.value}", total)
    files: dict[str, dict[str, Any]] = {}
    pkg_records = []
    with staging_dir(paths.stage_dir(arch)) as tmp:
        for pkg in packages:
            record_files = []
            for f in pkg.files:
                media_path = staged_path(pkg, f)
                dest = tmp / pkg.driver.name / f.rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tree.open(f.entry) as src, open(dest, "wb") as out:
                    digest, size = copy_fp_hashed(src, out, lambda n: progress.advance(n))
                progress.advance(0, files=1)
                if size != f.entry.size:
                    raise SourceError(f"{tree.display}: {f.entry.path} changed while it was copied "
                                      f"({f.entry.size} bytes listed, {size} read)", "rerun the build")
                dest.chmod(0o644)
                rec = {"path": media_path, "sha256": digest, "size": size, "source_path": f.entry.path}
                files[media_path] = rec
                record_files.append(rec)
            pkg_records.append({
                "driver": pkg.driver.name,
                "device": pkg.driver.device.name,
                "required": pkg.driver.required,
                "os_dir": pkg.os_dir,
                "source_dir": pkg.source_dir,
                "files": record_files,
            })
        progress.close()
        refuse_private_keys([(p, tmp / p.split("/", 2)[2]) for p in files], tree.display)
        problems = check_expect(spec, arch, files)
        if problems:
            raise SourceError("\n".join(f"{spec.display}: {p}" for p in problems),
                              "the source differs from the pinned payload: check it, then update source.expect")
        validation = validate_packages(spec, arch, tmp, packages)
    manifest = {
        "schema_version": MANIFEST_SCHEMA,
        "spec": spec.name,
        "arch": arch.value,
        "source": {"kind": spec.source.kind, "tree": tree.display, "reader": tree.reader},
        "packages": pkg_records,
        "files": [files[k] for k in sorted(files)],
        "missing_optional": [m.to_json() for m in selection.missing_optional if m.arch in (arch, None)],
        "warnings": list(selection.warnings),
        "validation": validation,
    }
    write_json_atomic(manifest_path, manifest)
    log.info(f"staged {len(pkg_records)} packages, {len(files)} files for {spec.name} {arch.value}")
    return manifest


def load_stage_files(manifest_paths: list[Path]) -> list[dict[str, Any]]:
    """Return the file records of several stage manifests, sorted by media path."""
    from .fsutil import read_json

    out: list[dict[str, Any]] = []
    for p in manifest_paths:
        out.extend(read_json(p)["files"])
    return sorted(out, key=lambda r: r["path"])
