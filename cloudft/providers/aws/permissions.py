"""The permissions manifest: every AWS action each actor performs for cloudft, with its resources, as data.

Actors:
- `cli`: the identity that runs `cloudft` (one `use` per command: submit, status, logs, stop, artifacts, deploy,
  label-submit, label-collect).
- `sdk`: calls the SageMaker Python SDK makes on its own while cloudft builds a request (run as the CLI identity).
- `job`: the training job's execution role (the role SageMaker assumes; `aws.role_arn`).
- `pipeline`: the role a multi-stage SageMaker pipeline runs as (`aws.pipeline_role_arn`, else `aws.role_arn`).
- `labeling`: the Ground Truth labeling job's execution role (the stack's role).
- `consolidation`: the Ground Truth consolidation Lambda's own role.

Resources are ARN templates over {partition} {region} {account} {bucket} {prefix} {kms_key} {role} {pipeline_role}
{repository} {secret} {subnet} {security_group} {function} {log_group}; a `*` in a template is a part cloudft does
not know in advance (an object key under the prefix, a job name suffix). `when` names the feature that needs the
entry (kms, vpc, secrets, ecr, pipeline, labeling). The same table is
- rendered as the minimum IAM policy per actor (`minimum_policy`, printed in docs/aws.md),
- simulated against the execution role before submit (cloudft's own role check, `check_role`), and
- evaluated against the policies the Pulumi program declares (tests/test_aws_permissions.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

#: AWS documentation for each group of entries.
SOURCES = {
    "sm-roles": "https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html (CreateTrainingJob API: "
                "execution role permissions)",
    "sm-vpc": "https://docs.aws.amazon.com/sagemaker/latest/dg/train-vpc.html (training in a VPC: ENI permissions)",
    "sm-kms": "https://docs.aws.amazon.com/kms/latest/developerguide/grants.html + conditions-kms.html "
              "(kms:GrantIsForAWSResource: only AWS services may use the grant)",
    "sm-cw": "https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html (/aws/sagemaker/* "
             "namespaces and log groups)",
    "sm-pipeline": "https://docs.aws.amazon.com/sagemaker/latest/dg/build-and-manage-access.html (pipeline role: "
                   "create/describe/stop the jobs of its steps, iam:PassRole of their role)",
    "passrole": "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html (iam:PassedToService)",
    "tag-on-create": "https://docs.aws.amazon.com/sagemaker/latest/dg/security_iam_id-based-policy-examples.html "
                     "(creating a resource with Tags needs sagemaker:AddTags)",
    "s3-actions": "https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html (HeadObject needs "
                  "s3:GetObject; ListObjectsV2 needs s3:ListBucket with the s3:prefix key)",
    "secrets": "https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_examples.html",
    "ecr": "https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-pull.html",
    "logs": "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_GetLogEvents.html",
    "gt-exec": "https://docs.aws.amazon.com/sagemaker/latest/dg/sms-security-permission-execution-role.html",
    "gt-caller": "https://docs.aws.amazon.com/sagemaker/latest/dg/sms-security-permission-console-access.html",
    "gt-lambda": "https://docs.aws.amazon.com/sagemaker/latest/dg/sms-custom-templates-step3-lambda-permissions.html",
    "sdk": "sagemaker-train ModelTrainer._resolve_staging_bucket (iam:SimulatePrincipalPolicy) and "
           "sagemaker-core Session.default_bucket (s3 ListBuckets / ListObjectsV2 on the default bucket)",
    "check": "cloudft's own role check (rolecheck.check_role): iam:GetRole + iam:SimulatePrincipalPolicy",
}

BUCKET = "arn:{partition}:s3:::{bucket}"
OBJECTS = "arn:{partition}:s3:::{bucket}/{prefix}/*"
JOBS = "arn:{partition}:sagemaker:{region}:{account}:training-job/cft-*"
PIPELINE_JOBS = "arn:{partition}:sagemaker:{region}:{account}:training-job/pipelines-*"
PIPELINES = "arn:{partition}:sagemaker:{region}:{account}:pipeline/cft-*"
EXECUTIONS = "arn:{partition}:sagemaker:{region}:{account}:pipeline/cft-*/execution/*"
TRAINING_LOGS = "arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/TrainingJobs"
TRAINING_STREAMS = TRAINING_LOGS + ":log-stream:*"
ENDPOINT_LOGS = "arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/cft-*"
ENDPOINTS = "arn:{partition}:sagemaker:{region}:{account}:endpoint/cft-*"
ENDPOINT_CONFIGS = "arn:{partition}:sagemaker:{region}:{account}:endpoint-config/cft-*"
MODELS = "arn:{partition}:sagemaker:{region}:{account}:model/cft-*"
LABELING_JOBS = "arn:{partition}:sagemaker:{region}:{account}:labeling-job/cloudft-*"
KMS = "{kms_key}"
ROLE = "{role}"
PIPELINE_ROLE = "{pipeline_role}"
TO_SAGEMAKER = (("iam:PassedToService", "sagemaker.amazonaws.com"),)
PREFIX_LIST = (("s3:prefix", "{prefix}/*"),)


@dataclass(frozen=True)
class Need:
    """One action an actor performs on some resources (templates), with the request context IAM will see."""

    actor: str
    use: str
    action: str
    resources: tuple[str, ...]
    source: str
    when: str = ""
    context: tuple[tuple[str, str], ...] = ()


def _needs(actor: str, use: str, actions: Iterable[str], resources: Sequence[str], source: str, when: str = "",
           context: tuple[tuple[str, str], ...] = ()) -> list[Need]:
    return [Need(actor, use, a, tuple(resources), source, when, context) for a in actions]


MANIFEST: tuple[Need, ...] = tuple(
    # -- the CLI user ------------------------------------------------------------------------------------------
    _needs("cli", "submit", ["s3:GetObject", "s3:PutObject"], [OBJECTS], "s3-actions")
    + _needs("cli", "submit", ["kms:GenerateDataKey", "kms:Decrypt"], [KMS], "sm-kms", "kms")
    + _needs("cli", "submit", ["sagemaker:DescribeTrainingJob", "sagemaker:CreateTrainingJob", "sagemaker:AddTags"],
             [JOBS], "tag-on-create")
    + _needs("cli", "submit", ["iam:PassRole"], [ROLE], "passrole", context=TO_SAGEMAKER)
    + _needs("cli", "submit", ["iam:GetRole", "iam:SimulatePrincipalPolicy"], [ROLE], "check")
    + _needs("cli", "submit", ["sagemaker:CreatePipeline", "sagemaker:UpdatePipeline", "sagemaker:DescribePipeline",
                               "sagemaker:ListPipelineExecutions", "sagemaker:StartPipelineExecution",
                               "sagemaker:AddTags"], [PIPELINES], "sm-pipeline", "pipeline")
    + _needs("cli", "submit", ["iam:PassRole"], [PIPELINE_ROLE], "passrole", "pipeline", TO_SAGEMAKER)
    + _needs("cli", "submit", ["iam:GetRole", "iam:SimulatePrincipalPolicy"], [PIPELINE_ROLE], "check", "pipeline")
    + _needs("cli", "status", ["sagemaker:DescribeTrainingJob"], [JOBS, PIPELINE_JOBS], "sm-roles")
    + _needs("cli", "status", ["sagemaker:DescribePipelineExecution", "sagemaker:ListPipelineExecutionSteps"],
             [EXECUTIONS], "sm-pipeline", "pipeline")
    + _needs("cli", "logs", ["logs:DescribeLogStreams"], [TRAINING_LOGS], "logs")
    + _needs("cli", "logs", ["logs:GetLogEvents"], [TRAINING_STREAMS], "logs")
    + _needs("cli", "stop", ["sagemaker:StopTrainingJob"], [JOBS], "sm-roles")
    + _needs("cli", "stop", ["sagemaker:StopPipelineExecution"], [EXECUTIONS], "sm-pipeline", "pipeline")
    + _needs("cli", "artifacts", ["s3:GetObject"], [OBJECTS], "s3-actions")
    + _needs("cli", "artifacts", ["kms:Decrypt"], [KMS], "sm-kms", "kms")
    + _needs("cli", "deploy", ["sagemaker:CreateModel", "sagemaker:DeleteModel", "sagemaker:AddTags"], [MODELS],
             "tag-on-create")
    + _needs("cli", "deploy", ["sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig",
                               "sagemaker:DeleteEndpointConfig", "sagemaker:AddTags"], [ENDPOINT_CONFIGS],
             "tag-on-create")
    + _needs("cli", "deploy", ["sagemaker:CreateEndpoint", "sagemaker:DescribeEndpoint", "sagemaker:DeleteEndpoint",
                               "sagemaker:InvokeEndpoint", "sagemaker:AddTags"], [ENDPOINTS], "tag-on-create")
    + _needs("cli", "deploy", ["iam:PassRole"], [ROLE], "passrole", context=TO_SAGEMAKER)
    + _needs("cli", "label-submit", ["s3:PutObject"], [OBJECTS], "gt-caller", "labeling")
    + _needs("cli", "label-submit", ["sagemaker:CreateLabelingJob", "sagemaker:AddTags"], [LABELING_JOBS],
             "gt-caller", "labeling")
    + _needs("cli", "label-submit", ["iam:PassRole"], [ROLE], "gt-caller", "labeling", TO_SAGEMAKER)
    + _needs("cli", "label-collect", ["sagemaker:DescribeLabelingJob"], [LABELING_JOBS], "gt-caller", "labeling")
    + _needs("cli", "label-collect", ["s3:GetObject"], [OBJECTS], "gt-caller", "labeling")
    # -- the SDK's own calls (as the CLI user) ------------------------------------------------------------------
    + _needs("sdk", "submit", ["s3:ListAllMyBuckets"], ["*"], "sdk")
    + _needs("sdk", "submit", ["s3:ListBucket"], [BUCKET], "sdk", context=PREFIX_LIST)
    + _needs("sdk", "submit", ["iam:SimulatePrincipalPolicy"], [ROLE], "sdk")
    # -- the training job's execution role ----------------------------------------------------------------------
    + _needs("job", "train", ["s3:ListBucket"], [BUCKET], "sm-roles", context=PREFIX_LIST)
    + _needs("job", "train", ["s3:GetObject", "s3:PutObject"], [OBJECTS], "sm-roles")
    + _needs("job", "train", ["kms:Decrypt", "kms:GenerateDataKey"], [KMS], "sm-kms", "kms")
    + _needs("job", "train", ["kms:CreateGrant"], [KMS], "sm-kms", "kms", (("kms:GrantIsForAWSResource", "true"),))
    + _needs("job", "train", ["logs:CreateLogGroup", "logs:DescribeLogStreams"], [TRAINING_LOGS], "sm-cw")
    + _needs("job", "train", ["logs:CreateLogStream", "logs:PutLogEvents"], [TRAINING_STREAMS], "sm-cw")
    + _needs("job", "train", ["cloudwatch:PutMetricData"], ["*"], "sm-cw",
             context=(("cloudwatch:namespace", "/aws/sagemaker/TrainingJobs"),))
    + _needs("job", "train", ["ecr:GetAuthorizationToken"], ["*"], "ecr", "ecr")
    + _needs("job", "train", ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
             ["{repository}"], "ecr", "ecr")
    + _needs("job", "train", ["secretsmanager:GetSecretValue"], ["{secret}"], "secrets", "secrets")
    + _needs("job", "train", ["ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions",
                              "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"], ["*"], "sm-vpc", "vpc")
    + _needs("job", "train", ["ec2:CreateNetworkInterface"],
             ["arn:{partition}:ec2:{region}:{account}:network-interface/*",
              "arn:{partition}:ec2:{region}:{account}:subnet/{subnet}",
              "arn:{partition}:ec2:{region}:{account}:security-group/{security_group}"], "sm-vpc", "vpc")
    + _needs("job", "train", ["ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
                              "ec2:DeleteNetworkInterfacePermission"],
             ["arn:{partition}:ec2:{region}:{account}:network-interface/*"], "sm-vpc", "vpc")
    # the same role serves `cloudft deploy` endpoints (model artifact under the prefix, image pull as above)
    + _needs("job", "serve", ["logs:CreateLogGroup", "logs:DescribeLogStreams"], [ENDPOINT_LOGS], "sm-cw")
    + _needs("job", "serve", ["logs:CreateLogStream", "logs:PutLogEvents"], [ENDPOINT_LOGS + ":log-stream:*"],
             "sm-cw")
    + _needs("job", "serve", ["cloudwatch:PutMetricData"], ["*"], "sm-cw",
             context=(("cloudwatch:namespace", "/aws/sagemaker/Endpoints"),))
    # -- the pipeline role ------------------------------------------------------------------------------------
    + _needs("pipeline", "pipeline", ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob",
                                      "sagemaker:StopTrainingJob", "sagemaker:AddTags"], [PIPELINE_JOBS],
             "sm-pipeline", "pipeline")
    + _needs("pipeline", "pipeline", ["iam:PassRole"], [ROLE], "sm-pipeline", "pipeline", TO_SAGEMAKER)
    # -- the Ground Truth execution role and the consolidation Lambda --------------------------------------------
    + _needs("labeling", "label", ["s3:GetObject", "s3:PutObject"], [OBJECTS], "gt-exec", "labeling")
    + _needs("labeling", "label", ["s3:ListBucket"], [BUCKET], "gt-exec", "labeling", PREFIX_LIST)
    + _needs("labeling", "label", ["lambda:InvokeFunction"], ["{function}"], "gt-exec", "labeling")
    + _needs("consolidation", "label", ["s3:GetObject"], [OBJECTS], "gt-lambda", "labeling")
    + _needs("consolidation", "label", ["kms:Decrypt"], [KMS], "gt-lambda", "labeling,kms")
    + _needs("consolidation", "label", ["logs:CreateLogStream", "logs:PutLogEvents"], ["{log_group}:log-stream:*"],
             "gt-lambda", "labeling")
)

ACTORS = ("cli", "sdk", "job", "pipeline", "labeling", "consolidation")


def needs(actor: str, features: Iterable[str] = (), uses: Optional[Iterable[str]] = None) -> list[Need]:
    """The manifest entries of one actor for the features in use (entries with no `when` always apply)."""
    on = set(features)
    wanted = set(uses) if uses is not None else None
    return [n for n in MANIFEST if n.actor == actor and (wanted is None or n.use in wanted)
            and all(w in on for w in filter(None, n.when.split(",")))]


def expand(template: str, values: Mapping[str, Any]) -> list[str]:
    """Every concrete resource of a template: list values (several secrets, subnets) give one each."""
    out = [template]
    for key, value in values.items():
        token = "{" + key + "}"
        if not any(token in t for t in out):
            continue
        items = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        out = [t.replace(token, item) for t in out for item in items]
    return [t for t in out if "{" not in t]  # a template whose value is unknown (no secret) names nothing


def _context(need: Need, values: Mapping[str, Any]) -> dict[str, str]:
    return {k: expand(v, values)[0] if "{" in v else v for k, v in need.context}


def minimum_policy(actor: str, values: Mapping[str, Any], features: Iterable[str] = (),
                   uses: Optional[Iterable[str]] = None) -> dict[str, Any]:
    """The smallest identity policy that grants the actor its manifest entries (one statement per resource set and
    condition), e.g. for teams that do not use the infra stack."""
    groups: dict[tuple, list[str]] = {}
    for n in needs(actor, features, uses):
        resources = tuple(r for t in n.resources for r in expand(t, values))
        if not resources:
            continue
        ctx = tuple(sorted(_context(n, values).items()))
        actions = groups.setdefault((resources, ctx), [])
        if n.action not in actions:
            actions.append(n.action)
    statements = []
    for i, ((resources, ctx), actions) in enumerate(groups.items()):
        st: dict[str, Any] = {"Sid": f"{actor.capitalize()}{i}", "Effect": "Allow", "Action": sorted(actions),
                              "Resource": list(resources)}
        if ctx:
            st["Condition"] = {_operator(k): {k: v} for k, v in ctx}
        statements.append(st)
    return {"Version": "2012-10-17", "Statement": statements}


def _operator(key: str) -> str:
    return {"kms:GrantIsForAWSResource": "Bool", "s3:prefix": "StringLike",
            "cloudwatch:namespace": "StringLike"}.get(key, "StringEquals")


def concrete(resource: str) -> str:
    """A resource an actor would really touch for a template instance (`*` → an example name)."""
    return resource if resource == "*" else resource.replace("*", "x1")


@dataclass(frozen=True)
class Request:
    """One (action, resource, context) an actor performs, ready to evaluate or simulate."""

    need: Need
    resource: str
    context: tuple[tuple[str, str], ...]


def requests(actor: str, values: Mapping[str, Any], features: Iterable[str] = (),
             uses: Optional[Iterable[str]] = None) -> list[Request]:
    """Concrete requests for the actor's entries: each template instance with its wildcards filled in."""
    out = []
    for n in needs(actor, features, uses):
        ctx = tuple(sorted((k, concrete(v)) for k, v in _context(n, values).items()))
        for template in n.resources:
            for r in expand(template, values):
                out.append(Request(n, concrete(r), ctx))
    return out


def evaluate_actor(actor: str, policies: Sequence[Any], values: Mapping[str, Any], features: Iterable[str] = (),
                   uses: Optional[Iterable[str]] = None) -> list[tuple[Request, Any]]:
    """(request, decision) for every request of the actor under `policies` (cloudft.providers.aws.iam_eval)."""
    from .iam_eval import evaluate

    return [(r, evaluate(policies, r.need.action, r.resource, dict(r.context)))
            for r in requests(actor, values, features, uses)]
