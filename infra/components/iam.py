"""IAM policy documents built in Python (not the getPolicyDocument invoke), so tests and policies can read them."""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

import pulumi


def statement(sid: str, actions: Sequence[str], resources: Sequence[pulumi.Input[str]], *,
              effect: str = "Allow", condition: Optional[dict[str, Any]] = None,
              principal: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """One policy statement; `resources` may hold Outputs (resolved by `document`)."""
    st: dict[str, Any] = {"Sid": sid, "Effect": effect, "Action": list(actions), "Resource": list(resources)}
    if principal is not None:
        st["Principal"] = principal
    if condition:
        st["Condition"] = condition
    return st


def document(statements: Sequence[dict[str, Any]]) -> pulumi.Output[str]:
    """The JSON policy document for `statements` (Outputs inside are resolved first)."""
    return pulumi.Output.from_input(list(statements)).apply(
        lambda sts: json.dumps({"Version": "2012-10-17", "Statement": sts}, sort_keys=True))


def service_trust(service: str, account_id: Optional[pulumi.Input[str]] = None) -> pulumi.Output[str]:
    """Trust policy letting an AWS service assume a role (limited to this account's resources when given)."""
    condition = {"StringEquals": {"aws:SourceAccount": account_id}} if account_id is not None else None
    st = statement("Trust", ["sts:AssumeRole"], [], principal={"Service": service}, condition=condition)
    del st["Resource"]
    return document([st])


def described(arn: pulumi.Input[str], trust: pulumi.Input[str],
              documents: Sequence[pulumi.Input[str]]) -> pulumi.Output[dict[str, Any]]:
    """{arn, trust, policies} of a role (JSON documents parsed): what `--stack` tells cloudft's preflight, dry run
    and permissions checks about it (the stack's `iam_policies` output)."""
    return pulumi.Output.all(arn, trust, *documents).apply(
        lambda v: {"arn": v[0], "trust": json.loads(v[1]), "policies": [json.loads(d) for d in v[2:]]})
