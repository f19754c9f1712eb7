"""Preflight: documented rules a provider enforces that the SDK's shape validation cannot express, checked on the
plan before anything is sent or started.

Each rule is a function `(plan) -> Iterable[Finding]` registered with `@rule(id, source)`, where `source` names the
provider's own documentation (or SDK source) the rule comes from; each rule has a test showing it catch the bad case.
A provider may hand its rules a view of the plan instead, carrying what it resolved besides (its section, a stack's
outputs) with the plan as `.plan` (cloudft/providers/azure/preflight.py: AzureView).
`Provider.preflight(plan)` runs the provider's rules; `cloudft plan` shows the findings, `cloudft submit` (and
`--dry-run`) refuses errors before any request. A finding marked `forceable` (e.g. "no GPU on this machine": a
run that is only slow) is let through by `--force`; the others describe what the service would refuse, or what
would fail for sure (an estimated peak beyond the memory there is, a missing secret or model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Optional

from .errors import CloudftError

if TYPE_CHECKING:
    from .errors import Problem
    from .plan import Plan
    from .spec import JobSpec

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    """One thing a rule found: what, why it matters, the fix, and where the rule comes from."""

    rule: str
    severity: Severity
    message: str
    fix: str = ""
    source: str = ""
    field: Optional[str] = None  # the spec field it concerns, dotted ("compute.instance_type"), for file:line
    forceable: bool = False

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


#: A rule looks at the plan, or at a provider's view of it (e.g. the AWS rules' `AwsView`: plan + resolved section),
#: or at what the rule is about (Ground Truth manifest lines).
RuleFn = Callable[[Any], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    id: str
    source: str
    check: RuleFn


def rule(rule_id: str, source: str) -> Callable[[RuleFn], Rule]:
    """Declare a preflight rule; `source` is the documentation it enforces (cited in findings and docs)."""

    def wrap(fn: RuleFn) -> Rule:
        return Rule(rule_id, source, fn)

    return wrap


def run_rules(rules: Iterable[Rule], subject: Any) -> list[Finding]:
    """Every finding of every rule over `subject` (the plan, or what the rules look at), each stamped with its rule
    id and source."""
    out: list[Finding] = []
    for r in rules:
        for f in r.check(subject) or ():
            out.append(Finding(rule=r.id, severity=f.severity, message=f.message, fix=f.fix,
                               source=f.source or r.source, field=f.field, forceable=f.forceable))
    return out


def problem(spec: "JobSpec", finding: Finding) -> "Problem":
    """The finding as a located Problem of the spec (file:line:col of its field)."""
    loc = tuple(int(p) if p.isdigit() else p for p in (finding.field or "").split(".") if p)
    return spec.problem(loc, finding.message, finding.fix)


def where(plan: "Plan", finding: Finding) -> str:
    """`file:line:col: field: ` for a finding about a spec field (empty when it concerns no field)."""
    if not finding.field:
        return ""
    p = problem(plan.spec, finding)
    pos = ":".join(str(x) for x in (p.file, p.line, p.column) if x is not None)
    return f"{pos}: {finding.field}: "


def enforce(plan: "Plan", findings: list[Finding], force: bool = False) -> list[str]:
    """Refuse a plan with error findings (forceable ones pass with `force`). Returns the lines to show the user
    for everything not refused (warnings, and forced errors)."""
    blocking = [f for f in findings if f.severity == "error" and not (force and f.forceable)]
    if blocking:
        lines = [f"{where(plan, f)}{f.message}" + (f"\n    fix: {f.fix}" if f.fix else "")
                 + (f"\n    rule {f.rule} ({f.source})" if f.source else "") for f in blocking]
        forceable = all(f.forceable for f in blocking)
        raise CloudftError(
            f"preflight: {len(blocking)} problem{'s' if len(blocking) != 1 else ''} before anything was started:\n  "
            + "\n  ".join(lines),
            hint="fix the spec as each line says" + ("; or pass --force to start anyway" if forceable else ""))
    notes = []
    for f in findings:
        if f.severity == "error":
            notes.append(f"preflight (--force): {where(plan, f)}{f.message}")
        elif f.severity == "warning":
            notes.append(f"preflight: {where(plan, f)}{f.message}" + (f" ({f.fix})" if f.fix else ""))
    return notes
