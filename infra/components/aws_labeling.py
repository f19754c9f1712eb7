"""Ground Truth labeling (opt-in: Ground Truth is closed to new customers): Cognito user pool, private workforce and
workteam, and the consolidation Lambda packaged from templates/ground_truth/consolidation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pulumi
import pulumi_aws as aws

from . import iam
from .aws_identity import AwsAccount

LAMBDA_RUNTIME = "python3.12"
LAMBDA_HANDLER = "handler.handler"


def consolidation_archive(code_dir: Path) -> pulumi.Archive:
    """The consolidation Lambda's code: the folder as a zip archive (handler `handler.handler`)."""
    code_dir = Path(code_dir)
    if not (code_dir / "handler.py").is_file():
        raise FileNotFoundError(f"{code_dir}/handler.py not found: the consolidation Lambda's code is missing "
                                "(set cloudft:labeling.consolidationDir or disable labeling)")
    return pulumi.FileArchive(str(code_dir))


class LabelingWorkforce(pulumi.ComponentResource):
    """A Cognito user pool (admin-created users only) with a domain, an app client and a raters group; a private
    SageMaker workforce on it (or an existing one, one per account and region); a private workteam; and the
    annotation-consolidation Lambda with its own minimal role.

    Outputs: `workteam_arn`, `user_pool_id`, `consolidation_lambda_arn` (None without code).
    """

    def __init__(self, name: str, *, account: AwsAccount, bucket_arn: pulumi.Input[str], prefix: str,
                 kms_key_arn: pulumi.Input[str], domain_prefix: pulumi.Input[str],
                 consolidation_dir: Optional[Path] = None, create_workforce: bool = True,
                 workforce_name: str = "default", user_group: str = "raters",
                 tags: Optional[dict[str, str]] = None, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudft:aws:LabelingWorkforce", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.user_pool = aws.cognito.UserPool(
            f"{name}-pool", admin_create_user_config={"allow_admin_create_user_only": True},
            auto_verified_attributes=["email"], username_attributes=["email"], mfa_configuration="OPTIONAL",
            software_token_mfa_configuration={"enabled": True},
            password_policy={"minimum_length": 12, "require_lowercase": True, "require_uppercase": True,
                             "require_numbers": True, "require_symbols": True,
                             "temporary_password_validity_days": 7},
            tags=tags, opts=child)
        self.client = aws.cognito.UserPoolClient(
            f"{name}-client", user_pool_id=self.user_pool.id, generate_secret=True,
            allowed_oauth_flows_user_pool_client=True, allowed_oauth_flows=["code", "implicit"],
            allowed_oauth_scopes=["email", "openid", "profile"], supported_identity_providers=["COGNITO"],
            explicit_auth_flows=["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH"],
            callback_urls=["https://localhost/"],
            # SageMaker sets the worker portal's callback/logout URLs when it creates the workforce.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["callbackUrls", "logoutUrls"]))
        self.domain = aws.cognito.UserPoolDomain(f"{name}-domain", domain=domain_prefix,
                                                 user_pool_id=self.user_pool.id, opts=child)
        self.group = aws.cognito.UserGroup(f"{name}-group", name=user_group, user_pool_id=self.user_pool.id,
                                           description="cloudft preference raters", opts=child)
        if create_workforce:
            # domain.user_pool_id (not user_pool.id) so the domain exists before the workforce.
            workforce = aws.sagemaker.Workforce(f"{name}-workforce", workforce_name=workforce_name,
                                                cognito_config={"client_id": self.client.id,
                                                                "user_pool": self.domain.user_pool_id}, opts=child)
            workforce_ref: pulumi.Input[str] = workforce.id
        else:
            workforce_ref = workforce_name
        self.workteam = aws.sagemaker.Workteam(
            f"{name}-workteam", workteam_name=f"{name}-raters", workforce_name=workforce_ref,
            description="cloudft pairwise preference raters",
            member_definitions=[{"cognito_member_definition": {"client_id": self.client.id,
                                                               "user_pool": self.domain.user_pool_id,
                                                               "user_group": self.group.name}}],
            tags=tags, opts=child)
        self.consolidation_lambda: Optional[aws.lambda_.Function] = None
        if consolidation_dir is not None:
            self.consolidation_lambda = self._consolidation(name, account, bucket_arn, prefix, kms_key_arn,
                                                            consolidation_dir, tags)
        self.workteam_arn = self.workteam.arn
        self.user_pool_id = self.user_pool.id
        self.consolidation_lambda_arn = self.consolidation_lambda.arn if self.consolidation_lambda else None
        self.register_outputs({"workteam_arn": self.workteam_arn, "user_pool_id": self.user_pool_id,
                               "consolidation_lambda_arn": self.consolidation_lambda_arn})

    def _consolidation(self, name: str, account: AwsAccount, bucket_arn: pulumi.Input[str], prefix: str,
                       kms_key_arn: pulumi.Input[str], code_dir: Path,
                       tags: Optional[dict[str, str]]) -> aws.lambda_.Function:
        child = pulumi.ResourceOptions(parent=self)
        # "sagemaker" in the function name keeps it inside the Ground Truth managed policy's naming convention.
        fn_name = f"{name}-sagemaker-consolidation"[:64]
        role = aws.iam.Role(f"{name}-consolidation-role", assume_role_policy=iam.service_trust("lambda.amazonaws.com"),
                            description="cloudft Ground Truth consolidation Lambda", tags=tags, opts=child)
        prefix = prefix.strip("/")
        objects = pulumi.Output.from_input(bucket_arn).apply(lambda a: f"{a}/{prefix}/*" if prefix else f"{a}/*")
        log_group = aws.cloudwatch.LogGroup(f"{name}-consolidation-logs", name=f"/aws/lambda/{fn_name}",
                                            retention_in_days=30, opts=child)
        self._consolidation_role = role
        self._consolidation_policy = iam.document([
            iam.statement("Logs", ["logs:CreateLogStream", "logs:PutLogEvents"],
                          [log_group.arn.apply(lambda a: f"{a}:log-stream:*")]),
            iam.statement("ReadPayloads", ["s3:GetObject"], [objects]),
            iam.statement("DecryptPayloads", ["kms:Decrypt"], [kms_key_arn]),
        ])
        aws.iam.RolePolicy(f"{name}-consolidation-policy", role=role.id, policy=self._consolidation_policy,
                           opts=child)
        return aws.lambda_.Function(
            f"{name}-consolidation", name=fn_name, role=role.arn, runtime=LAMBDA_RUNTIME, handler=LAMBDA_HANDLER,
            code=consolidation_archive(code_dir), timeout=300, memory_size=256,
            logging_config={"log_format": "Text", "log_group": log_group.name}, tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group]))

    def consolidation_described(self) -> pulumi.Output[dict]:
        """{arn, trust, policies} of the consolidation Lambda's role (for the permissions checks)."""
        return iam.described(self._consolidation_role.arn, self._consolidation_role.assume_role_policy,
                             [self._consolidation_policy])

    def invoke_statements(self) -> list[dict]:
        """Statements the SageMaker (Ground Truth) execution role needs to call the consolidation Lambda."""
        if self.consolidation_lambda is None:
            return []
        return [iam.statement("InvokeConsolidation", ["lambda:InvokeFunction"], [self.consolidation_lambda.arn])]
