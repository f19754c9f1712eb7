"""The permissions manifest (cloudft/providers/aws/permissions.py) against the policies the Pulumi program declares
(run under mocks), evaluated by IAM's evaluation logic (iam_eval) and, for S3, by moto's IAM enforcement on real
calls made with the role's assumed credentials; and the harness denying a permission that is missing."""

from __future__ import annotations

import json

import pytest
from infra_fixtures import ACCOUNT, REGION, run_program

from cloudft.providers.aws import iam_eval, permissions
from infra.components.aws_stack import AwsStackSettings, LabelingSettings, build_aws_stack

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hf-token-AbCdEf"
DLC_REPO = f"arn:aws:ecr:{REGION}:763104351884:repository/huggingface-pytorch-training"
FEATURES = {"kms", "vpc", "secrets", "ecr", "pipeline", "labeling"}
ROLE_OF = {"job": "execution", "labeling": "execution", "pipeline": "pipeline", "consolidation": "consolidation"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    code = tmp_path_factory.mktemp("consolidation")
    (code / "handler.py").write_text("def handler(event, context):\n    return []\n")
    settings = AwsStackSettings(name="perm", prefix="team-a", secret_arns=[SECRET], subnets=["subnet-1"],
                                security_group_ids=["sg-1"], pull_repository_arns=[DLC_REPO],
                                labeling=LabelingSettings(enabled=True, consolidation_dir=code))
    mocks, out = run_program(lambda: build_aws_stack(settings))
    lam = mocks.one("lambda/function:Function")
    values = {"partition": "aws", "region": REGION, "account": ACCOUNT, "bucket": out["bucket"],
              "prefix": out["prefix"], "kms_key": out["kms_key_arn"], "role": out["role_arn"],
              "pipeline_role": out["pipeline_role_arn"],
              "repository": [mocks.one("ecr/repository:Repository").outputs["arn"], DLC_REPO], "secret": [SECRET],
              "subnet": ["subnet-1"], "security_group": ["sg-1"], "function": lam.outputs["arn"],
              "log_group": mocks.one("cloudwatch/logGroup:LogGroup").outputs["arn"]}
    return out, values


def _denied(actor, policies, values, features=FEATURES):
    return [(r.need.action, r.resource) for r, d in permissions.evaluate_actor(actor, policies, values, features)
            if not d.allowed]


@pytest.mark.parametrize("actor", ["job", "pipeline", "labeling", "consolidation"])
def test_stack_roles_allow_every_action_of_the_manifest(stack, actor):
    out, values = stack
    role = out["iam_policies"][ROLE_OF[actor]]
    assert role["arn"] == {"execution": out["role_arn"], "pipeline": out["pipeline_role_arn"]}.get(
        ROLE_OF[actor], role["arn"])
    evaluated = permissions.evaluate_actor(actor, role["policies"], values, FEATURES)
    assert evaluated, f"no manifest entries for {actor}"
    assert _denied(actor, role["policies"], values) == []
    if actor in ("job", "pipeline"):
        assert iam_eval.trusts_service(role["trust"], "sagemaker.amazonaws.com")


def test_the_harness_denies_a_missing_permission(stack):
    """Remove one statement from the stack's execution policy: exactly its manifest entries are denied."""
    out, values = stack
    docs = out["iam_policies"]["execution"]["policies"]
    trimmed = [{**d, "Statement": [s for s in d["Statement"] if s.get("Sid") != "KmsGrantForAwsServices"]}
               for d in docs]
    assert _denied("job", trimmed, values) == [("kms:CreateGrant", out["kms_key_arn"])]
    # the grant condition is evaluated, not assumed: a grant not for an AWS resource is denied
    assert not iam_eval.evaluate(docs, "kms:CreateGrant", out["kms_key_arn"]).allowed
    assert iam_eval.evaluate(docs, "kms:CreateGrant", out["kms_key_arn"],
                             {"kms:GrantIsForAWSResource": "true"}).allowed
    # a job writing outside its prefix is denied
    assert not iam_eval.evaluate(docs, "s3:PutObject", f"arn:aws:s3:::{out['bucket']}/other/x").allowed


def test_pipeline_role_needs_exist_and_the_old_stack_role_lacked_them(stack):
    out, values = stack
    execution = out["iam_policies"]["execution"]["policies"]
    denied = {a for a, _ in _denied("pipeline", execution, {**values, "pipeline_role": values["role"]})}
    assert {"sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
            "iam:PassRole"} <= denied


def test_the_sdks_own_role_check_would_refuse_the_least_privilege_role(stack):
    """Why cloudft turns the SDK's check off: it simulates ENI and metric actions on "*" without condition keys."""
    from sagemaker.core.helper.iam_role_resolver import _get_smoke_test_actions

    out, _ = stack
    docs = out["iam_policies"]["execution"]["policies"]
    smoke = _get_smoke_test_actions("training")
    refused = [a for a in smoke if not iam_eval.evaluate(docs, a, "*").allowed]
    assert "cloudwatch:PutMetricData" in refused and "ec2:CreateNetworkInterface" in refused


def test_minimum_policy_is_what_the_manifest_evaluates_to(stack):
    _, values = stack
    for actor in ("cli", "sdk", "job", "pipeline", "labeling", "consolidation"):
        policy = permissions.minimum_policy(actor, values, FEATURES)
        assert policy["Statement"], actor
        assert _denied(actor, [policy], values) == [], actor
        # and every statement is needed: dropping any one denies something
        for i in range(len(policy["Statement"])):
            rest = {**policy, "Statement": policy["Statement"][:i] + policy["Statement"][i + 1:]}
            assert _denied(actor, [rest], values), (actor, policy["Statement"][i])


def test_moto_enforces_the_stack_policy_on_real_s3_calls(stack, monkeypatch):
    """moto's IAM access control (enabled after the setup calls) evaluates S3 requests made with the assumed
    execution role's credentials against the stack's inline policy: inside the prefix allowed, outside denied,
    and denied everywhere once the statement is gone."""
    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws, settings

    out, _ = stack
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    docs = out["iam_policies"]["execution"]["policies"]
    s3_only = {"Version": "2012-10-17", "Statement": [s for d in docs for s in d["Statement"]
                                                      if s["Sid"] in ("BucketObjects", "BucketList")]}
    bucket = out["bucket"]
    with mock_aws():
        iam, sts, admin_s3 = (boto3.client(s, region_name=REGION) for s in ("iam", "sts", "s3"))
        admin_s3.create_bucket(Bucket=bucket)
        creds = {}
        for name, policy in (("with", s3_only), ("without", {**s3_only, "Statement": [
                s for s in s3_only["Statement"] if s["Sid"] != "BucketObjects"]})):
            arn = iam.create_role(RoleName=f"exec-{name}", AssumeRolePolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                          "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]}))[
                "Role"]["Arn"]
            iam.put_role_policy(RoleName=f"exec-{name}", PolicyName="execution", PolicyDocument=json.dumps(policy))
            c = sts.assume_role(RoleArn=arn, RoleSessionName="job")["Credentials"]
            creds[name] = boto3.client("s3", region_name=REGION, aws_access_key_id=c["AccessKeyId"],
                                       aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
        monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        creds["with"].put_object(Bucket=bucket, Key="team-a/runs/x/model.tar.gz", Body=b"1")
        assert creds["with"].get_object(Bucket=bucket, Key="team-a/runs/x/model.tar.gz")["Body"].read() == b"1"
        for client, key in ((creds["with"], "elsewhere/x"), (creds["without"], "team-a/runs/y")):
            with pytest.raises(ClientError) as err:
                client.put_object(Bucket=bucket, Key=key, Body=b"1")
            assert err.value.response["Error"]["Code"] == "AccessDenied"


def test_docs_print_the_current_manifest_and_rules():
    """docs/aws.md carries the generated block (`python -m cloudft.providers.aws.docs` rewrites it)."""
    from cloudft.providers.aws import docs

    assert docs.block() in docs.docs_path().read_text()


def test_condition_keys_are_case_insensitive_in_the_evaluator():
    """IAM matches condition key names without regard to case ("IAM JSON policy elements: Condition"): a Deny
    written with another case must still deny, never be skipped into an allow."""
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:CreateGrant", "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {"Bool": {"kms:grantisforawsresource": "false"}}}]}
    decision = iam_eval.evaluate([policy], "kms:CreateGrant", "*", {"kms:GrantIsForAWSResource": False})
    assert not decision.allowed
    assert iam_eval.evaluate([policy], "kms:CreateGrant", "*", {"kms:GrantIsForAWSResource": True}).allowed
