"""Submit a plan: upload data by version, stage train_entry, build a ModelTrainer per stage, start it.

Single stage → one training job (`CreateTrainingJob` with the request ModelTrainer builds, under a
deterministic name). Several stages → a SageMaker pipeline (sagemaker-mlops) whose later steps take
the earlier step's adapter as the `init_adapter` channel.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from train_entry.config import is_remote

from ...errors import CloudftError
from . import naming
from .staging import (
    DOWNLOADS,
    LAUNCHER,
    launcher_module,
    stage_source_dir,
    tree_size,
    upload_if_missing,
)

if TYPE_CHECKING:
    from ...plan import Plan, StagePlan
    from .section import AwsSection
    from .wheelhouse import Fetch

log = logging.getLogger(__name__)

CONTAINER_DATA = "/opt/ml/input/data"
CHECKPOINT_DIR = "/opt/ml/checkpoints"
ACTIVE = {"InProgress", "Stopping", "Executing"}
MAX_COUNTER = 50


def dataset_uri(section: "AwsSection", version: str, filename: str) -> str:
    return section.s3("datasets", version, filename)


def secret_refs(secrets: dict[str, str]) -> dict[str, str]:
    """The spec's secrets as Secrets Manager references (env: refs would put a value in the job request).

    A reference is `arn:aws:secretsmanager:...:secret:NAME-AbCdEf` or `secretsmanager:NAME`, either optionally
    followed by `:json_key` (one key of a key/value secret); parsed by the launcher's own `parse_ref`."""
    launcher = launcher_module()
    refs = {}
    for name, ref in secrets.items():
        try:
            launcher.parse_ref(ref)
        except ValueError as exc:
            raise CloudftError(f"secret {name} ({ref.split(':')[0]}:...) cannot be passed to a SageMaker job: {exc}",
                               hint="store it in Secrets Manager and reference it as arn:aws:secretsmanager:... or "
                                    "secretsmanager:NAME (add :json_key for one key of a key/value secret)"
                               ) from None
        refs[name] = ref
    return refs


def secret_arns(secrets: dict[str, str]) -> list[str]:
    """The full Secrets Manager ARNs among the spec's references (json keys dropped), for IAM checks; a reference by
    name has no ARN before Secrets Manager resolves it."""
    launcher = launcher_module()
    return sorted({launcher.parse_ref(ref)[0] for ref in secrets.values()
                   if ref.startswith("arn:") and ":secretsmanager:" in ref})


def resource_config(plan: "Plan", section: "AwsSection") -> dict[str, Any]:
    """CreateTrainingJob's ResourceConfig for the plan's instance choice. No VolumeKmsKeyId on types with local NVMe
    storage: SageMaker refuses it there (botocore ResourceConfig.VolumeKmsKeyId); the instance store is encrypted
    by the instance's hardware module, and aws.kms_key_arn still encrypts S3 outputs and uploads."""
    from ...planner.catalog import has_local_storage

    c = plan.estimate.instance
    config: dict[str, Any] = {"InstanceType": c.type, "InstanceCount": c.count,
                              "VolumeSizeInGB": plan.spec.compute.volume_gb}
    if section.kms_key_arn and not has_local_storage(c.type):
        config["VolumeKmsKeyId"] = section.kms_key_arn
    return config


def stopping_condition(plan: "Plan", section: "AwsSection") -> dict[str, int]:
    """CreateTrainingJob's StoppingCondition: the runtime, and for spot the wait (default 2x runtime, at most 28 d)."""
    compute = plan.spec.compute
    condition = {"MaxRuntimeInSeconds": int(compute.max_runtime_hours * 3600)}
    if compute.spot:
        condition["MaxWaitTimeInSeconds"] = int((section.max_wait_hours or min(compute.max_runtime_hours * 2,
                                                                                28 * 24)) * 3600)
    return condition


def checkpoint_config(stage: "StagePlan") -> dict[str, str]:
    return {"S3Uri": stage.locations.checkpoint_uri, "LocalPath": CHECKPOINT_DIR}


def planned_request(plan: "Plan", section: "AwsSection", stage: "StagePlan") -> dict[str, Any]:
    """The parts of a stage's CreateTrainingJob request that cloudft decides (what preflight rules check)."""
    return {"ResourceConfig": resource_config(plan, section), "StoppingCondition": stopping_condition(plan, section),
            "EnableManagedSpotTraining": bool(plan.spec.compute.spot), "CheckpointConfig": checkpoint_config(stage)}


def training_image(section: "AwsSection", region: str, instance_type: str) -> str:
    """aws.image_uri, else the Hugging Face training DLC for aws.transformers_version from the SDK's image config."""
    if section.image_uri:
        return section.image_uri
    from sagemaker.core import image_uris

    from .images import HF_TRAINING_IMAGES

    image = HF_TRAINING_IMAGES[section.transformers_version]
    return image_uris.retrieve(framework="huggingface", region=region, version=section.transformers_version,
                               base_framework_version=image.base_framework_version, py_version=image.py_version,
                               instance_type=instance_type, image_scope="training")


def _not_found(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    err = exc.response.get("Error", {})
    message = err.get("Message", "").lower()
    return err.get("Code") in ("ResourceNotFound", "404") or any(
        m in message for m in ("not found", "could not find", "does not exist"))


@dataclass
class Submission:
    """What a submit did: the external id, its kind, and the stage → job/step layout."""

    kind: str  # "job" | "pipeline"
    external_id: str
    adopted: bool = False
    handle: dict[str, Any] = field(default_factory=dict)  # AwsHandle fields: jobs, pipeline, steps, output_uri


class Submitter:
    """Builds and starts the SageMaker work for one plan on one boto3 session."""

    def __init__(self, plan: "Plan", section: "AwsSection", boto, fetch: "Optional[Fetch]" = None):
        self.plan = plan
        self.fetch = fetch  # how the wheelhouse's wheels are fetched (default: pip download; wheelhouse.build)
        self._code: Optional[tuple[Optional[Path], list[str]]] = None
        self.section = section
        self.boto = boto
        self.rerun = plan.rerun
        self.compute = plan.estimate.instance  # the one instance choice (cloudft.planner.result.InstanceChoice)
        self.key = naming.run_key(plan)
        self.sm = boto.client("sagemaker")
        self.s3 = boto.client("s3")
        self._tmp = tempfile.TemporaryDirectory(prefix="cloudft-aws-")

    # -- pieces -------------------------------------------------------------------------------
    def image(self) -> str:
        return training_image(self.section, self.boto.region_name, self.compute.type)

    def code_extras(self) -> tuple[Optional[Path], list[str]]:
        """(the wheelhouse folder, what pip must still download at start) for the HF image; (None, []) for
        aws.image_uri, which holds train_entry's requirements itself (the launcher checks it at start)."""
        if self._code is None:
            self._code = (None, [])
            if not self.section.image_uri:
                from . import wheelhouse
                from .images import HF_TRAINING_IMAGES, check_image

                version = self.section.transformers_version
                self._code = (wheelhouse.build(HF_TRAINING_IMAGES[version], self.fetch),
                              check_image(version).downloads)
        return self._code

    def upload_data(self, stage: "StagePlan") -> list:
        """Dataset files → s3://bucket/prefix/datasets/<version>/<file> (skipped when present); the channels."""
        from sagemaker.core.training.configs import InputData

        rdata = self.plan.data[stage.index]
        channels = []
        for split in ("train", "validation"):
            uri = getattr(stage.locations, f"{split}_uri")
            if not uri:
                continue
            local = getattr(rdata, split)
            if local and not is_remote(local):
                upload_if_missing(self.s3, Path(local), uri, kms_key=self.section.kms_key_arn)
                source = uri.rsplit("/", 1)[0] + "/"  # the version's folder: one file in the channel
            else:
                source = uri  # already in S3: that object (or prefix) as it is
            channels.append(InputData(channel_name=split, data_source=source, content_type="application/jsonlines"))
        return channels

    def environment(self, stage: "StagePlan") -> dict[str, str]:
        env = {"PYTHONUNBUFFERED": "1", "CLOUDFT_RUN_ID": self.plan.run_id, "CLOUDFT_STAGE": str(stage.index)}
        refs = secret_refs(self.plan.spec.secrets)
        if refs:
            env["CLOUDFT_SECRET_REFS"] = json.dumps(refs, sort_keys=True)
        return env

    def tags(self) -> list:
        from sagemaker.core.shapes import Tag

        tags = {"cloudft:name": self.plan.spec.name, "cloudft:run-key": self.key, **self.section.tags}
        return [Tag(key=k, value=v) for k, v in tags.items()]

    def trainer(self, stage: "StagePlan", sm_session, job_name: str):
        """The ModelTrainer of one stage (spot, checkpoints, torchrun, networking, KMS, tags, secrets)."""
        from sagemaker.core.training.configs import (
            CheckpointConfig,
            Compute,
            Networking,
            OutputDataConfig,
            SourceCode,
            StoppingCondition,
        )
        from sagemaker.train import ModelTrainer
        from sagemaker.train.distributed import Torchrun

        from .session import sdk_role_check_off

        s, c = self.section, self.compute
        wheels, downloads = self.code_extras()
        code_dir = stage_source_dir(Path(self._tmp.name) / stage.name, stage.run_config, wheels, downloads)
        files, size = tree_size(code_dir)
        log.info("stage %s code channel: %d files, %.2f MiB (wheelhouse: %s; downloaded at start: %s)", stage.name,
                 files, size / 2**20, ", ".join(p.name for p in sorted(wheels.glob("*.whl"))) if wheels else "none",
                 ", ".join(downloads) or "nothing")
        req = planned_request(self.plan, s, stage)  # the parts preflight checked, used as checked
        rc, stop, cp = req["ResourceConfig"], req["StoppingCondition"], req["CheckpointConfig"]
        networking = None
        if s.subnets or s.security_group_ids or s.network_isolation or s.inter_container_encryption:
            networking = Networking(subnets=s.subnets or None, security_group_ids=s.security_group_ids or None,
                                    enable_network_isolation=s.network_isolation,
                                    enable_inter_container_traffic_encryption=s.inter_container_encryption)
        with sdk_role_check_off():  # cloudft checks the role itself (rolecheck.py says why)
            return ModelTrainer(
                training_image=self.image(),
                role=s.role_arn,
                sagemaker_session=sm_session,
                base_job_name=job_name,
                input_s3_key_prefix="code",  # under the session's default_bucket_prefix (aws.prefix)
                source_code=SourceCode(source_dir=str(code_dir), entry_script=LAUNCHER,
                                       requirements=DOWNLOADS if (code_dir / DOWNLOADS).exists()
                                       else None),
                compute=Compute(instance_type=rc["InstanceType"], instance_count=rc["InstanceCount"],
                                volume_size_in_gb=rc["VolumeSizeInGB"], volume_kms_key_id=rc.get("VolumeKmsKeyId"),
                                enable_managed_spot_training=req["EnableManagedSpotTraining"]),
                stopping_condition=StoppingCondition(max_runtime_in_seconds=stop["MaxRuntimeInSeconds"],
                                                     max_wait_time_in_seconds=stop.get("MaxWaitTimeInSeconds")),
                checkpoint_config=CheckpointConfig(s3_uri=cp["S3Uri"], local_path=cp["LocalPath"]),
                output_data_config=OutputDataConfig(s3_output_path=stage.locations.output_uri,
                                                    kms_key_id=s.kms_key_arn, compression_type="GZIP"),
                distributed=Torchrun(process_count_per_node=max(c.gpus, 1)) if c.distributed else None,
                environment=self.environment(stage),
                networking=networking,
                tags=self.tags(),
            )

    # -- roles ----------------------------------------------------------------------------------
    def role_values(self) -> tuple[dict[str, Any], set[str]]:
        """The permissions manifest's template values and features for this plan (cloudft.providers.aws.permissions)."""
        from .images import ecr_repository_arn

        s, region = self.section, self.boto.region_name
        arn = (s.role_arn or "arn:aws:iam::000000000000:role/unknown").split(":")
        values: dict[str, Any] = {
            "partition": arn[1], "account": arn[4], "region": region, "bucket": s.bucket, "prefix": s.prefix,
            "kms_key": s.kms_key_arn or "", "role": s.role_arn, "pipeline_role": s.pipeline_role_arn or s.role_arn,
            "repository": [r for r in [ecr_repository_arn(self.image())] if r],
            "secret": secret_arns(self.plan.spec.secrets), "subnet": list(s.subnets),
            "security_group": list(s.security_group_ids)}
        features = {f for f, on in (("kms", s.kms_key_arn), ("vpc", s.subnets), ("secrets", values["secret"]),
                                    ("ecr", values["repository"]), ("pipeline", self.plan.multi_stage)) if on}
        return values, features

    def verify_roles(self) -> None:
        """cloudft's own role check (rolecheck.py): the job role, and for a pipeline the pipeline role."""
        from .rolecheck import check_role

        iam = self.boto.client("iam")
        values, features = self.role_values()
        actors = [("job", self.section.role_arn)]
        if self.plan.multi_stage:
            actors.append(("pipeline", self.section.pipeline_role_arn or self.section.role_arn))
        for actor, arn in actors:
            check_role(iam, arn, actor, values, features).raise_if_refused()

    # -- single job -----------------------------------------------------------------------------
    def _job_state(self, name: str) -> Optional[str]:
        try:
            return self.sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
        except Exception as exc:  # noqa: BLE001 - only "not found" is expected
            if _not_found(exc):
                return None
            raise

    def pick_job_name(self) -> tuple[str, bool]:
        """First `cft-NAME-KEY-N` that is free, or an existing one to adopt (running, or done unless rerun)."""
        for n in range(1, MAX_COUNTER + 1):
            name = naming.job_name(self.plan.spec.name, self.key, n)
            state = self._job_state(name)
            if state is None:
                return name, False
            if state in ACTIVE or (state == "Completed" and not self.rerun):
                return name, True
        raise CloudftError(f"{MAX_COUNTER} earlier jobs of this exact spec and data exist",
                           hint="change the spec (e.g. its name) to start a fresh series")

    def submit_job(self) -> Submission:
        from botocore.exceptions import ClientError

        from .session import sagemaker_session

        stage = self.plan.stages[0]
        name, adopt = self.pick_job_name()
        meta = {"jobs": (name,), "output_uri": stage.locations.output_uri}
        if adopt:
            return Submission("job", name, adopted=True, handle=meta)
        self.verify_roles()
        channels = self.upload_data(stage)
        trainer = self.trainer(stage, sagemaker_session(self.section, self.boto), name)
        request = training_job_request(trainer, channels, name)
        try:
            self.sm.create_training_job(**request)
        except ClientError as exc:
            # A retried create whose first attempt went through answers "in use": that job is ours.
            if exc.response.get("Error", {}).get("Code") != "ResourceInUse":
                raise
            return Submission("job", name, adopted=True, handle=meta)
        return Submission("job", name, handle=meta)

    # -- pipeline -------------------------------------------------------------------------------
    def pipeline(self):
        """The SageMaker pipeline: one TrainingStep per stage, adapters flowing forward."""
        from sagemaker.core.training.configs import InputData

        from .session import import_pipeline_api, sagemaker_session

        Pipeline, TrainingStep = import_pipeline_api(self.boto.region_name)
        self.verify_roles()
        psess = sagemaker_session(self.section, self.boto, pipeline=True)
        steps: list = []
        for stage in self.plan.stages:
            channels = self.upload_data(stage)
            links = stage.links
            init_channel = "init_adapter" if links.init_kind == "adapter" else "init_model"
            for channel, src in ((init_channel, links.init_from), ("reward_model", links.reward_from)):
                if src is not None:
                    channels.append(InputData(channel_name=channel,
                                              data_source=steps[src].properties.ModelArtifacts.S3ModelArtifacts))
            trainer = self.trainer(stage, psess, f"cft-{stage.name}")
            steps.append(TrainingStep(name=f"stage{stage.name}",
                                      step_args=trainer.train(input_data_config=channels)))
        return Pipeline(name=naming.pipeline_name(self.plan.spec.name, self.key), steps=steps,
                        sagemaker_session=psess)

    def submit_pipeline(self) -> Submission:
        pipe = self.pipeline()
        meta = {"pipeline": pipe.name, "steps": tuple(s.name for s in pipe.steps),
                "output_uri": self.plan.stages[-1].locations.output_uri}
        pipe.upsert(role_arn=self.section.pipeline_role_arn or self.section.role_arn,
                     description=f"cloudft {self.plan.spec.name}: {' → '.join(s.method for s in self.plan.stages)}",
                     tags=[{"Key": t.key, "Value": t.value} for t in self.tags()])
        summaries = self.sm.list_pipeline_executions(PipelineName=pipe.name).get("PipelineExecutionSummaries", [])
        done = {s.get("PipelineExecutionDisplayName"): s for s in summaries}
        for n in range(1, MAX_COUNTER + 1):
            display = naming.job_name(self.plan.spec.name, self.key, n)
            seen = done.get(display)
            if seen is None:
                break
            status = seen.get("PipelineExecutionStatus")
            if status in ACTIVE or (status == "Succeeded" and not self.rerun):
                return Submission("pipeline", seen["PipelineExecutionArn"], adopted=True, handle=meta)
        resp = self.sm.start_pipeline_execution(PipelineName=pipe.name, PipelineExecutionDisplayName=display,
                                                ClientRequestToken=naming.request_token(display))
        return Submission("pipeline", resp["PipelineExecutionArn"], handle=meta)

    def submit(self) -> Submission:
        try:
            return self.submit_pipeline() if self.plan.multi_stage else self.submit_job()
        finally:
            self._tmp.cleanup()


#: The sagemaker-train releases whose private `ModelTrainer._create_training_job_args(input_data_config, boto3)`
#: cloudft calls to get the request ModelTrainer builds (the public `train()` names jobs with a timestamp, which
#: would break idempotent names). pyproject pins the same range; tests/test_aws_sdk_contract.py tests the contract.
SDK_TESTED = ">=1.27,<1.28"


def training_job_request(trainer, channels: list, name: str) -> dict[str, Any]:
    """The CreateTrainingJob request ModelTrainer builds, under cloudft's deterministic name; refuses an SDK whose
    private request builder changed shape instead of sending a half-built request."""
    import inspect

    from .dryrun import validate_request

    build = getattr(type(trainer), "_create_training_job_args", None)
    params = set(inspect.signature(build).parameters) if build else set()
    if not {"input_data_config", "boto3"} <= params:
        raise CloudftError("this sagemaker-train has no ModelTrainer._create_training_job_args(input_data_config, "
                           "boto3), which cloudft uses to build the training job request",
                           hint=f"install a tested release: pip install 'sagemaker-train{SDK_TESTED}'")
    request = build(trainer, input_data_config=channels, boto3=True)
    if not isinstance(request, dict) or "AlgorithmSpecification" not in request:
        raise CloudftError("sagemaker-train's ModelTrainer built no CreateTrainingJob request",
                           hint=f"install a tested release: pip install 'sagemaker-train{SDK_TESTED}'")
    request["TrainingJobName"] = name
    validate_request("sagemaker", "CreateTrainingJob", request)
    return request
