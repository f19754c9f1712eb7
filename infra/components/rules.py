"""Security rules for cloudft's cloud resources, as pure functions over engine properties.

Each rule sees a resource type token (e.g. ``aws:s3/bucket:Bucket``) and its properties as the Pulumi engine sees them
(camelCase names: ``blockPublicAcls``, ``kmsKeyArn``). The same functions run

- in unit tests over the resources that `pulumi.runtime.set_mocks` records, and
- in the `infra/policy` pack (pulumi-policy) during a real `pulumi preview` / `up`.

No pulumi import here, so the rules stay cheap to load and easy to test.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterable, Mapping

from cloudft.planner.catalog import has_local_storage  # the one list of local-NVMe types (the AWS catalog)

Props = Mapping[str, Any]
Rule = Callable[[Props], list[str]]

#: Actions for which AWS offers no resource narrower than ``*`` (each one documented in docs/infra.md; parliament's
#: RESOURCE_STAR check knows them as actions without resource-level permissions).
STAR_RESOURCE_ACTIONS: dict[str, str] = {
    "ecr:GetAuthorizationToken": "the ECR login token is account-wide; the service has no resource type for it",
    "cloudwatch:PutMetricData": "CloudWatch metrics have no resource ARNs; scoped by a cloudwatch:namespace condition",
    "ec2:DescribeNetworkInterfaces": "EC2 Describe* calls support no resource-level permissions (VPC mode only)",
    "ec2:DescribeVpcs": "EC2 Describe* calls support no resource-level permissions (VPC mode only)",
    "ec2:DescribeDhcpOptions": "EC2 Describe* calls support no resource-level permissions (VPC mode only)",
    "ec2:DescribeSubnets": "EC2 Describe* calls support no resource-level permissions (VPC mode only)",
    "ec2:DescribeSecurityGroups": "EC2 Describe* calls support no resource-level permissions (VPC mode only)",
}

#: Managed policies that grant far more than cloudft needs.
BROAD_MANAGED_POLICIES = ("AdministratorAccess", "PowerUserAccess", "FullAccess")

_SECRET_KEY = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CONNECTION_?STRING)", re.I)
_REFERENCE = re.compile(r"^(arn:aws[\w-]*:secretsmanager:|arn:aws[\w-]*:ssm:|https://[\w-]+\.vault\.azure\.net/|"
                        r"@Microsoft\.KeyVault\(|\$\{|\{\{)")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _load_json(value: Any) -> Any:
    """A policy document as a dict (engine props hold it as a JSON string)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


# ---------------------------------------------------------------- AWS


def s3_public_access_block(props: Props) -> list[str]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    return [f"S3 public access block must set {f}=true" for f in flags if props.get(f) is not True]


def s3_encryption(props: Props) -> list[str]:
    rules = _as_list(props.get("rules"))
    for rule in rules:
        default = (rule or {}).get("applyServerSideEncryptionByDefault") or {}
        if default.get("sseAlgorithm") in ("aws:kms", "aws:kms:dsse") and default.get("kmsMasterKeyId"):
            return []
    return ["S3 bucket encryption must be SSE-KMS with a customer key (kmsMasterKeyId)"]


def s3_tls_only_policy(props: Props) -> list[str]:
    doc = _load_json(props.get("policy"))
    if doc is None:
        return ["bucket policy is not a JSON document"]
    for st in _as_list(doc.get("Statement")):
        cond = (st.get("Condition") or {}).get("Bool") or {}
        if st.get("Effect") == "Deny" and str(cond.get("aws:SecureTransport")).lower() == "false":
            return []
    return ["bucket policy must deny requests without TLS (aws:SecureTransport=false)"]


def s3_versioning(props: Props) -> list[str]:
    status = (props.get("versioningConfiguration") or {}).get("status")
    return [] if status == "Enabled" else ["S3 bucket versioning must be Enabled"]


#: Resources whose name part is a wildcard by necessity (each documented in docs/infra.md): network interfaces
#: that SageMaker creates for a job in a VPC get ids nobody knows in advance.
WILDCARD_NAME_RESOURCES = ("network-interface/*",)
#: parliament findings that are not problems for cloudft's documents (none today; add with a reason).
PARLIAMENT_IGNORED: tuple[str, ...] = ()


def parliament_findings(doc: dict, where: str) -> list[str]:
    """The maintained IAM linter's generic checks (parliament: unknown actions, action/resource-type mismatch,
    malformed ARNs, Resource "*" for actions that support resource-level permissions, privilege escalation, ...)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports pkg_resources (deprecated)
        from parliament import analyze_policy_string

    found = analyze_policy_string(json.dumps(doc), include_community_auditors=False).findings
    return [f"{where}: parliament {f.issue}: {f.detail}" for f in found if f.issue not in PARLIAMENT_IGNORED]


def arn_wildcards(resource: str) -> list[str]:
    """cloudft's own rule: a resource names cloudft's things. No wildcard in the partition, service, region or
    account field, and the resource's name (the bucket; the role, secret, repository, ... after its type) is not a
    bare wildcard: `arn:aws:s3:::*/*`, `arn:aws:iam::*:role/*` and `...:secret:*` are refused; `bucket/prefix/*`
    and `training-job/pipelines-*` are fine."""
    if resource == "*" or not resource.startswith("arn:"):
        return []  # "*" is parliament's RESOURCE_STAR check
    fields = resource.split(":", 5)
    if len(fields) < 6:
        return [f"malformed ARN {resource!r}"]
    problems = [f"wildcard in the {name} of {resource!r}" for name, value in
                zip(("partition", "service", "region", "account"), fields[1:5]) if "*" in value or "?" in value]
    rest = fields[5]
    if any(rest == allowed or rest.endswith(":" + allowed) for allowed in WILDCARD_NAME_RESOURCES):
        return problems
    tokens = [t for t in re.split(r"[:/]", rest) if t]
    name = tokens[0] if fields[2] == "s3" else (tokens[1] if len(tokens) > 1 else tokens[0] if tokens else "")
    if not name.strip("*?"):
        problems.append(f"wildcard name in {resource!r} (name the bucket, role, secret, ... it is for)")
    return problems


def iam_policy_document(doc: Any, where: str = "IAM policy") -> list[str]:
    """cloudft's own rules (no wildcard action, no Allow with NotAction/NotResource, no principal '*', no wildcard
    ARNs, kms:CreateGrant only for AWS resources) plus parliament's generic checks."""
    doc = _load_json(doc)
    if not isinstance(doc, dict):
        return [f"{where}: not a JSON policy document"]
    problems: list[str] = []
    for i, st in enumerate(_as_list(doc.get("Statement"))):
        if st.get("Effect") != "Allow":
            continue
        sid = st.get("Sid") or f"#{i}"
        if "NotAction" in st or "NotResource" in st:
            problems.append(f"{where} {sid}: Allow with NotAction/NotResource")
        actions = [str(a) for a in _as_list(st.get("Action"))]
        for action in actions:
            if "*" in action:
                problems.append(f"{where} {sid}: wildcard action {action!r}")
        for resource in (str(r) for r in _as_list(st.get("Resource"))):
            problems += [f"{where} {sid}: {p}" for p in arn_wildcards(resource)]
        if any(a.lower() == "kms:creategrant" for a in actions):
            cond = (st.get("Condition") or {}).get("Bool") or {}
            if str(cond.get("kms:GrantIsForAWSResource")).lower() != "true":
                problems.append(f"{where} {sid}: kms:CreateGrant without Bool kms:GrantIsForAWSResource=true lets "
                                "the holder grant lasting decrypt rights to any principal")
        for principal in _principals(st):
            if principal == "*":
                problems.append(f"{where} {sid}: principal '*'")
    return problems + parliament_findings(doc, where)


def _principals(statement: Mapping[str, Any]) -> Iterable[str]:
    principal = statement.get("Principal")
    if principal == "*":
        yield "*"
    elif isinstance(principal, Mapping):
        for value in principal.values():
            yield from (str(v) for v in _as_list(value))


def iam_inline_policy(props: Props) -> list[str]:
    return iam_policy_document(props.get("policy"), "inline policy")


def iam_role(props: Props) -> list[str]:
    problems = []
    trust = _load_json(props.get("assumeRolePolicy"))
    for st in _as_list((trust or {}).get("Statement")):
        if st.get("Effect") == "Allow" and "*" in list(_principals(st)):
            problems.append("role trust policy allows any principal")
    for arn in _as_list(props.get("managedPolicyArns")):
        if any(b in str(arn) for b in BROAD_MANAGED_POLICIES):
            problems.append(f"role has a broad managed policy {arn}")
    return problems


def iam_policy_attachment(props: Props) -> list[str]:
    arn = str(props.get("policyArn") or "")
    return [f"broad managed policy attached: {arn}"] if any(b in arn for b in BROAD_MANAGED_POLICIES) else []


def ecr_repository(props: Props) -> list[str]:
    problems = []
    if props.get("imageTagMutability") != "IMMUTABLE":
        problems.append("ECR repository tags must be IMMUTABLE")
    if (props.get("imageScanningConfiguration") or {}).get("scanOnPush") is not True:
        problems.append("ECR repository must scan on push")
    enc = _as_list(props.get("encryptionConfigurations"))
    if not any((e or {}).get("encryptionType") == "KMS" for e in enc):
        problems.append("ECR repository must be encrypted with KMS")
    return problems


def kms_key(props: Props) -> list[str]:
    return [] if props.get("enableKeyRotation") is True else ["KMS key rotation must be enabled"]


def sagemaker_endpoint_config(props: Props) -> list[str]:
    variants = _as_list(props.get("productionVariants"))
    needs_key = any(not has_local_storage((v or {}).get("instanceType", "")) for v in variants)
    if needs_key and not props.get("kmsKeyArn"):
        return ["SageMaker endpoint configuration must set kmsKeyArn (storage volume encryption)"]
    return []


def env_without_secrets(env: Any, where: str) -> list[str]:
    """Environment variables must reference secrets (ARN, Key Vault URI), never hold their values."""
    problems = []
    for key, value in dict(env or {}).items():
        if _SECRET_KEY.search(str(key)) and value and not _REFERENCE.match(str(value)):
            problems.append(f"{where}: environment variable {key} looks like a literal secret")
    return problems


def sagemaker_model(props: Props) -> list[str]:
    containers = [props.get("primaryContainer") or {}] + _as_list(props.get("containers"))
    return [p for c in containers for p in env_without_secrets(c.get("environment"), "SageMaker model")]


def lambda_function(props: Props) -> list[str]:
    env = (props.get("environment") or {}).get("variables")
    return env_without_secrets(env, "Lambda function")


def cognito_user_pool(props: Props) -> list[str]:
    admin_only = (props.get("adminCreateUserConfig") or {}).get("allowAdminCreateUserOnly")
    return [] if admin_only is True else ["Cognito user pool must not allow self sign-up (allowAdminCreateUserOnly)"]


# ---------------------------------------------------------------- Azure


def azure_storage_account(props: Props) -> list[str]:
    problems = []
    if props.get("allowBlobPublicAccess") is not False:
        problems.append("storage account must set allowBlobPublicAccess=false")
    if props.get("minimumTlsVersion") not in ("TLS1_2", "TLS1_3"):
        problems.append("storage account must require TLS 1.2 or later")
    if props.get("enableHttpsTrafficOnly") is False:
        problems.append("storage account must accept HTTPS only")
    return problems


def azure_blob_service(props: Props) -> list[str]:
    return [] if props.get("isVersioningEnabled") is True else ["blob versioning must be enabled"]


def azure_key_vault(props: Props) -> list[str]:
    p = props.get("properties") or {}
    problems = []
    if p.get("enableRbacAuthorization") is not True:
        problems.append("Key Vault must use RBAC authorization")
    if p.get("enablePurgeProtection") is not True:
        problems.append("Key Vault must enable purge protection")
    return problems


def azure_container_registry(props: Props) -> list[str]:
    problems = []
    if props.get("adminUserEnabled") is True:
        problems.append("container registry must not enable the admin user")
    if props.get("anonymousPullEnabled") is True:
        problems.append("container registry must not allow anonymous pull")
    return problems


def azure_aml_compute(props: Props) -> list[str]:
    outer = props.get("properties") or {}
    if outer.get("computeType") != "AmlCompute":
        return []
    p = outer.get("properties") or {}
    problems = []
    if p.get("enableNodePublicIp") is not False:
        problems.append("AmlCompute nodes must not have public IPs (enableNodePublicIp=false)")
    if p.get("remoteLoginPortPublicAccess") != "Disabled":
        problems.append("AmlCompute must disable the public SSH port (remoteLoginPortPublicAccess=Disabled)")
    if (p.get("scaleSettings") or {}).get("minNodeCount") not in (0, 0.0):
        problems.append("AmlCompute must scale to zero (minNodeCount=0)")
    return problems


def azure_online_deployment(props: Props) -> list[str]:
    env = (props.get("properties") or {}).get("environmentVariables")
    return env_without_secrets(env, "online deployment")


def azure_compute_identity(props: Props) -> list[str]:
    """Jobs on the cluster run as a user-assigned identity that the stack grants (access model)."""
    ident = props.get("identity") or {}
    if (props.get("properties") or {}).get("computeType") == "AmlCompute" and ident.get("type") != "UserAssigned":
        return ["AmlCompute must run as a user-assigned identity (the one the stack grants storage, registry and "
                "Key Vault roles)"]
    return []


# ---------------------------------------------------------------- Azure: public exposure
# Flagged, not forbidden: the quickstart keeps public endpoints so the CLI works from a laptop (docs/azure.md,
# "Network"). `cloudft:network: private` turns every one of them off; the policy pack can enforce that.

def _open(public: Any, acl: Any) -> bool:
    """Reachable from the internet: public access not Disabled and no firewall that denies by default."""
    return public != "Disabled" and (acl or {}).get("defaultAction") != "Deny"


def azure_storage_exposure(props: Props) -> list[str]:
    problems = []
    if props.get("allowSharedKeyAccess") is not False:
        problems.append("storage account accepts shared keys (allowSharedKeyAccess is not false)")
    if _open(props.get("publicNetworkAccess"), props.get("networkRuleSet")):
        problems.append("storage account is reachable from any network (publicNetworkAccess without a Deny firewall)")
    return problems


def azure_key_vault_exposure(props: Props) -> list[str]:
    p = props.get("properties") or {}
    return ["Key Vault is reachable from any network (publicNetworkAccess without a Deny firewall)"] \
        if _open(p.get("publicNetworkAccess"), p.get("networkAcls")) else []


def azure_workspace_exposure(props: Props) -> list[str]:
    problems = []
    if props.get("publicNetworkAccess") != "Disabled":
        problems.append("ML workspace accepts public network access")
    if (props.get("managedNetwork") or {}).get("isolationMode") != "AllowOnlyApprovedOutbound":
        problems.append("ML workspace managed network allows any internet outbound (not AllowOnlyApprovedOutbound)")
    return problems


def azure_registry_exposure(props: Props) -> list[str]:
    return [] if props.get("publicNetworkAccess") == "Disabled" else ["container registry accepts public network "
                                                                     "access"]


def azure_endpoint_exposure(props: Props) -> list[str]:
    p = props.get("properties") or {}
    return [] if p.get("publicNetworkAccess") == "Disabled" else ["online endpoint accepts public network access"]


def azure_deployment_exposure(props: Props) -> list[str]:
    p = props.get("properties") or {}
    return ["online deployment has public egress"] if p.get("egressPublicNetworkAccess") == "Enabled" else []


RULES: dict[str, list[Rule]] = {
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": [s3_public_access_block],
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": [s3_encryption],
    "aws:s3/bucketPolicy:BucketPolicy": [s3_tls_only_policy],
    "aws:s3/bucketVersioning:BucketVersioning": [s3_versioning],
    "aws:iam/rolePolicy:RolePolicy": [iam_inline_policy],
    "aws:iam/policy:Policy": [iam_inline_policy],
    "aws:iam/role:Role": [iam_role],
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": [iam_policy_attachment],
    "aws:ecr/repository:Repository": [ecr_repository],
    "aws:kms/key:Key": [kms_key],
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": [sagemaker_endpoint_config],
    "aws:sagemaker/model:Model": [sagemaker_model],
    "aws:lambda/function:Function": [lambda_function],
    "aws:cognito/userPool:UserPool": [cognito_user_pool],
    "azure-native:storage:StorageAccount": [azure_storage_account],
    "azure-native:storage:BlobServiceProperties": [azure_blob_service],
    "azure-native:keyvault:Vault": [azure_key_vault],
    "azure-native:containerregistry:Registry": [azure_container_registry],
    "azure-native:machinelearningservices:Compute": [azure_aml_compute, azure_compute_identity],
    "azure-native:machinelearningservices:OnlineDeployment": [azure_online_deployment],
}

#: What is reachable from the internet (reported; enforced only when a stack asks for the private network).
EXPOSURE_RULES: dict[str, list[Rule]] = {
    "azure-native:storage:StorageAccount": [azure_storage_exposure],
    "azure-native:keyvault:Vault": [azure_key_vault_exposure],
    "azure-native:machinelearningservices:Workspace": [azure_workspace_exposure],
    "azure-native:containerregistry:Registry": [azure_registry_exposure],
    "azure-native:machinelearningservices:OnlineEndpoint": [azure_endpoint_exposure],
    "azure-native:machinelearningservices:OnlineDeployment": [azure_deployment_exposure],
}

#: Resource types a secure stack must contain (a rule cannot pass by the resource being absent).
REQUIRED_AWS = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                "aws:s3/bucketPolicy:BucketPolicy", "aws:s3/bucketVersioning:BucketVersioning")
REQUIRED_AZURE = ("azure-native:storage:StorageAccount", "azure-native:storage:BlobServiceProperties")


def check_resource(type_token: str, props: Props, rules: Mapping[str, list[Rule]] = RULES) -> list[str]:
    """Every violation of the rules for this resource type ([] when none apply)."""
    return [p for rule in rules.get(type_token, []) for p in rule(props)]


def check_stack(resources: Iterable[tuple[str, str, Props]], required: Iterable[str] = (),
                rules: Mapping[str, list[Rule]] = RULES) -> list[str]:
    """Violations over (type, name, props) triples, prefixed with the resource name; missing required types too.
    `rules=EXPOSURE_RULES` lists what a stack leaves reachable from the internet instead."""
    resources = list(resources)
    problems = [f"{name}: {p}" for typ, name, props in resources for p in check_resource(typ, props, rules)]
    present = {typ for typ, _, _ in resources}
    problems += [f"stack has no {typ}" for typ in required if typ not in present]
    return problems
