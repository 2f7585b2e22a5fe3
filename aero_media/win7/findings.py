"""What the Windows 7 checks report: findings, per-package reports, the policy they apply, and the gate.

A finding carries its location (file and INF line) in fields; messages never
repeat it, and every rendering (the stderr table, the gate's error, JSON) adds it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..errors import ValidationError
from ..spec.types import SPEC_FIELDS, PlaceholderPolicy, SigningPolicy, Vocabulary, WarningPolicy


class Severity(StrEnum):
    """How bad a finding is; errors fail the stage, warnings fail it only under ``checks.warnings: error``."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def order(self) -> int:
        return list(Severity).index(self)

    def fails(self, warnings: WarningPolicy) -> bool:
        """Whether a finding of this severity fails the build under ``warnings``."""
        return self is Severity.ERROR or (self is Severity.WARNING and warnings is WarningPolicy.ERROR)


@dataclass(frozen=True)
class Finding:
    """One problem (or note) about one file of a package."""

    severity: Severity
    code: str
    file: str
    line: int | None
    message: str
    fix: str | None

    @property
    def where(self) -> str:
        """``file:line`` or ``file``."""
        return f"{self.file}:{self.line}" if self.line else self.file

    def render(self) -> str:
        """One line: severity, code, location, message and fix."""
        text = f"{self.severity}: [{self.code}] {self.where}: {self.message}"
        return f"{text}; fix: {self.fix}" if self.fix else text

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict for manifests."""
        return {"severity": self.severity.value, "code": self.code, "file": self.file, "line": self.line,
                "message": self.message, "fix": self.fix}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(Severity(data["severity"]), data["code"], data["file"], data["line"], data["message"],
                   data["fix"])


@dataclass(frozen=True)
class CheckPolicy:
    """What the checks tolerate.

    ``placeholder_catalogs``: ERROR fails on the sample pack's placeholder catalogs
    and stand-in binaries; ALLOW reports them as warnings. ``signing_policy``:
    test signing downgrades unsigned catalogs and boot drivers to warnings (they
    must be test-signed before use); the others require real signatures, since
    Windows 7 x64 enforces them.
    """

    allow_sha256_only: bool = False
    placeholder_catalogs: PlaceholderPolicy = PlaceholderPolicy.ERROR
    signing_policy: SigningPolicy = SigningPolicy.NONE
    vocabulary: Vocabulary = SPEC_FIELDS
    """How fixes name these settings: spec fields, or the flags of the command that runs the checks."""
    trusted_signers: tuple[str, ...] = ()
    """SHA-1 thumbprints (upper-case hex) of the only certificates that may sign the catalogs: the spec's
    test certificate when the build signs the packages itself. Empty: any signer (upstream's)."""

    @property
    def accepts_unsigned(self) -> bool:
        """Unsigned catalogs and boot drivers are warnings, not errors (they get test-signed before use)."""
        return self.signing_policy.accepts_unsigned and not self.trusted_signers

    def to_json(self) -> dict[str, Any]:
        return {"allow_sha256_only": self.allow_sha256_only, "placeholder_catalogs": self.placeholder_catalogs.value,
                "signing_policy": self.signing_policy.value}


@dataclass(frozen=True)
class PackageFacts:
    """What the checks learnt about a package that later stages use."""

    inf: str | None = None
    service: str | None = None
    service_binary: str | None = None


@dataclass(frozen=True)
class PackageReport:
    """All findings and facts for one package on one arch."""

    driver: str
    arch: str
    device: str
    findings: tuple[Finding, ...]
    facts: dict[str, Any] = field(default_factory=dict)

    def _of(self, severity: Severity) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is severity)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return self._of(Severity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return self._of(Severity.WARNING)

    @property
    def label(self) -> str:
        return f"{self.driver}/{self.arch}"

    @property
    def key_facts(self) -> PackageFacts:
        """The facts later stages rely on (which INF, which service, which binary)."""
        return PackageFacts(inf=self.facts.get("inf"), service=self.facts.get("service"),
                            service_binary=self.facts.get("service_binary"))

    def failing(self, warnings: WarningPolicy = WarningPolicy.WARN) -> tuple[Finding, ...]:
        """Findings that fail the build under ``warnings``."""
        return tuple(f for f in self.findings if f.severity.fails(warnings))

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict for the stage manifest's validation section."""
        status = "error" if self.errors else "warning" if self.warnings else "ok"
        return {"driver": self.driver, "arch": self.arch, "device": self.device, "status": status,
                "errors": len(self.errors), "warnings": len(self.warnings),
                "findings": [f.to_json() for f in self.findings], "facts": self.facts}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PackageReport:
        return cls(data["driver"], data["arch"], data["device"],
                   tuple(Finding.from_json(f) for f in data["findings"]), dict(data["facts"]))


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then by file and line."""
    return sorted(findings, key=lambda f: (f.severity.order, f.file.lower(), f.line or 0))


def format_table(reports: Iterable[PackageReport]) -> str:
    """Plain-text table for stderr: one row per finding, a summary row per clean package."""
    rows: list[tuple[str, str, str, str, str | None]] = []
    for r in reports:
        for f in r.findings:
            rows.append((f.severity.value, r.label, f.where, f.message, f.fix))
        if not r.errors and not r.warnings:
            rows.append(("ok", r.label, str(r.facts.get("inf", "-")), _summary(r), None))
    if not rows:
        return "no driver packages checked\n"
    w0 = max(len("severity"), *(len(r[0]) for r in rows))
    w1 = max(len("package"), *(len(r[1]) for r in rows))
    w2 = min(40, max(len("file:line"), *(len(r[2]) for r in rows)))
    out = [f"{'severity':<{w0}}  {'package':<{w1}}  {'file:line':<{w2}}  message"]
    for sev, pkg, where, msg, fix in rows:
        out.append(f"{sev:<{w0}}  {pkg:<{w1}}  {where:<{w2}}  {msg}")
        if fix:
            out.append(f"{'':<{w0}}  {'':<{w1}}  {'':<{w2}}  fix: {fix}")
    return "\n".join(out) + "\n"


def _summary(r: PackageReport) -> str:
    parts = [f"{r.device} ok"]
    if r.facts.get("driver_ver"):
        parts.append(f"DriverVer {r.facts['driver_ver']}")
    if r.facts.get("models_sections"):
        parts.append(", ".join(f"[{s}]" for s in r.facts["models_sections"]))
    for b in r.facts.get("binding", [])[:1]:
        parts.append(f"binds {b['hwid']} (rank {b['rank']})")
    cat = r.facts.get("catalog") or {}
    if cat.get("digest_algorithms"):
        parts.append(f"catalog {'+'.join(cat['digest_algorithms'])}")
    infos = [f for f in r.findings if f.severity is Severity.INFO]
    if infos:
        parts.append(f"{len(infos)} note(s)")
    return "; ".join(parts)


def summarise(reports: Iterable[PackageReport]) -> dict[str, int]:
    """Counts per severity over all reports, plus the number of packages."""
    reports = list(reports)
    findings = [f for r in reports for f in r.findings]
    return {"packages": len(reports), **{s.value: sum(1 for f in findings if f.severity is s) for s in Severity}}


def gate(reports: Iterable[PackageReport], warnings: WarningPolicy = WarningPolicy.WARN) -> None:
    """Raise :class:`ValidationError` listing every failing finding (errors; warnings under ``error``)."""
    lines = []
    for r in reports:
        for f in r.failing(warnings):
            text = f"{r.label}: {f.where}: {f.message}"
            lines.append(f"{text}; fix: {f.fix}" if f.fix else text)
    if lines:
        raise ValidationError("\n".join(lines))
