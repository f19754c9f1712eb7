"""Security rules over the mocked resources of both programs, and proof that each rule catches a violation."""

from __future__ import annotations

import json
import runpy
import sys
import types

import pytest
from infra_fixtures import REPO, run_program

from infra.components import rules
from infra.components.aws_stack import AwsStackSettings, LabelingSettings, ServingSettings, build_aws_stack
from infra.components.azure_stack import AzureStackSettings, ClusterSettings, EndpointSettings, build_azure_stack

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def aws_full(tmp_path_factory):
    code = tmp_path_factory.mktemp("consolidation")
    (code / "handler.py").write_text("def handler(event, context):\n    return []\n")
    settings = AwsStackSettings(
        name="sec", secret_arns=["arn:aws:secretsmanager:us-east-1:123456789012:secret:hf-AbC"],
        subnets=["subnet-1"], security_group_ids=["sg-1"],
        labeling=LabelingSettings(enabled=True, consolidation_dir=code),
        serving=ServingSettings(enabled=True, image="img", instance_type="ml.m5.xlarge",
                                environment={"HF_TOKEN": "arn:aws:secretsmanager:us-east-1:1:secret:hf"}))
    mocks, _ = run_program(lambda: build_aws_stack(settings))
    return mocks


@pytest.fixture(scope="module")
def azure_full():
    settings = AzureStackSettings(name="sec", cluster=ClusterSettings(low_priority=True), endpoint=EndpointSettings(
        enabled=True, model_id="azureml://m/1", environment_id="azureml://e/1"))
    mocks, _ = run_program(lambda: build_azure_stack(settings))
    return mocks


def test_aws_stack_passes_every_rule(aws_full):
    assert rules.check_stack(aws_full.triples(), rules.REQUIRED_AWS) == []
    checked = {t for t, _, _ in aws_full.triples() if t in rules.RULES}
    assert len(checked) >= 12  # the rules really ran over bucket, IAM, ECR, KMS, SageMaker, Cognito, Lambda


def test_azure_stack_passes_every_rule(azure_full):
    assert rules.check_stack(azure_full.triples(), rules.REQUIRED_AZURE) == []
    checked = {t for t, _, _ in azure_full.triples() if t in rules.RULES}
    assert {"azure-native:storage:StorageAccount", "azure-native:keyvault:Vault",
            "azure-native:machinelearningservices:Compute"} <= checked


def test_every_iam_policy_is_wildcard_free_except_documented(aws_full):
    policies = aws_full.of_type("iam/rolePolicy:RolePolicy")
    assert len(policies) == 4  # execution, labeling invoke, pipeline steps, consolidation Lambda
    star_actions = set()
    for pol in policies:
        for st in json.loads(pol.inputs["policy"])["Statement"]:
            assert all("*" not in a for a in st["Action"]), st
            if "*" in st["Resource"]:
                star_actions.update(st["Action"])
    assert star_actions and star_actions <= set(rules.STAR_RESOURCE_ACTIONS)
    docs = (REPO / "docs" / "infra.md").read_text()
    assert all(action in docs for action in rules.STAR_RESOURCE_ACTIONS), "each exception is documented"


def test_public_access_block_and_tls_policy_present(aws_full):
    block = aws_full.one("BucketPublicAccessBlock").inputs
    assert all(block[f] is True for f in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    assert rules.s3_tls_only_policy(aws_full.one(":BucketPolicy").inputs) == []


#: What the quickstart leaves reachable, on purpose (docs/azure.md "Network"): exactly these, nothing else.
QUICKSTART_EXPOSURE = [
    "sec-ws: ML workspace accepts public network access",
    "sec-ws: ML workspace managed network allows any internet outbound (not AllowOnlyApprovedOutbound)",
    "sec-endpoint: online endpoint accepts public network access",
    "sec-deployment: online deployment has public egress",
    "sec-kv: Key Vault is reachable from any network (publicNetworkAccess without a Deny firewall)",
    "secacr: container registry accepts public network access",
    "secsa: storage account is reachable from any network (publicNetworkAccess without a Deny firewall)",
]


def test_quickstart_exposure_is_exactly_the_documented_list(azure_full):
    assert sorted(rules.check_stack(azure_full.triples(), rules=rules.EXPOSURE_RULES)) == sorted(QUICKSTART_EXPOSURE)
    docs = (REPO / "docs" / "azure.md").read_text()
    assert all(line.split(": ", 1)[1] in docs for line in QUICKSTART_EXPOSURE), "each exposure is documented"


def test_private_stack_exposes_nothing_and_passes_every_rule():
    settings = AzureStackSettings(name="sec", network="private", cluster=ClusterSettings(low_priority=True),
                                  endpoint=EndpointSettings(enabled=True, model_id="azureml://m/1",
                                                            environment_id="azureml://e/1"))
    mocks, _ = run_program(lambda: build_azure_stack(settings))
    assert rules.check_stack(mocks.triples(), rules.REQUIRED_AZURE) == []
    assert rules.check_stack(mocks.triples(), rules=rules.EXPOSURE_RULES) == []


def test_ip_allow_lists_close_storage_and_vault_and_shared_keys_are_flagged():
    mocks, _ = run_program(lambda: build_azure_stack(AzureStackSettings(
        name="sec", allowed_ip_ranges=["203.0.113.7"], shared_key_access=True)))
    found = rules.check_stack(mocks.triples(), rules=rules.EXPOSURE_RULES)
    assert not any(f.startswith(("sec-kv:", "secsa: storage account is reachable")) for f in found)
    assert "secsa: storage account accepts shared keys (allowSharedKeyAccess is not false)" in found


def test_azure_cluster_with_public_ips_is_flagged():
    mocks, _ = run_program(lambda: build_azure_stack(AzureStackSettings(name="sec", managed_network="Disabled")))
    problems = rules.check_stack(mocks.triples())
    assert problems == ["sec-compute: AmlCompute nodes must not have public IPs (enableNodePublicIp=false)"]


@pytest.mark.parametrize("typ, props, expected", [
    ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
     {"blockPublicAcls": True, "blockPublicPolicy": False, "ignorePublicAcls": True, "restrictPublicBuckets": True},
     "blockPublicPolicy"),
    ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
     {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]}, "SSE-KMS"),
    ("aws:s3/bucketPolicy:BucketPolicy", {"policy": json.dumps({"Statement": []})}, "TLS"),
    ("aws:iam/rolePolicy:RolePolicy", {"policy": json.dumps({"Statement": [
        {"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::b"]}]})}, "wildcard action"),
    ("aws:iam/rolePolicy:RolePolicy", {"policy": json.dumps({"Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})}, "RESOURCE_STAR"),
    # wildcards inside ARNs (cloudft's own rule) and kms:CreateGrant without the AWS-resource condition
    ("aws:iam/rolePolicy:RolePolicy", {"policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*/*"}]})}, "wildcard name"),
    ("aws:iam/rolePolicy:RolePolicy", {"policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::*:role/*"}]})},
     "wildcard in the account"),
    ("aws:iam/rolePolicy:RolePolicy", {"policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::123456789012:role/*"}]})},
     "wildcard name"),
    ("aws:iam/rolePolicy:RolePolicy", {"policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": "arn:aws:secretsmanager:us-east-1:123456789012:secret:*"}]})}, "wildcard name"),
    ("aws:iam/rolePolicy:RolePolicy", {"policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:CreateGrant",
         "Resource": "arn:aws:kms:us-east-1:123456789012:key/k"}]})}, "kms:GrantIsForAWSResource"),
    # parliament's generic checks: an unknown action, an action on the wrong resource type
    ("aws:iam/rolePolicy:RolePolicy", {"policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObjekt", "Resource": "arn:aws:s3:::b/*"}]})}, "UNKNOWN_ACTION"),
    ("aws:iam/rolePolicy:RolePolicy", {"policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b"}]})}, "RESOURCE_MISMATCH"),
    ("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
     {"policyArn": "arn:aws:iam::aws:policy/AmazonSageMakerFullAccess"}, "broad managed policy"),
    ("aws:ecr/repository:Repository", {"imageTagMutability": "MUTABLE", "imageScanningConfiguration": {
        "scanOnPush": True}, "encryptionConfigurations": [{"encryptionType": "KMS"}]}, "IMMUTABLE"),
    ("aws:kms/key:Key", {"enableKeyRotation": False}, "rotation"),
    ("aws:sagemaker/endpointConfiguration:EndpointConfiguration",
     {"productionVariants": [{"instanceType": "ml.m5.xlarge"}]}, "kmsKeyArn"),
    ("aws:sagemaker/model:Model", {"primaryContainer": {"environment": {"HF_TOKEN": "hf_abc123"}}}, "literal secret"),
    ("aws:cognito/userPool:UserPool", {}, "self sign-up"),
    ("azure-native:storage:StorageAccount", {"minimumTlsVersion": "TLS1_2"}, "allowBlobPublicAccess"),
    ("azure-native:storage:StorageAccount", {"allowBlobPublicAccess": False, "minimumTlsVersion": "TLS1_0"},
     "TLS 1.2"),
    ("azure-native:keyvault:Vault", {"properties": {"enablePurgeProtection": True}}, "RBAC"),
    ("azure-native:containerregistry:Registry", {"adminUserEnabled": True}, "admin user"),
    ("azure-native:machinelearningservices:Compute", {"properties": {"computeType": "AmlCompute", "properties": {
        "enableNodePublicIp": False, "remoteLoginPortPublicAccess": "Enabled",
        "scaleSettings": {"minNodeCount": 0}}}}, "SSH"),
    ("azure-native:machinelearningservices:Compute", {"properties": {"computeType": "AmlCompute", "properties": {
        "enableNodePublicIp": False, "remoteLoginPortPublicAccess": "Disabled",
        "scaleSettings": {"minNodeCount": 1}}}}, "scale to zero"),
    ("azure-native:machinelearningservices:Compute", {"identity": {"type": "SystemAssigned"}, "properties": {
        "computeType": "AmlCompute", "properties": {"enableNodePublicIp": False, "remoteLoginPortPublicAccess":
                                                    "Disabled", "scaleSettings": {"minNodeCount": 0}}}},
     "user-assigned identity"),
])
def test_each_rule_catches_its_violation(typ, props, expected):
    problems = rules.check_resource(typ, props)
    assert problems and any(expected in p for p in problems), problems


@pytest.mark.parametrize("typ, props, expected", [
    ("azure-native:storage:StorageAccount", {"allowSharedKeyAccess": False}, "reachable from any network"),
    ("azure-native:storage:StorageAccount", {"publicNetworkAccess": "Disabled"}, "shared keys"),
    ("azure-native:keyvault:Vault", {"properties": {"publicNetworkAccess": "Enabled",
                                                    "networkAcls": {"defaultAction": "Allow"}}}, "any network"),
    ("azure-native:machinelearningservices:Workspace", {"publicNetworkAccess": "Disabled", "managedNetwork": {
        "isolationMode": "AllowInternetOutbound"}}, "internet outbound"),
    ("azure-native:machinelearningservices:Workspace", {"managedNetwork": {
        "isolationMode": "AllowOnlyApprovedOutbound"}}, "public network access"),
    ("azure-native:containerregistry:Registry", {"sku": {"name": "Basic"}}, "public network access"),
    ("azure-native:machinelearningservices:OnlineEndpoint", {"properties": {}}, "public network access"),
    ("azure-native:machinelearningservices:OnlineDeployment", {"properties": {"egressPublicNetworkAccess": "Enabled"}},
     "public egress"),
])
def test_each_exposure_rule_catches_its_public_setting(typ, props, expected):
    problems = rules.check_resource(typ, props, rules.EXPOSURE_RULES)
    assert problems and any(expected in p for p in problems), problems


def test_cloudfts_own_arns_pass_the_wildcard_rule():
    for ok in ("arn:aws:s3:::bkt/team-a/*", "arn:aws:sagemaker:us-east-1:1:training-job/pipelines-*",
               "arn:aws:logs:us-east-1:1:log-group:/aws/sagemaker/*:log-stream:*",
               "arn:aws:ec2:us-east-1:1:network-interface/*", "arn:aws:secretsmanager:us-east-1:1:secret:hf-AbC"):
        assert rules.arn_wildcards(ok) == [], ok


def test_secret_references_and_instance_storage_are_allowed():
    ok_env = {"HF_TOKEN": "arn:aws:secretsmanager:us-east-1:1:secret:x", "MAX_TOKENS": ""}
    assert rules.sagemaker_model({"primaryContainer": {"environment": ok_env}}) == []
    assert rules.sagemaker_endpoint_config({"productionVariants": [{"instanceType": "ml.g5.2xlarge"}]}) == []
    assert rules.check_stack([], rules.REQUIRED_AWS)  # absence of the secure bucket resources is itself a violation


def test_policy_pack_reports_rule_violations(monkeypatch):
    """infra/policy/__main__.py wires the rules into a mandatory pulumi-policy pack (stubbed pulumi_policy)."""
    packs = []
    stub = types.ModuleType("pulumi_policy")
    stub.EnforcementLevel = types.SimpleNamespace(MANDATORY="mandatory", ADVISORY="advisory")
    stub.PolicyPack = lambda **kw: packs.append(kw)
    stub.ResourceValidationPolicy = lambda **kw: types.SimpleNamespace(**kw)
    stub.ReportViolation = stub.ResourceValidationArgs = object
    monkeypatch.setitem(sys.modules, "pulumi_policy", stub)
    runpy.run_path(str(REPO / "infra" / "policy" / "__main__.py"), run_name="__main__")
    (pack,) = packs
    assert pack["name"] == "cloudft-security" and pack["enforcement_level"] == "mandatory"
    validate = pack["policies"][0].validate
    found: list[str] = []
    validate(types.SimpleNamespace(resource_type="aws:kms/key:Key", props={"enableKeyRotation": False}), found.append)
    validate(types.SimpleNamespace(resource_type="aws:kms/key:Key", props={"enableKeyRotation": True}), found.append)
    assert found == ["KMS key rotation must be enabled"]
    exposure = pack["policies"][1]
    assert exposure.name == "cloudft-public-exposure" and exposure.enforcement_level == "advisory"
    found.clear()
    exposure.validate(types.SimpleNamespace(resource_type="azure-native:machinelearningservices:OnlineEndpoint",
                                            props={"properties": {"publicNetworkAccess": "Enabled"}}), found.append)
    assert found == ["online endpoint accepts public network access"]
