"""cloudft-security: the rules of `infra.components.rules` as a mandatory pulumi-policy pack.

Run with `cloudft infra preview --provider aws --stack dev --policy` (or `pulumi preview --policy-pack infra/policy`).
Unknown values during a preview (ARNs not created yet) are skipped; `up` checks them once known.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `infra.components`

from pulumi_policy import (EnforcementLevel, PolicyPack, ReportViolation,  # noqa: E402
                           ResourceValidationArgs, ResourceValidationPolicy)

from infra.components import rules  # noqa: E402


def _has_unknowns(value) -> bool:
    if isinstance(value, dict):
        return any(_has_unknowns(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknowns(v) for v in value)
    return value is not None and type(value).__name__ == "Unknown"


def _validator(table):
    def _validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in table or _has_unknowns(args.props):
            return
        for problem in rules.check_resource(args.resource_type, args.props, table):
            report_violation(problem)

    return _validate


PolicyPack(
    name="cloudft-security",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        ResourceValidationPolicy(
            name="cloudft-resource-rules",
            description="S3/ECR/KMS/SageMaker/Cognito/Lambda and Azure storage/Key Vault/ACR/AmlCompute security rules",
            validate=_validator(rules.RULES),
        ),
        # What stays reachable from the internet. Advisory, because the quickstart keeps public endpoints; make it
        # mandatory for a private stack with `--policy-pack-config` ({"cloudft-public-exposure": "mandatory"}).
        ResourceValidationPolicy(
            name="cloudft-public-exposure",
            description="Azure workspace, storage, Key Vault, registry and endpoints reachable from any network; "
                        "storage accepting shared keys",
            validate=_validator(rules.EXPOSURE_RULES),
            enforcement_level=EnforcementLevel.ADVISORY,
        ),
    ],
)
