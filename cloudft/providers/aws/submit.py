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

from ...errors import CloudftError
from . import naming
from .staging import LAUNCHER, stage_source_dir, upload_if_missing

if TYPE_CHECKING:
    from ...plan import Plan, StagePlan
    from .section import AwsSection

log = logging.getLogger(__name__)

CONTAINER_DATA = "/opt/ml/input/data"
ACTIVE = {"InProgress", "Stopping", "Executing"}
MAX_COUNTER = 50


def dataset_uri(section: "AwsSection", version: str, filename: str) -> str:
    return section.s3("datasets", version, filename)


def secret_refs(secrets: dict[str, str]) -> dict[str, str]:
    """The spec's secrets as Secrets Manager references (env: refs would put a value in the job request)."""
    refs = {}
    for name, ref in secrets.items():
        if ref.startswith(("arn:aws:secretsmanager:", "secretsmanager:")):
            refs[name] = ref
        else:
            raise CloudftError(f"secret {name} ({ref.split(':')[0]}:...) cannot be passed to a SageMaker job",
                               hint="store it in Secrets Manager and reference it as arn:aws:secretsmanager:... "
                                    "or secretsmanager:NAME")
    return refs


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

    def __init__(self, plan: "Plan", section: "AwsSection", boto):
        self.plan = plan
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
        if self.section.image_uri:
            return self.section.image_uri
        from sagemaker.core import image_uris

        from .section import HF_TRAINING_VERSIONS

        base, py = HF_TRAINING_VERSIONS[self.section.transformers_version]
        return image_uris.retrieve(framework="huggingface", region=self.boto.region_name,
                                   version=self.section.transformers_version, base_framework_version=base,
                                   py_version=py, instance_type=self.compute.type,
                                   image_scope="training")

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
            if local and "://" not in local:
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
        from sagemaker.core.training.configs import (CheckpointConfig, Compute, Networking, OutputDataConfig,
                                                     SourceCode, StoppingCondition)
        from sagemaker.train import ModelTrainer
        from sagemaker.train.distributed import Torchrun

        s, spec, c = self.section, self.plan.spec, self.compute
        code_dir = stage_source_dir(Path(self._tmp.name) / stage.name, stage.run_config,
                                    with_requirements=not s.image_uri)
        runtime = int(spec.compute.max_runtime_hours * 3600)
        stopping = StoppingCondition(max_runtime_in_seconds=runtime)
        if spec.compute.spot:
            wait = int((s.max_wait_hours or min(spec.compute.max_runtime_hours * 2, 28 * 24)) * 3600)
            if wait <= runtime:
                raise CloudftError(f"aws.max_wait_hours ({wait / 3600:g}) must be more than "
                                   f"compute.max_runtime_hours ({runtime / 3600:g}) for spot training",
                                   hint="raise aws.max_wait_hours or lower compute.max_runtime_hours")
            stopping = StoppingCondition(max_runtime_in_seconds=runtime, max_wait_time_in_seconds=wait)
        networking = None
        if s.subnets or s.security_group_ids or s.network_isolation or s.inter_container_encryption:
            networking = Networking(subnets=s.subnets or None, security_group_ids=s.security_group_ids or None,
                                    enable_network_isolation=s.network_isolation,
                                    enable_inter_container_traffic_encryption=s.inter_container_encryption)
        return ModelTrainer(
            training_image=self.image(),
            role=s.role_arn,
            sagemaker_session=sm_session,
            base_job_name=job_name,
            input_s3_key_prefix="code",  # under the session's default_bucket_prefix (aws.prefix)
            source_code=SourceCode(source_dir=str(code_dir), entry_script=LAUNCHER,
                                   requirements="requirements.txt" if (code_dir / "requirements.txt").exists()
                                   else None),
            compute=Compute(instance_type=c.type, instance_count=c.count,
                            volume_size_in_gb=spec.compute.volume_gb, volume_kms_key_id=s.kms_key_arn,
                            enable_managed_spot_training=spec.compute.spot),
            stopping_condition=stopping,
            checkpoint_config=CheckpointConfig(s3_uri=stage.locations.checkpoint_uri,
                                               local_path="/opt/ml/checkpoints"),
            output_data_config=OutputDataConfig(s3_output_path=stage.locations.output_uri,
                                                kms_key_id=s.kms_key_arn, compression_type="GZIP"),
            distributed=Torchrun(process_count_per_node=max(c.gpus, 1)) if c.distributed else None,
            environment=self.environment(stage),
            networking=networking,
            tags=self.tags(),
        )

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
        channels = self.upload_data(stage)
        trainer = self.trainer(stage, sagemaker_session(self.section, self.boto), name)
        request = trainer._create_training_job_args(input_data_config=channels, boto3=True)
        request["TrainingJobName"] = name
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
        pipe.upsert(role_arn=self.section.role_arn,
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
