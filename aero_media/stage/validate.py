"""Validate staged packages for Windows 7: the spec's policy applied to :mod:`aero_media.win7`'s checks."""

from __future__ import annotations

from pathlib import Path

from .. import log
from ..manifests import Validation, ValidationSummary
from ..sources.selection import Package
from ..spec.model import Spec
from ..spec.types import Arch
from ..win7.checks import check_package
from ..win7.findings import CheckPolicy, PackageReport, format_table, gate


def check_policy(spec: Spec, trusted_signers: tuple[str, ...] = ()) -> CheckPolicy:
    """What the spec tolerates, in the checks' terms; ``trusted_signers`` when the build signed the packages."""
    return CheckPolicy(allow_sha256_only=spec.checks.allow_sha256_only,
                       placeholder_catalogs=spec.checks.placeholder_catalogs,
                       signing_policy=spec.signing_policy, vocabulary=spec.vocabulary,
                       trusted_signers=trusted_signers)


def validate_packages(spec: Spec, arch: Arch, root: Path, packages: tuple[Package, ...],
                      trusted_signers: tuple[str, ...] = ()) -> Validation:
    """Check each staged package the way Windows 7 would; fail on errors (and warnings if the spec says)."""
    policy = check_policy(spec, trusted_signers)
    reports: list[PackageReport] = [check_package(root / p.driver.name, arch, p.driver.device, policy,
                                                  driver=p.driver.name, contract=spec.contract) for p in packages]
    if reports:
        log.info(format_table(reports))
    result = Validation(policy={"warnings": spec.checks.warnings.value, **policy.to_json()},
                        summary=ValidationSummary.of(reports), reports=tuple(reports))
    gate(reports, spec.checks.warnings)
    return result
