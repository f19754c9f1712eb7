"""cloudft's own check of an execution role, run before CreateTrainingJob / CreatePipeline.

Why not the SDK's: sagemaker-core's `resolve_and_validate_role` simulates a fixed list of actions (ECR login,
CloudWatch metrics, EC2 network interfaces) on Resource "*" without condition keys. A least-privilege role (the
stack's: ENI actions only in VPC mode, PutMetricData only under the /aws/sagemaker/* namespace) fails it though every
job would run, so cloudft turns it off (`SAGEMAKER_VALIDATE_ROLE=false`, sagemaker-core iam_role_resolver.py) and
simulates instead what *this* job does: the permissions manifest's entries for the role (cloudft.providers.aws.
permissions) on the job's real resources with the condition keys IAM will see, plus the trust policy.

Verdicts as the SDK's: a definite deny or an untrusted role is refused with the list of what is missing; when the
caller may not simulate or read the role (AccessDenied) the check is skipped with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from ...errors import CloudftError
from .permissions import Request, requests

log = logging.getLogger(__name__)

SERVICE = "sagemaker.amazonaws.com"
_DENIED_CODES = ("AccessDenied", "AccessDeniedException")
#: IAM context key types (SimulatePrincipalPolicy ContextEntries)
_KEY_TYPES = {"kms:GrantIsForAWSResource": "boolean"}


@dataclass
class RoleCheck:
    """What a role check found: missing (action, resource) pairs, trust, or why it could not tell."""

    role_arn: str
    actor: str
    missing: list[tuple[str, str]] = field(default_factory=list)
    trusted: Optional[bool] = None
    unverified: Optional[str] = None

    def raise_if_refused(self) -> None:
        problems = [f"{a} on {r}" for a, r in self.missing]
        if self.trusted is False:
            problems.insert(0, f"its trust policy does not let {SERVICE} assume it")
        if problems:
            raise CloudftError(f"role {self.role_arn} ({self.actor}) cannot run this job: " + "; ".join(problems),
                               hint="grant these (docs/aws.md prints the minimum policy per role), or use the role "
                                    "of a `cloudft infra` stack (--stack NAME)")


def role_name(role_arn: str) -> str:
    """`arn:aws:iam::ACCOUNT:role/PATH/NAME` → NAME (what iam:GetRole and the role-policy calls take)."""
    return role_arn.split(":role/", 1)[1].rsplit("/", 1)[-1]


def _client_error_code(exc: Exception) -> Optional[str]:
    response = getattr(exc, "response", None)
    return (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None


def _groups(reqs: Sequence[Request]) -> dict[tuple, list[str]]:
    groups: dict[tuple, list[str]] = {}
    for r in reqs:
        actions = groups.setdefault((r.resource, r.context), [])
        if r.need.action not in actions:
            actions.append(r.need.action)
    return groups


def context_entries(context: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"ContextKeyName": k, "ContextKeyValues": [v], "ContextKeyType": _KEY_TYPES.get(k, "string")}
            for k, v in context]


def check_role(iam, role_arn: str, actor: str, values: Mapping[str, Any], features: Iterable[str]) -> RoleCheck:
    """Simulate the actor's manifest entries on `role_arn` and read its trust policy (read-only IAM calls)."""
    from .iam_eval import trusts_service

    result = RoleCheck(role_arn, actor)
    try:
        doc = iam.get_role(RoleName=role_name(role_arn))["Role"].get("AssumeRolePolicyDocument")
        if doc:
            result.trusted = trusts_service(doc, SERVICE)
        for (resource, context), actions in _groups(requests(actor, values, features)).items():
            kwargs: dict[str, Any] = {"PolicySourceArn": role_arn, "ActionNames": actions}
            if resource != "*":
                kwargs["ResourceArns"] = [resource]
            if context:
                kwargs["ContextEntries"] = context_entries(context)
            for page in iam.get_paginator("simulate_principal_policy").paginate(**kwargs):
                for ev in page.get("EvaluationResults", []):
                    if ev.get("EvalDecision") != "allowed":
                        result.missing.append((ev["EvalActionName"], ev.get("EvalResourceName") or resource))
    except Exception as exc:  # noqa: BLE001 - only AccessDenied means "cannot tell"
        code = _client_error_code(exc)
        if code not in _DENIED_CODES:
            raise
        result.unverified = f"{code}: {exc.response['Error'].get('Message', '')}"
        log.warning("could not verify role %s (%s); SageMaker will check it when the job starts",
                    role_arn, result.unverified)
    return result


def simulate_response(policies: Sequence[Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The SimulatePrincipalPolicy answer IAM would give for `params` under `policies` (iam_eval), for places that
    know a role's policies but cannot call IAM: the dry run (a stack's policies) and local emulators."""
    from .iam_eval import evaluate

    context = {e["ContextKeyName"]: (e.get("ContextKeyValues") or [""])
               for e in params.get("ContextEntries") or []}
    context = {k: v[0] if len(v) == 1 else v for k, v in context.items()}
    results = []
    for action in params.get("ActionNames") or []:
        for resource in params.get("ResourceArns") or ["*"]:
            d = evaluate(policies, action, resource, context)
            results.append({"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": d.decision,
                            "MatchedStatements": [{"SourcePolicyId": s} for s in d.statements]})
    return {"EvaluationResults": results, "IsTruncated": False}
