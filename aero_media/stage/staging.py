"""Stage one arch: copy the selected packages to ``build/<spec>/stage/win7/<arch>/``.

The stage's doit target is a manifest listing every staged file with size and
sha256. It is removed first and written last, so an interrupted stage never
leaves a manifest that looks complete.
"""

from __future__ import annotations

from pathlib import Path

from .. import log
from ..errors import SourceError
from ..fsutil import copy_fp_hashed, staging_dir, write_json_atomic
from ..manifests import StagedFile, StagedPackage, StageManifest, StageSource
from ..paths import Run
from ..sources import aero
from ..sources.resolve import source_tree
from ..sources.selection import Package, Selection, select, staged_path
from ..sources.tree import Tree
from ..spec.types import Arch, SourceKind
from ..win7.certs import refuse_private_keys
from ..win7.findings import PackageReport
from .pins import check_expect
from .signing import sign_packages, signer_thumbprint, verify_packages
from .validate import validate_packages


def select_for(run: Run) -> tuple[Tree, Selection]:
    """Run the selection rules of the spec over its source tree (an Aero checkout: its ci-package.json files)."""
    if run.spec.source.kind is SourceKind.AERO_CHECKOUT:
        checkout = aero.checkout(run)
        return checkout, aero.select_aero(checkout, run.spec)
    tree = source_tree(run)
    return tree, select(tree.entries(), run.spec, tree.display)


def _stage_source(run: Run, tree: Tree) -> StageSource:
    """What the manifest says about the source; for an Aero checkout, which output and whether it is signed."""
    kind = run.spec.source.kind
    if not isinstance(tree, aero.AeroCheckout):
        return StageSource(kind, tree.display, tree.reader)
    cert = tree.certificate()
    return StageSource(kind, tree.display, tree.reader, input=tree.aero_input.value, signed=tree.aero_input.signed,
                       certificate=None if cert is None else aero.CERTIFICATE)


def _copy_package(tree: Tree, pkg: Package, tmp: Path, progress: log.Progress) -> list[StagedFile]:
    out = []
    for f in pkg.files:
        dest = tmp / pkg.driver.name / f.rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tree.open(f.entry) as src, open(dest, "wb") as fp:
            digest, size = copy_fp_hashed(src, fp, lambda n: progress.advance(n))
        progress.advance(0, files=1)
        if size != f.entry.size:
            raise SourceError(f"{tree.display}: {f.entry.path} changed while it was copied "
                              f"({f.entry.size} bytes listed, {size} read)", "rerun the build")
        dest.chmod(0o644)
        out.append(StagedFile(staged_path(pkg, f), digest, size, f.entry.path))
    return out


def _staged_package(pkg: Package, files: list[StagedFile], report: PackageReport) -> StagedPackage:
    facts = report.key_facts
    infs = [f.path for f in files if f.path.lower().endswith(".inf")]
    inf = f"{pkg.staged_dir}/{facts.inf}" if facts.inf else infs[0]
    return StagedPackage(driver=pkg.driver.name, device=pkg.driver.device.name, required=pkg.driver.required,
                         os_dir=pkg.os_dir, source_dir=pkg.source_dir, files=tuple(files), inf=inf,
                         service=facts.service, sys_file=facts.service_binary)


def stage_arch(run: Run, arch: Arch) -> StageManifest:
    """Stage every selected package for ``arch`` and write the stage manifest.

    The run's epoch (SOURCE_DATE_EPOCH) dates what test signing writes; nothing else here depends on it.
    """
    spec, paths = run.spec, run.paths
    manifest_path = paths.stage_manifest(arch)
    manifest_path.unlink(missing_ok=True)
    tree, selection = select_for(run)
    source = _stage_source(run, tree)
    for w in selection.warnings:
        log.warn(w)
    packages = selection.for_arch(arch)
    progress = log.Progress(f"stage {spec.name} {arch.value}", sum(f.entry.size for p in packages for f in p.files))
    with staging_dir(paths.stage_dir(arch)) as tmp:
        copied = [_copy_package(tree, pkg, tmp, progress) for pkg in packages]
        progress.close()
        files = {f.path: f for fs in copied for f in fs}
        refuse_private_keys([(p, tmp / p.split("/", 2)[2]) for p in files], tree.display)
        problems = check_expect(spec, arch, files)
        if problems:
            raise SourceError("\n".join(f"{spec.display}: {p}" for p in problems),
                              "the source differs from the pinned payload: check it, then update source.expect")
        trusted: tuple[str, ...] = ()
        signer = spec.signing.signer
        if signer is not None and not signer.signs:
            verify_packages(run, arch, tmp, packages)  # already signed: kept byte for byte
            trusted = (signer_thumbprint(run),)
        elif signer is not None:
            files = sign_packages(run, arch, tmp, packages, files)
            copied = [sorted((f for f in files.values() if f.path.startswith(pkg.staged_dir + "/")),
                             key=lambda f: f.path.casefold()) for pkg in packages]
            trusted = (signer_thumbprint(run),)
        validation = validate_packages(spec, arch, tmp, packages, trusted)
    manifest = StageManifest(
        spec=spec.name,
        arch=arch,
        source=source,
        packages=tuple(_staged_package(p, fs, r) for p, fs, r in zip(packages, copied, validation.reports,
                                                                       strict=True)),
        missing_optional=tuple(m for m in selection.missing_optional if m.arch in (arch, None)),
        warnings=selection.warnings,
        validation=validation,
    )
    write_json_atomic(manifest_path, manifest.to_json())
    log.info(f"staged {len(manifest.packages)} packages, {len(files)} files for {spec.name} {arch.value}")
    return manifest
