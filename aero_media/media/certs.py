"""Which certificates a medium ships (``certs/``) and in which role: one rule for the Guest Tools and the FAT disk.

Test certificates (the spec's ``certs:``, and the one the build signs with) go to
Root and TrustedPublisher. Under the ``none`` policy with ``trust_publisher``, the
signers of the staged catalogs go to TrustedPublisher, so installing does not stop
at "Would you like to install this device software?".
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SourceError, ValidationError
from ..fsutil import not_a_file
from ..manifests import StageManifest
from ..paths import SpecPaths
from ..spec.model import Spec
from ..win7.catalog import load_catalog
from ..win7.certs import Cert, load_cert_file, publisher_cert


@dataclass(frozen=True)
class MediaCerts:
    """The certificates of one medium."""

    test: tuple[Cert, ...]
    """For Root and TrustedPublisher."""
    trust: tuple[Cert, ...]
    """For TrustedPublisher only (upstream's publisher)."""
    shipped: dict[str, Cert]
    """Every file under certs/, by name, each certificate once."""
    sha256_only: bool
    """Some staged catalog is signed with SHA-256 only (Windows 7 needs KB3033929)."""


def _publisher_certs(paths: SpecPaths, stages: list[StageManifest]) -> tuple[list[Cert], bool]:
    """Signer certificates of the staged catalogs (deduplicated), and whether any catalog is SHA-256-only."""
    certs: dict[str, Cert] = {}
    sha256_only = False
    for m in stages:
        for f in m.files:
            if not f.path.lower().endswith(".cat"):
                continue
            try:
                cat = load_catalog(paths.staged_file(f.path))
            except ValidationError:
                continue  # validation already judged it; nothing to trust
            if cat.placeholder or not cat.signed:
                continue
            algos = set(cat.digest_algorithms)
            sha256_only |= "sha256" in algos and "sha1" not in algos
            primary = cat.primary
            if primary is not None and primary.certificate:
                c = publisher_cert(primary.certificate)
                certs.setdefault(c.thumbprint, c)
    return sorted(certs.values(), key=lambda c: c.name), sha256_only


def _spec_certs(spec: Spec, paths: SpecPaths) -> list[Cert]:
    sig = spec.signing
    out = []
    if paths.signing_cert is not None:  # the build test-signs the drivers with it
        out.append(load_cert_file(paths.signing_cert, f"{spec.display}: signing.cert"))
    for raw, path in zip(sig.certs_raw, sig.certs, strict=True):
        certs_name = spec.vocabulary.name("signing.certs")
        if not path.is_file():
            raise SourceError(f"{spec.display}: {certs_name}: {raw!r} {not_a_file(path, 'a certificate file')}",
                              "create one with `aero-media make-test-cert`, or fix the path")
        out.append(load_cert_file(path, f"{spec.display}: {certs_name}: {raw}"))
    policy = sig.policy
    if policy.certs_required and not out:
        raise SourceError(f"{spec.display}: signing.policy is {policy.value} but signing.certs is empty",
                          "add the test certificate (.cer) the drivers are signed with to signing.certs")
    if not policy.certs_required and out:
        raise SourceError(f"{spec.display}: signing.certs is only used with signing.policy test "
                          f"(this spec says {policy.value})", "remove signing.certs, or set signing.policy: test")
    return out




def media_certs(spec: Spec, paths: SpecPaths, stages: list[StageManifest]) -> MediaCerts:
    """The certificates a medium of ``spec`` ships, from its spec and its staged catalogs."""
    test = _spec_certs(spec, paths)
    publisher, sha256_only = _publisher_certs(paths, stages)
    # A test-signed build's publisher is its own test certificate: ship it once, in the stronger role.
    test_thumbs = {c.thumbprint for c in test}
    sig = spec.signing
    trust = ([c for c in publisher if c.thumbprint not in test_thumbs]
             if (sig.trust_publisher and sig.policy.trusts_publisher) else [])
    shipped: dict[str, Cert] = {}
    for c in [*test, *trust]:
        shipped.setdefault(c.name, c)
    return MediaCerts(tuple(test), tuple(trust), shipped, sha256_only)


ROOT_CERT_NAME = "aero-test.cer"
"""The test certificate's name at a medium's root: Aero's ``ci/make-fat-image.ps1`` requires ``aero-test.cer`` at
the FAT image's root under its ``test`` policy, and Aero's INSTALL.txt (``ci/package-drivers.ps1``) names it."""


def medium_cert_files(certs: MediaCerts) -> list[tuple[str, bytes]]:
    """The certificate files of a driver medium (media path, DER): ``certs/<name>`` for each shipped certificate,
    and the first test certificate (the one the build signs with, when it signs) at the root as
    :data:`ROOT_CERT_NAME`, where the medium's instructions tell the user to import it from."""
    out = [(f"certs/{name}", c.der) for name, c in certs.shipped.items()]
    if certs.test:
        out.append((ROOT_CERT_NAME, certs.test[0].der))
    return out
