"""The infra/aws program under Pulumi mocks: resources, their properties, and the wired stack outputs."""

from __future__ import annotations

import json

import pytest
from infra_fixtures import ACCOUNT, REGION, run_program

from cloudft.infra.contract import AWS_OUTPUT_KEYS
from infra.components.aws_stack import AwsStackSettings, LabelingSettings, ServingSettings, build_aws_stack

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _aws(settings: AwsStackSettings):
    return run_program(lambda: build_aws_stack(settings))


def _statements(mocks, name_suffix: str) -> dict[str, dict]:
    pol = [r for r in mocks.of_type("iam/rolePolicy:RolePolicy") if r.name.endswith(name_suffix)]
    assert len(pol) == 1, [r.name for r in mocks.of_type("iam/rolePolicy:RolePolicy")]
    return {st["Sid"]: st for st in json.loads(pol[0].inputs["policy"])["Statement"]}


def _role(mocks, name: str):
    return next(r for r in mocks.of_type("iam/role:Role") if r.name == name)


@pytest.fixture(scope="module")
def base():
    return _aws(AwsStackSettings(name="cft", prefix="team-a", secret_arns=[
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hf-token-AbCdEf"]))


def test_outputs_are_the_contract_and_wired_to_resources(base):
    mocks, out = base
    assert set(AWS_OUTPUT_KEYS) <= set(out)
    bucket = mocks.one(":Bucket")
    assert out["bucket"] == bucket.outputs["bucket"] and out["bucket"].startswith("cft-sagemaker-")
    assert out["role_arn"] == _role(mocks, "cft-role").outputs["arn"]
    assert out["pipeline_role_arn"] == _role(mocks, "cft-pipeline-role").outputs["arn"]
    assert set(out["iam_policies"]) == {"execution", "pipeline"}
    assert out["iam_policies"]["execution"]["arn"] == out["role_arn"]
    assert out["kms_key_arn"] == mocks.one("kms/key:Key").outputs["arn"]
    assert out["repository_url"] == mocks.one("ecr/repository:Repository").outputs["repositoryUrl"]
    assert (out["region"], out["prefix"]) == (REGION, "team-a")
    assert out["workteam_arn"] is None and out["endpoint_name"] is None


def test_bucket_encrypted_versioned_private_with_checkpoint_lifecycle(base):
    mocks, out = base
    enc = mocks.one("BucketServerSideEncryptionConfiguration").inputs["rules"][0]
    assert enc["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms",
                                                         "kmsMasterKeyId": out["kms_key_arn"]}
    assert mocks.one("BucketVersioning").inputs["versioningConfiguration"]["status"] == "Enabled"
    assert mocks.one("BucketOwnershipControls").inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    rules = {r["id"]: r for r in mocks.one("BucketLifecycleConfiguration").inputs["rules"]}
    assert rules["expire-checkpoints-0"]["filter"] == {"prefix": "team-a/checkpoints/"}
    assert rules["expire-checkpoints-0"]["expiration"]["days"] == 30
    assert rules["noncurrent-versions-and-uploads"]["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7
    key = mocks.one("kms/key:Key").inputs
    assert key["enableKeyRotation"] is True and key["deletionWindowInDays"] == 10
    for res in mocks.of_type(":BucketPolicy") + mocks.of_type("BucketPublicAccessBlock"):
        assert res.inputs["bucket"] == out["bucket"]


def test_tls_policy_covers_bucket_and_objects(base):
    mocks, out = base
    sts = json.loads(mocks.one(":BucketPolicy").inputs["policy"])["Statement"]
    deny = next(s for s in sts if s["Sid"] == "DenyInsecureTransport")
    arn = f"arn:aws:s3:::{out['bucket']}"
    assert deny["Effect"] == "Deny" and sorted(deny["Resource"]) == [arn, f"{arn}/*"]


def test_execution_role_trust_and_scoped_permissions(base):
    mocks, out = base
    trust = json.loads(_role(mocks, "cft-role").inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    sts = _statements(mocks, "cft-execution")
    arn = f"arn:aws:s3:::{out['bucket']}"
    assert sts["BucketObjects"]["Resource"] == [f"{arn}/team-a/*"]
    assert sts["BucketList"]["Condition"] == {"StringLike": {"s3:prefix": ["team-a", "team-a/*"]}}
    assert sts["KmsUse"]["Resource"] == [out["kms_key_arn"]]
    assert sts["EcrPull"]["Resource"] == [mocks.one("ecr/repository:Repository").outputs["arn"]]
    assert sts["ReadNamedSecrets"]["Resource"] == [f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hf-token-AbCdEf"]
    assert sts["SageMakerLogs"]["Resource"][0] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/*"
    assert "VpcDescribe" not in sts  # no VPC configured: no EC2 permissions
    # kms:CreateGrant only for AWS services acting for the role (the training volume), never to any principal
    assert "kms:CreateGrant" not in sts["KmsUse"]["Action"]
    assert sts["KmsGrantForAwsServices"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    steps = _statements(mocks, "cft-pipeline-steps")
    assert steps["PassExecutionRole"]["Resource"] == [out["role_arn"]]
    assert steps["PassExecutionRole"]["Condition"] == {"StringEquals": {"iam:PassedToService":
                                                                        "sagemaker.amazonaws.com"}}


def test_ecr_repository_immutable_scanned_kms(base):
    mocks, out = base
    repo = mocks.one("ecr/repository:Repository").inputs
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": out["kms_key_arn"]}]


def test_vpc_settings_add_eni_permissions_and_outputs():
    mocks, out = _aws(AwsStackSettings(name="cft", subnets=["subnet-1"], security_group_ids=["sg-1"]))
    sts = _statements(mocks, "cft-execution")
    assert f"arn:aws:ec2:{REGION}:{ACCOUNT}:subnet/subnet-1" in sts["VpcInterfaces"]["Resource"]
    assert (out["subnets"], out["security_group_ids"]) == (["subnet-1"], ["sg-1"])


def test_labeling_creates_cognito_workteam_and_packages_consolidation_lambda(tmp_path):
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return []\n")
    mocks, out = _aws(AwsStackSettings(name="cft", labeling=LabelingSettings(
        enabled=True, consolidation_dir=tmp_path, domain_prefix="cft-raters")))
    pool = mocks.one("cognito/userPool:UserPool")
    assert pool.inputs["adminCreateUserConfig"]["allowAdminCreateUserOnly"] is True
    client = mocks.one("UserPoolClient").inputs
    assert client["generateSecret"] is True and client["userPoolId"] == pool.id
    assert mocks.one("UserPoolDomain").inputs["domain"] == "cft-raters"
    workforce = mocks.one("sagemaker/workforce:Workforce").inputs
    assert workforce["cognitoConfig"]["userPool"] == pool.id
    team = mocks.one("sagemaker/workteam:Workteam")
    member = team.inputs["memberDefinitions"][0]["cognitoMemberDefinition"]
    assert member == {"clientId": mocks.one("UserPoolClient").id, "userPool": pool.id, "userGroup": "raters"}
    assert out["workteam_arn"] == team.outputs["arn"]
    fn = mocks.one("lambda/function:Function")
    assert fn.inputs["handler"] == "handler.handler" and fn.inputs["runtime"].startswith("python3")
    assert "sagemaker" in fn.inputs["name"]
    invoke = _statements(mocks, "cft-labeling")["InvokeConsolidation"]
    assert invoke["Action"] == ["lambda:InvokeFunction"] and invoke["Resource"] == [fn.outputs["arn"]]
    lam = _statements(mocks, "cft-consolidation-policy")
    assert lam["ReadPayloads"]["Resource"] == [f"arn:aws:s3:::{out['bucket']}/cloudft/*"]


def test_labeling_lambda_code_is_the_given_folder(tmp_path):
    from infra.components.aws_labeling import consolidation_archive

    with pytest.raises(FileNotFoundError, match="handler.py"):
        consolidation_archive(tmp_path)
    (tmp_path / "handler.py").write_text("def handler(e, c):\n    return []\n")
    assert consolidation_archive(tmp_path).path == str(tmp_path)


def test_existing_workforce_is_referenced_not_created(tmp_path):
    mocks, _ = _aws(AwsStackSettings(name="cft", labeling=LabelingSettings(
        enabled=True, create_workforce=False, workforce_name="default", consolidation_dir=None)))
    assert mocks.of_type("sagemaker/workforce:Workforce") == []
    assert mocks.one("sagemaker/workteam:Workteam").inputs["workforceName"] == "default"
    assert mocks.of_type("lambda/function:Function") == []


@pytest.mark.parametrize("instance_type, with_key", [("ml.m5.xlarge", True), ("ml.g5.2xlarge", False)])
def test_serving_model_endpoint_config_endpoint(instance_type, with_key):
    mocks, out = _aws(AwsStackSettings(name="cft", serving=ServingSettings(
        enabled=True, image="123.dkr.ecr.us-east-1.amazonaws.com/lmi:1", instance_type=instance_type,
        model_data_url="s3://b/cloudft/runs/r1/adapter.tar.gz", environment={"OPTION_ENABLE_LORA": "true"},
        endpoint_name="cft-ep")))
    model = mocks.one("sagemaker/model:Model")
    assert model.inputs["executionRoleArn"] == out["role_arn"]
    assert model.inputs["primaryContainer"]["modelDataUrl"].endswith("adapter.tar.gz")
    config = mocks.one("EndpointConfiguration").inputs
    variant = config["productionVariants"][0]
    assert variant["modelName"] == model.outputs["name"] and variant["instanceType"] == instance_type
    assert ("kmsKeyArn" in config) is with_key and config.get("kmsKeyArn", out["kms_key_arn"]) == out["kms_key_arn"]
    assert model.inputs["primaryContainer"]["environment"] == {"OPTION_ENABLE_LORA": "true"}
    assert "name" not in config  # auto-named: a change creates the new config before deleting the old one
    endpoint = mocks.one("sagemaker/endpoint:Endpoint")
    assert out["endpoint_name"] == "cft-ep" == endpoint.outputs["name"]
    assert endpoint.inputs["endpointConfigName"] == mocks.one("EndpointConfiguration").outputs["name"]


def test_settings_from_pulumi_config():
    from infra.components.settings import REPO_ROOT

    class Cfg:
        values = {"prefix": "/p/", "secretArns": ["arn:x"], "labeling": {"enabled": True},
                  "serving": {"enabled": True, "image": "img", "environment": {"A": 1}}}

        def get(self, key):  # what pulumi.Config.get returns: the raw string (JSON for non-strings)
            value = self.values.get(key)
            return value if value is None or isinstance(value, str) else json.dumps(value)

    s = AwsStackSettings.from_config(Cfg(), stack="Prod_1")
    assert (s.name, s.prefix, s.checkpoint_prefixes) == ("cloudft-prod-1", "p", ["p/checkpoints/"])
    assert s.labeling.consolidation_dir == REPO_ROOT / "templates/ground_truth/consolidation"
    assert s.serving.environment == {"A": "1"} and s.secret_arns == ["arn:x"]
    with pytest.raises(ValueError, match="serving.image"):
        AwsStackSettings(serving=ServingSettings(enabled=True))
    with pytest.raises(ValueError, match="securityGroupIds"):
        AwsStackSettings(subnets=["subnet-1"])


def test_serving_uses_cloudft_deploy_container_form_and_image_uri_output():
    from cloudft.providers.aws.deploy import VARIANT, container_env

    mocks, out = _aws(AwsStackSettings(name="cft", image_tag="v1", serving=ServingSettings(
        enabled=True, image="vllm:1", base_model="Qwen/Qwen2.5-0.5B", lora_rank=32,
        model_data_url="s3://b/cloudft/out/model.tar.gz", environment={"SM_VLLM_MAX_LORAS": "2"})))
    env = mocks.one("sagemaker/model:Model").inputs["primaryContainer"]["environment"]
    assert env == {**container_env("Qwen/Qwen2.5-0.5B", 32), "SM_VLLM_MAX_LORAS": "2"}
    assert mocks.one("EndpointConfiguration").inputs["productionVariants"][0]["variantName"] == VARIANT
    assert out["image_uri"] == out["repository_url"] + ":v1"
