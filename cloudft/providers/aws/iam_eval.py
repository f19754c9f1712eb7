"""Evaluate IAM identity policies the way IAM does, for one request (action, resource, context keys).

Used where cloudft must answer "would this role be allowed?" without calling IAM: the `--dry-run` answer to
iam:SimulatePrincipalPolicy when the stack's policies are known, a local AWS emulator that lacks that call, and the
tests that check the permissions manifest against the policies the Pulumi program declares.

Why not a library: no maintained Python package evaluates IAM policies (parliament and cloudsplaining lint,
policyuniverse parses, principalmapper is unmaintained since 2022); moto's access control ignores most conditions.

Logic (IAM User Guide, "Policy evaluation logic", reference_policies_evaluation-logic.html): an explicit Deny in any
matching statement wins, else any matching Allow allows, else the request is implicitly denied. Action and NotAction
match case-insensitively with `*` / `?` wildcards; Resource and NotResource match each of the ARN's first five
`:`-separated fields separately, then the resource part (reference_policies_elements_resource.html). Conditions
(reference_policies_elements_condition_operators.html): the String*, Arn*, Bool and Null operators, `...IfExists`
and the `ForAnyValue:` / `ForAllValues:` set qualifiers. Anything else (numeric, date and IP operators, policy
variables) is *unknown*: an Allow statement with an unknown condition never allows, a Deny statement with one
denies, so this evaluator never answers "allowed" where IAM might not.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

Context = Mapping[str, Union[str, Sequence[str]]]
ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY = "allowed", "explicitDeny", "implicitDeny"
_UNKNOWN = object()


@dataclass(frozen=True)
class Decision:
    """The answer for one (action, resource): IAM's decision and the statement ids that decided it."""

    action: str
    resource: str
    decision: str
    statements: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.decision == ALLOWED


@lru_cache(maxsize=4096)
def _pattern(text: str, ignore_case: bool) -> "re.Pattern[str]":
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(f"^{body}$", re.S | (re.I if ignore_case else 0))


def wildcard_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's `*` (any run of characters) and `?` (one character) matching."""
    return bool(_pattern(pattern, ignore_case).match(value))


def arn_match(pattern: str, value: str) -> bool:
    """A Resource element against a resource ARN: field by field for the first five fields, then the rest."""
    if pattern == "*":
        return True
    p, v = pattern.split(":", 5), value.split(":", 5)
    if len(p) != 6 or len(v) != 6:
        return wildcard_match(pattern, value)
    return all(wildcard_match(a, b) for a, b in zip(p, v))


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _compare(base: str, expected: str, actual: str) -> Any:
    if "${" in expected:
        return _UNKNOWN  # policy variables are not resolved here
    if base in ("StringEquals", "StringNotEquals"):
        return actual == expected
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return actual.lower() == expected.lower()
    if base in ("StringLike", "StringNotLike"):
        return wildcard_match(expected, actual)
    if base in ("ArnEquals", "ArnNotEquals", "ArnLike", "ArnNotLike"):
        return arn_match(expected, actual)
    if base == "Bool":
        return actual.lower() == str(expected).lower()
    return _UNKNOWN


_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}
_KNOWN = {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike", "Bool"} | _NEGATED


def _condition(operator: str, key: str, expected: Any, context: Context) -> Any:
    """True / False / _UNKNOWN for one operator + key of a Condition block."""
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    base = op[: -len("IfExists")] if if_exists else op
    values = [str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(expected)]
    # condition key names are case-insensitive (IAM User Guide, "IAM JSON policy elements: Condition")
    context = {k.lower(): v for k, v in context.items()}
    key = key.lower()
    present = key in context
    if base == "Null":  # "true": the key must be absent; "false": present
        return all((v.lower() == "true") == (not present) for v in values)
    if base not in _KNOWN or qualifier not in ("", "ForAnyValue", "ForAllValues"):
        return _UNKNOWN
    if not present:
        if if_exists or qualifier == "ForAllValues":
            return True
        return _UNKNOWN if base in _NEGATED else False
    actual = [str(a) for a in _as_list(context[key])]
    results = []
    for a in actual:
        hits = [_compare(base, e, a) for e in values]
        if _UNKNOWN in hits:
            return _UNKNOWN
        hit = any(hits)
        results.append(not hit if base in _NEGATED else hit)
    if qualifier == "ForAllValues":
        return all(results)
    return any(results)


def _conditions_hold(block: Optional[Mapping[str, Any]], context: Context) -> Any:
    verdict: Any = True
    for operator, keys in (block or {}).items():
        for key, expected in (keys or {}).items():
            result = _condition(operator, key, expected, context)
            if result is False:
                return False
            if result is _UNKNOWN:
                verdict = _UNKNOWN
    return verdict


def _statement_applies(st: Mapping[str, Any], action: str, resource: str, context: Context) -> Any:
    if "Action" in st:
        if not any(wildcard_match(a, action, ignore_case=True) for a in _as_list(st["Action"])):
            return False
    elif "NotAction" in st:
        if any(wildcard_match(a, action, ignore_case=True) for a in _as_list(st["NotAction"])):
            return False
    else:
        return False
    if "Resource" in st:
        if not any(arn_match(r, resource) for r in _as_list(st["Resource"])):
            return False
    elif "NotResource" in st:
        if any(arn_match(r, resource) for r in _as_list(st["NotResource"])):
            return False
    else:
        return False  # an identity policy statement without a resource is invalid
    return _conditions_hold(st.get("Condition"), context)


def load(policy: Union[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A policy document as a dict (IAM returns them URL-encoded JSON; Pulumi as JSON strings)."""
    if isinstance(policy, str):
        from urllib.parse import unquote

        text = policy if policy.lstrip().startswith("{") else unquote(policy)
        return json.loads(text)
    return dict(policy)


def evaluate(policies: Iterable[Union[str, Mapping[str, Any]]], action: str, resource: str = "*",
             context: Optional[Context] = None) -> Decision:
    """IAM's decision for one request under a principal's identity policies."""
    context = context or {}
    allow: list[str] = []
    for doc in map(load, policies):
        for i, st in enumerate(_as_list(doc.get("Statement"))):
            applies = _statement_applies(st, action, resource, context)
            sid = str(st.get("Sid") or f"#{i}")
            if st.get("Effect") == "Deny" and applies is not False:  # unknown → treated as denying
                return Decision(action, resource, EXPLICIT_DENY, (sid,))
            if st.get("Effect") == "Allow" and applies is True:
                allow.append(sid)
    return Decision(action, resource, ALLOWED if allow else IMPLICIT_DENY, tuple(allow))


def trusts_service(trust_policy: Union[str, Mapping[str, Any]], service: str) -> bool:
    """Does a role's trust policy let `service` (e.g. sagemaker.amazonaws.com) call sts:AssumeRole?"""
    for st in _as_list(load(trust_policy).get("Statement")):
        if st.get("Effect") != "Allow":
            continue
        if not any(wildcard_match(a, "sts:AssumeRole", ignore_case=True) for a in _as_list(st.get("Action"))):
            continue
        principal = st.get("Principal")
        services = _as_list(principal.get("Service")) if isinstance(principal, Mapping) else []
        if service in services:
            return True
    return False
