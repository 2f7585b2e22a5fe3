"""Test-sign the staged packages (``signing:`` in the spec): new catalogs, embedded signatures on boot drivers.

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
from ..errors import SourceError, UsageError
from ..fsutil import sha256_file
from ..manifests import StagedFile
from ..paths import GENERATED_CERT, Run
from ..scratch import memory_file, sweep_old_temp_folders
from ..sources.selection import Package
from ..spec.types import Arch
from ..win7.catalogmake import CatalogMemberFile, make_catalog
from ..win7.certs import load_cert_file
from ..win7.inf import parse_inf
from ..win7.signing import (
    Osslsigncode,
    SigningKey,
    check_key_type,
    expired_by,
    refuse_key_inside,
    sign_catalog,
    sign_pe,
)

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


def sign_packages(run: Run, arch: Arch, root: Path, packages: tuple[Package, ...],
                  files: dict[str, StagedFile]) -> dict[str, StagedFile]:
    """Embed-sign each package's boot-start drivers, then write and sign its catalogs; return updated records.

    ``root`` is the arch's staging folder (one subfolder per driver). The run's epoch is the
    catalogs' ThisUpdate and the signing time, so the bytes depend on the inputs only.
    """
    spec, epoch = run.spec, run.epoch
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
            infs = sorted(p for p in pkg_dir.iterdir() if p.is_file() and p.suffix.lower() == ".inf")
            boot = {b.lower() for inf in infs for b in parse_inf(inf.read_bytes(), inf.name).boot_start_binaries()}
            for f in sorted(pkg_dir.iterdir()):
                if f.is_file() and f.name.lower() in boot:
                    sign_pe(f, f, key, signing_time=epoch, tool=tool)
            for inf in infs:
                cat = pkg_dir / _catalog_name(inf, arch, where)
                # Members are matched by hash; their File attribute is the bare name, as makecat writes it.
                members = [CatalogMemberFile(p.name, p) for p in sorted(pkg_dir.rglob("*"))
                           if p.is_file() and p.suffix.lower() != ".cat"]
                sign_catalog(make_catalog(members, arch, this_update=epoch), cat, key, signing_time=epoch, tool=tool)
            for path in sorted(pkg_dir.rglob("*")):
                if path.is_file():
                    staged = f"{pkg.staged_dir}/{path.relative_to(pkg_dir).as_posix()}"
                    digest, size = sha256_file(path)
                    old = updated.get(staged)
                    updated[staged] = StagedFile(staged, digest, size, old.source_path if old else "")
    log.info(f"test-signed {len(packages)} package(s) for {arch.value} (catalogs, and boot drivers' embedded "
             "signatures)")
    return updated
