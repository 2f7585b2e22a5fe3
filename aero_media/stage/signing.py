"""Sign the staged packages (``signing: {mode: test}``): catalogs as Inf2Cat makes them, every ``.sys`` embed-signed;
or, for packages signed elsewhere (``mode: keep``), verify every signature against ``signing.cert`` and keep it.

Runs inside staging, after the payload pins are checked and before validation, so
the checks judge the re-signed packages exactly as they judge upstream ones, with
the spec's certificate as the only trusted signer. The private key is read where
the spec says (a path outside the checkout, or an environment variable) and is only
ever handed to osslsigncode as a path: it reaches no medium, manifest or log. PEM
text from the environment never becomes a file with a name: osslsigncode reads it
from a file in memory (``/dev/fd/N``), freed when the build ends, however it ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from .. import log
from ..errors import SourceError, UsageError, ValidationError
from ..fsutil import sha256_file
from ..manifests import StagedFile
from ..paths import GENERATED_CERT, Run
from ..scratch import memory_file, sweep_old_temp_folders
from ..sources.selection import Package
from ..spec.types import Arch
from ..win7.catalog import CatalogError, load_catalog
from ..win7.catalogmake import PE_SUFFIXES, CatalogMemberFile, inf_catalog_files, make_catalog
from ..win7.certs import Cert, load_cert_file, publisher_cert, thumbprint
from ..win7.inf import parse_inf
from ..win7.pe import PeError, pe_info
from ..win7.signing import (
    Osslsigncode,
    SigningKey,
    check_key_type,
    expired_by,
    refuse_key_inside,
    sign_catalog,
    sign_pe,
)
from ..win7.sigverify import SignatureCheck, Verdict

_PEM_ARMOUR = "-----BEGIN"  # a variable holding PEM text, not a path


def signer_thumbprint(run: Run) -> str:
    """SHA-1 thumbprint of the certificate the build signs with (the only signer validation trusts)."""
    spec, cert = run.spec, run.paths.signing_cert
    assert cert is not None
    if not cert.is_file():
        raise SourceError(f"{spec.display}: signing.cert {cert}: no such file",
                          "make one with `aero-media make-test-cert --out ~/.config/aero`, or fix the path")
    return load_cert_file(cert, f"{spec.display}: signing.cert").thumbprint


@contextlib.contextmanager
def signing_key(run: Run) -> Iterator[SigningKey]:
    """The certificate and key to sign with, the key as a path osslsigncode reads (for PEM text from the
    environment, ``/dev/fd/N`` of a file in memory that has no name and vanishes with the process)."""
    spec, ctx, paths = run.spec, run.ctx, run.paths
    sig = spec.signing.signer
    assert sig is not None
    cert = paths.signing_cert
    assert cert is not None
    if sig.from_pfx:
        from .pfx import load_pfx

        pair = load_pfx(spec, ctx.root)
        if pair is not None:
            with memory_file(pair.key_pem(), "signing-key") as pem:
                yield SigningKey(cert, pem.path, pass_fds=(pem.fd,))
            return
    if sig.generate:
        yield SigningKey(cert, paths.signing_dir / f"{GENERATED_CERT}.key.pem")
        return
    if not cert.is_file():
        raise UsageError(f"{spec.display}: signing.cert {cert}: no such file",
                         "point signing.cert at the certificate (.cer) `aero-media make-test-cert` wrote")
    if sig.key is not None:
        refuse_key_inside(sig.key, ctx.root, f"signing.key in {spec.display}")
        _require_key(sig.key, f"{spec.display}: signing.key", "point signing.key at")
        yield SigningKey(cert, sig.key)
        return
    assert sig.key_env is not None
    value = os.environ.get(sig.key_env, "")
    if not value.strip():
        raise UsageError(f"{spec.display}: signing.key_env names {sig.key_env}, which is not set",
                         f"export {sig.key_env}=<path of the private key> (or its PEM text) and run again")
    if not value.lstrip().startswith(_PEM_ARMOUR):
        key = Path(value).expanduser()
        refuse_key_inside(key, ctx.root, f"the {sig.key_env} environment variable")
        _require_key(key, f"{spec.display}: signing.key_env {sig.key_env}", f"set {sig.key_env} to")
        yield SigningKey(cert, key)
        return
    # PEM text (a CI secret): a file in memory with no name, so not even a kill -9 leaves it on disk. Older
    # versions wrote it to $TMPDIR/aero-signing-*/key.pem; one a killed run left goes now.
    sweep_old_temp_folders()
    if not value.isascii():
        raise UsageError(f"{spec.display}: signing.key_env {sig.key_env} holds PEM text with non-ASCII characters",
                         f"set {sig.key_env} to the private key exactly as `aero-media make-test-cert` wrote it")
    with memory_file(value.encode("ascii"), "signing-key") as pem:
        yield SigningKey(cert, pem.path, pass_fds=(pem.fd,))


def _require_key(key: Path, where: str, fix: str) -> None:
    if not key.is_file():
        raise UsageError(f"{where}: {key}: no such file",
                         f"{fix} the private key (.key.pem) `aero-media make-test-cert` wrote")


def _catalog_name(inf_path: Path, arch: Arch, where: str) -> str:
    line = parse_inf(inf_path.read_bytes(), inf_path.name).catalog_file(arch.inf_arch)
    if line is None or not line.value.strip():
        raise SourceError(f"{where}: {inf_path.name} names no CatalogFile, so there is no catalog to sign",
                          f"add CatalogFile={inf_path.stem}.cat to its [Version] section")
    name = line.value.strip()
    if "/" in name or "\\" in name or not name.lower().endswith(".cat"):
        raise SourceError(f"{where}: {inf_path.name}: CatalogFile {name!r} is not a .cat file name",
                          f"set CatalogFile={inf_path.stem}.cat")
    return name


def _catalogs(pkg_dir: Path, arch: Arch, where: str) -> dict[str, list[CatalogMemberFile]]:
    """Each catalog the package's INFs name, with its members as Inf2Cat ``/os:7_X86`` or ``/os:7_X64`` lists them.

    Aero's ``ci/make-catalogs.ps1`` runs Inf2Cat once per arch package with that arch's OS only;
    Inf2Cat lists each INF and the files it copies, not every file in the folder. A file the INF
    names that the package lacks is an error here, as Inf2Cat stops on it.
    """
    out: dict[str, list[CatalogMemberFile]] = {}
    infs = sorted(p for p in pkg_dir.iterdir() if p.is_file() and p.suffix.lower() == ".inf")
    for inf_path in infs:
        inf = parse_inf(inf_path.read_bytes(), inf_path.name)
        members = out.setdefault(_catalog_name(inf_path, arch, where).lower(), [])
        wanted = [(inf_path.name, inf_path)]
        for rel in inf_catalog_files(inf, arch):
            found = _find(pkg_dir, rel)
            if found is None:
                raise SourceError(f"{where}: {inf_path.name} copies {rel}, which the package does not have, so "
                                  "its catalog cannot list it",
                                  f"add {rel} to the package, or remove it from {inf_path.name}")
            wanted.append((found.name, found))
        known = {m.name.lower() for m in members}
        for name, path in wanted:
            if name.lower() not in known:
                known.add(name.lower())
                # Members are matched by hash; their File attribute is the bare name, as Inf2Cat writes it.
                members.append(CatalogMemberFile(name, path))
    return out


def _find(pkg_dir: Path, rel: str) -> Path | None:
    """``rel`` inside the package, matched case-insensitively as Windows does."""
    here = pkg_dir
    for part in rel.split("/"):
        match = [p for p in here.iterdir() if p.name.lower() == part.lower()] if here.is_dir() else []
        if not match:
            return None
        here = sorted(match)[0]
    return here if here.is_file() else None


def _restaged(pkg: Package, pkg_dir: Path, updated: dict[str, StagedFile]) -> None:
    for path in sorted(pkg_dir.rglob("*")):
        if path.is_file():
            staged = f"{pkg.staged_dir}/{path.relative_to(pkg_dir).as_posix()}"
            digest, size = sha256_file(path)
            old = updated.get(staged)
            updated[staged] = StagedFile(staged, digest, size, old.source_path if old else "")


def sign_packages(run: Run, arch: Arch, root: Path, packages: tuple[Package, ...],
                  files: dict[str, StagedFile]) -> dict[str, StagedFile]:
    """Embed-sign every ``.sys`` of each package, then write and sign its catalogs; return updated records.

    The order and the files are Aero's ``ci/sign-drivers.ps1``: every ``.sys`` first, then every
    catalog; SHA-1, and with ``signing.dual_sign`` a nested SHA-256 signature after it (its
    ``-DualSign``). ``root`` is the arch's staging folder (one subfolder per driver). The run's
    epoch is the catalogs' ThisUpdate and the signing time, so the bytes depend on the inputs only.
    """
    spec, epoch = run.spec, run.epoch
    assert spec.signing.signer is not None
    dual = spec.signing.signer.dual_sign
    tool = Osslsigncode.find()
    updated = dict(files)
    cert = run.paths.signing_cert
    if cert is not None and cert.is_file():  # else signing_key says it is missing
        # Named by its setting here; the signer checks it again, for callers that sign on their own.
        for warning in check_key_type(cert, f"{spec.display}: signing.cert"):
            log.warn(warning)
    with signing_key(run) as key:
        # Only a warning (the media do not depend on today's date), but the signatures carry no
        # timestamp, and Windows judges them by the certificate's validity when it installs them.
        for name, end in expired_by(key.cert, datetime.now(UTC)):
            log.warn(f"{spec.display}: signing certificate {name!r} expired on {end:%Y-%m-%d}; Windows 7 will "
                     "refuse these untimestamped signatures; fix: make a new one (aero-media make-test-cert)")
        for pkg in packages:
            pkg_dir = root / pkg.driver.name
            where = f"{spec.display}: {pkg.staged_dir}"
            # The catalogs list what the INFs copy; an embedded signature leaves a PE's Authenticode hash as it is.
            catalogs = _catalogs(pkg_dir, arch, where)
            for f in sorted(pkg_dir.rglob("*")):
                if f.is_file() and f.suffix.lower() == ".sys":
                    sign_pe(f, f, key, signing_time=epoch, tool=tool, dual=dual)
            for name, members in sorted(catalogs.items()):
                cat = _find(pkg_dir, name) or pkg_dir / _catalog_file_name(pkg_dir, name)
                sign_catalog(make_catalog(members, arch, this_update=epoch), cat, key, signing_time=epoch,
                             tool=tool, dual=dual)
            _restaged(pkg, pkg_dir, updated)
    log.info(f"test-signed {len(packages)} package(s) for {arch.value} (every .sys, then the catalogs; "
             f"{'SHA-1 and SHA-256' if dual else 'SHA-1'})")
    return updated


def _catalog_file_name(pkg_dir: Path, lowered: str) -> str:
    """The catalog's name as the first INF naming it spells it (the INFs are the only source of the case)."""
    for inf_path in sorted(p for p in pkg_dir.iterdir() if p.is_file() and p.suffix.lower() == ".inf"):
        line = parse_inf(inf_path.read_bytes(), inf_path.name).catalog_file
        for arch in Arch:
            got = line(arch.inf_arch)
            if got is not None and got.value.strip().lower() == lowered:
                return got.value.strip()
    return lowered


def verify_packages(run: Run, arch: Arch, root: Path, packages: tuple[Package, ...]) -> None:
    """``signing.mode: keep``: every catalog and every embedded signature must verify with ``signing.cert``.

    Nothing is written: the packages keep their signatures byte for byte. Each signature
    (nested ones too) must cover its content, verify with the certificate's key and name that
    certificate as its signer; the first that does not stops the build, naming the package
    and the file. Without a catalog a package cannot be trusted at all: that is an error too.
    """
    spec = run.spec
    cert_path = run.paths.signing_cert
    assert cert_path is not None
    if not cert_path.is_file():
        raise UsageError(f"{spec.display}: signing.cert {cert_path}: no such file",
                         "point signing.cert at the certificate the packages are signed with (Aero: "
                         "out/certs/aero-test.cer)")
    cert = load_cert_file(cert_path, f"{spec.display}: signing.cert")
    fix = (f"sign the package again with the key of {cert.subject!r}, or name the certificate it was signed with "
           "in signing.cert")
    checked = 0
    for pkg in packages:
        pkg_dir = root / pkg.driver.name
        where = f"{spec.display}: package {pkg.staged_dir}"
        cats = [f for f in sorted(pkg_dir.rglob("*")) if f.is_file() and f.suffix.lower() == ".cat"]
        if not cats:
            raise SourceError(f"{where} has no catalog (.cat), so nothing in it is signed",
                              "use the signed package (Aero: out/packages/<driver>/<arch>/), or set signing.mode: "
                              "test to sign it here")
        for f in sorted(pkg_dir.rglob("*")):
            if not f.is_file():
                continue
            rel = f.relative_to(pkg_dir).as_posix()
            if f.suffix.lower() == ".cat":
                problem = _catalog_problem(f, cert)
            elif f.suffix.lower() in PE_SUFFIXES:
                problem = _embedded_problem(f, cert)
            else:
                continue
            if problem is not None:
                raise ValidationError(f"{where}: {rel}: {problem}", fix)
            checked += 1
    log.info(f"verified {checked} signed file(s) in {len(packages)} package(s) for {arch.value} against "
             f"{cert.subject!r}; kept as they are")


def _signature_problem(content_ok: bool | None, check: SignatureCheck, signer: bytes | None, cert: Cert) -> str | None:
    """Why one signature does not verify with ``cert`` (None: it does)."""
    if content_ok is not True:
        return "the signature does not cover the bytes it is on (changed after signing)"
    if signer is None:
        return "the signature does not carry its signer's certificate, so it cannot be verified"
    if thumbprint(signer) != cert.thumbprint:
        other = publisher_cert(signer)
        return (f"it is signed by another certificate ({other.subject!r}, thumbprint {other.thumbprint}), not by "
                f"signing.cert (thumbprint {cert.thumbprint})")
    if check.signature is not Verdict.VALID:
        return check.problem or "the signature does not verify with the certificate's key"
    return None


def _catalog_problem(path: Path, cert: Cert) -> str | None:
    try:
        cat = load_catalog(path)
    except CatalogError as exc:
        return exc.message
    if cat.placeholder or not cat.signed:
        return "the catalog is not signed"
    for signer in cat.signers:
        problem = _signature_problem(signer.content_digest_ok, signer.check, signer.certificate, cert)
        if problem is not None:
            return f"{'nested ' if signer.nested else ''}{signer.digest_algorithm} signature: {problem}"
    return None


def _embedded_problem(path: Path, cert: Cert) -> str | None:
    try:
        info = pe_info(path.read_bytes())
    except PeError as exc:
        return exc.message
    if not info.has_signature:
        return None  # the catalog vouches for it (Windows 7 needs embedded signatures on boot drivers only)
    embedded = info.embedded
    if embedded is None:
        return "the embedded signature cannot be read"
    if info.image_digest_ok is not True:
        return "the embedded signature does not match the image (changed after signing)"
    problem = _signature_problem(embedded.content_digest_ok, embedded.check, embedded.certificate, cert)
    return None if problem is None else f"embedded {embedded.digest_algorithm} signature: {problem}"
