"""Plan → Azure ML entities (data assets, environment, command job, pipeline job). No network here.

Every entity is built with the azure-ai-ml SDK (imported lazily) so the SDK's own schema validates it and
`dump()` writes YAML that `az ml ... create --file` and `load_job`/`load_*` accept.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from train_entry.config import is_remote

from ...errors import CloudftError
from ...paths import templates_dir, train_entry_dir
from .runtime import torch_requirements
from .section import AzureSection

if TYPE_CHECKING:
    from azure.ai.ml.entities import Data, Environment, Job

    from ...data.resolve import ResolvedData
    from ...plan import Plan, StagePlan
    from ...spec import JobSpec
    from ...stages import StageContext, StageLocations

RUN_DIR = "cloudft_run"  # folder inside the code snapshot holding the run configs
LAUNCHER = "cloudft_launch.py"  # resolves Key Vault secrets, then runs train_entry
TEMPLATES = templates_dir() / "azure"
EXTRA_PIP = ("azureml-mlflow", "mlflow-skinny", "azure-identity")  # native MLflow tracking, Key Vault access
SERVERLESS = "serverless"
FALLBACK_PIP = ("transformers", "peft", "trl", "datasets", "accelerate", "safetensors")

AZURE_STATUS = {  # Azure ML job status → registry status
    "NotStarted": "starting", "Queued": "queued", "Preparing": "starting", "Provisioning": "starting",
    "Starting": "starting", "Running": "running", "Finalizing": "running", "CancelRequested": "stopping",
    "Completed": "completed", "Failed": "failed", "Canceled": "stopped", "NotResponding": "failed",
    "Paused": "queued", "Unknown": "running",
}


def short_hash(*parts: str | bytes, n: int = 16) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:n]


# -- locations ---------------------------------------------------------------------------------------

def datastore_uri(section: AzureSection, run_id: str, key: str, what: str) -> str:
    """Deterministic datastore folder of a run's stage output."""
    return f"azureml://datastores/{section.datastore}/paths/cloudft/{run_id}/{key}/{what}/"


def checkpoint_uri(spec: "JobSpec", section: AzureSection, stage: "StageContext") -> str:
    """Checkpoints are keyed by the stage's work, not the run: a resubmit of the same spec and data (or a
    preempted low-priority job's restart) resumes from them; `--rerun` gives a new work key."""
    return f"azureml://datastores/{section.datastore}/paths/cloudft/checkpoints/{spec.name}/{stage.index}-{stage.work_key}/"


@dataclass
class AssetRef:
    """A data asset cloudft registers (or a remote input used as is when `local` is None)."""

    split: str
    uri: str  # what the job input points at: azureml:NAME:VERSION or a remote URI
    name: Optional[str] = None
    version: Optional[str] = None
    local: Optional[str] = None
    type: str = "uri_file"


def data_assets(spec: "JobSpec", method: str, data: "ResolvedData") -> list[AssetRef]:
    """The data assets of one stage: local canonical files become `NAME:VERSION` (VERSION = content hash)."""
    refs = []
    for split in ("train", "validation"):
        value = getattr(data, split)
        if not value:
            continue
        if is_remote(value):
            kind = "uri_folder" if value.endswith("/") else "uri_file"
            refs.append(AssetRef(split, value, type=kind))
            continue
        path = Path(value)
        version = data.versions.get(split)
        if not version:
            version = short_hash(path.read_bytes()) if path.is_file() else short_hash(str(path))
        name = f"{spec.name}-{method}-{split}"
        kind = "uri_folder" if path.is_dir() else "uri_file"
        refs.append(AssetRef(split, f"azureml:{name}:{version[:16]}", name, version[:16], str(path), kind))
    return refs


def stage_locations(spec: "JobSpec", section: AzureSection, run_id: str, stage: "StageContext") -> "StageLocations":
    from ...stages import StageLocations

    loc = {ref.split: ref.uri for ref in data_assets(spec, stage.method, stage.data)}
    links = stage.links
    if links.init_kind is not None:
        channel = "init_adapter" if links.init_kind == "adapter" else "init_model"
        loc[channel] = datastore_uri(section, run_id, stage.names[links.init_from], "adapter")
    if links.reward_from is not None:
        loc["reward_model"] = datastore_uri(section, run_id, stage.names[links.reward_from], "adapter")
    return StageLocations(output_dir=datastore_uri(section, run_id, stage.name, "adapter"),
                          checkpoint_dir=checkpoint_uri(spec, section, stage), **loc)


# -- compute -----------------------------------------------------------------------------------------

@dataclass
class ComputeChoice:
    """The plan's instance choice as Azure ML takes it: a cluster, or serverless with an instance type."""

    compute: Optional[str]  # cluster name, None for serverless
    instance_type: Optional[str]
    instance_count: int
    gpus_per_node: int
    spot: bool
    job_tier: Optional[str] = None
    priority: Optional[str] = None


def choose_compute(plan: "Plan", section: AzureSection) -> ComputeChoice:
    """The plan's one instance choice (cloudft.planner.result.InstanceChoice) on a cluster or serverless."""
    choice = plan.estimate.instance
    if section.serverless and not choice.type:
        raise CloudftError(
            "azure: serverless compute needs an instance type",
            hint="set compute.instance_type (e.g. Standard_NC24ads_A100_v4) or azure.compute to a cluster name",
        )
    tier = section.job_tier or ("Spot" if plan.spec.compute.spot else None)
    if not section.serverless:
        tier = None  # a cluster's own tier (dedicated / low_priority) decides; set by the infra stack
    return ComputeChoice(
        compute=None if section.serverless else section.compute,
        instance_type=choice.type if section.serverless else None,
        instance_count=choice.count, gpus_per_node=max(choice.gpus, 1), spot=plan.spec.compute.spot, job_tier=tier,
        priority=section.priority,
    )


# -- environment -------------------------------------------------------------------------------------

def pip_requirements() -> list[str]:
    """train_entry's requirements (with the report's extras) plus what Azure ML tracking and Key Vault need."""
    files = [train_entry_dir() / name for name in ("requirements.txt", "requirements-report.txt")]
    lines = FALLBACK_PIP
    if files[0].is_file():
        lines = tuple(ln.split("#")[0].strip() for f in files if f.is_file() for ln in f.read_text().splitlines())
    out = [ln for ln in lines if ln and not ln.startswith("-")]
    out += [p for p in EXTRA_PIP if p not in out]
    return out


def conda_spec(pip: list[str]) -> dict[str, Any]:
    return {"name": "cloudft", "channels": ["conda-forge"],
            "dependencies": ["python=3.11", "pip", {"pip": pip}]}


def build_context(dest: Path) -> Path:
    """train_entry/Dockerfile's build context as the Dockerfile expects it (the repository layout: `train_entry/`
    beside the Dockerfile), plus a layer with what cloudft turns on in Azure ML: MLflow tracking and azure-identity
    for the Key Vault launcher. The image's ENTRYPOINT (train_entry, for SageMaker) is cleared: Azure ML runs the
    job's command."""
    src = train_entry_dir()
    if not (src / "Dockerfile").is_file():
        raise CloudftError(f"{src / 'Dockerfile'} does not exist", hint="set azure.environment.image or base_image "
                                                                      "instead")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest / "train_entry", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".cache"))
    dockerfile = (src / "Dockerfile").read_text().rstrip("\n")
    (dest / "Dockerfile").write_text(
        f"{dockerfile}\n\n# cloudft on Azure ML: MLflow tracking and the Key Vault launcher's azure-identity\n"
        f"RUN pip install --no-cache-dir {' '.join(EXTRA_PIP)}\nENTRYPOINT []\nCMD []\n")
    return dest


def training_environment(section: AzureSection, staging: Optional[Path] = None) -> "Optional[Environment]":
    """The train_entry Environment, versioned by content (same content → same version → built once).

    None when the spec names an existing environment (`environment.reference`). The conda form pins torch to
    train_entry's image version, built for the base image's CUDA (cloudft.providers.azure.runtime).
    """
    from azure.ai.ml.entities import BuildContext, Environment

    env = section.environment
    if env.reference:
        return None
    desc = "cloudft train_entry runtime"
    if env.image:
        return Environment(name=env.name, version=short_hash("image", env.image), image=env.image, description=desc)
    if env.build:
        import tempfile

        ctx = build_context(Path(staging) if staging else Path(tempfile.mkdtemp(prefix="cloudft-build-")))
        files = sorted(p for p in ctx.rglob("*") if p.is_file())
        version = short_hash("build", *(str(p.relative_to(ctx)).encode() + p.read_bytes() for p in files))
        return Environment(name=env.name, version=version, description=desc,
                           build=BuildContext(path=str(ctx), dockerfile_path="Dockerfile"))
    conda = conda_spec(torch_requirements(env.base_image) + pip_requirements())
    version = short_hash("conda", env.base_image, json.dumps(conda, sort_keys=True))
    return Environment(name=env.name, version=version, image=env.base_image, conda_file=conda, description=desc)


def environment_ref(section: AzureSection, env: "Optional[Environment]") -> str:
    return section.environment.reference or f"azureml:{env.name}:{env.version}"


# -- code snapshot -----------------------------------------------------------------------------------

def job_tracking(tracking: Any, section: AzureSection) -> Any:
    """Azure ML's native MLflow tracking, turned on only where the environment holds mlflow (a prebuilt image
    that does not declare it would fail at Trainer start); a spec's own MLflow settings are kept."""
    if tracking.mlflow or tracking.mlflow_tracking_uri or "mlflow" not in section.environment.packages():
        return tracking
    return tracking.model_copy(update={"mlflow": True})


def stage_code(plan: "Plan", section: AzureSection, dest: Path) -> Path:
    """Write the code snapshot: a copy of train_entry, one run config per stage, the secrets launcher."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(train_entry_dir(), dest / "train_entry",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests", ".cache"))
    for st in plan.stages:
        rc = st.run_config.model_copy(update={"tracking": job_tracking(st.run_config.tracking, section)})
        rc.write(dest / RUN_DIR / f"stage{st.index}.json")
    if plan.spec.secrets:
        shutil.copy(TEMPLATES / "cloudft_keyvault.py", dest / "cloudft_keyvault.py")
        shutil.copy(TEMPLATES / LAUNCHER, dest / LAUNCHER)
    (dest / ".amlignore").write_text("__pycache__/\n*.pyc\n")
    return dest


# -- jobs --------------------------------------------------------------------------------------------

def stage_command(st: "StagePlan", has_secrets: bool) -> str:
    """train_entry's command line; Azure ML substitutes the ${{...}} with mounted folders."""
    parts = ["python", "-m", "train_entry", "--config", f"{RUN_DIR}/stage{st.index}.json"]
    for key, flag in (("train", "--train"), ("validation", "--validation"), ("init_adapter", "--init-adapter"),
                      ("init_model", "--init-model"), ("reward_model", "--reward-model")):
        if getattr(st.locations, key):
            parts += [flag, "${{inputs.%s}}" % key]
    parts += ["--output-dir", "${{outputs.adapter}}", "--checkpoint-dir", "${{outputs.checkpoints}}"]
    if has_secrets:
        parts = ["python", LAUNCHER] + parts
    return " ".join(parts)


def secret_env(spec: "JobSpec", section: AzureSection) -> dict[str, str]:
    """Env vars naming (never holding) the secrets the launcher fetches from Key Vault at run time."""
    if not spec.secrets:
        return {}
    names = {env: ref.split(":", 1)[1] for env, ref in spec.secrets.items()}
    return {"CLOUDFT_KEY_VAULT": section.key_vault or "",
            "CLOUDFT_SECRETS": ",".join(f"{k}={v}" for k, v in sorted(names.items()))}


def identity_env(spec: "JobSpec", section: AzureSection) -> dict[str, str]:
    """AZURE_CLIENT_ID for a job running as a user-assigned identity: azure-identity's DefaultAzureCredential (the
    Key Vault launcher, MLflow) then asks for that identity's tokens, not a system-assigned one."""
    if identity_kind(spec, section) == "managed" and section.identity_client_id:
        return {"AZURE_CLIENT_ID": section.identity_client_id}
    return {}


def identity_kind(spec: "JobSpec", section: AzureSection) -> Optional[str]:
    """The job identity: as the spec says; else the user-assigned identity when its client id is known (the one
    the stack grants storage, registry and Key Vault); else managed when secrets need it; else the platform's."""
    if section.identity:
        return section.identity
    return "managed" if (section.identity_client_id or spec.secrets) else None


def identity(spec: "JobSpec", section: AzureSection):
    from azure.ai.ml.entities import (
        AmlTokenConfiguration,
        ManagedIdentityConfiguration,
        UserIdentityConfiguration,
    )

    kind = identity_kind(spec, section)
    if kind == "managed":
        return ManagedIdentityConfiguration(client_id=section.identity_client_id)
    if kind == "user":
        return UserIdentityConfiguration()
    if kind == "aml_token":
        return AmlTokenConfiguration()
    return None


@dataclass
class Build:
    """Everything one submit creates, in creation order."""

    job: "Job"
    environment: "Optional[Environment]"
    data: list["Data"] = field(default_factory=list)
    code_dir: Optional[Path] = None
    compute: Optional[ComputeChoice] = None


def _asset_input(ref: AssetRef):
    from azure.ai.ml import Input

    return Input(type=ref.type, path=ref.uri, mode="ro_mount")


def _folder_input(uri: str):
    from azure.ai.ml import Input

    return Input(type="uri_folder", path=uri, mode="ro_mount")


def _stage_inputs(plan: "Plan", st: "StagePlan") -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for ref in data_assets(plan.spec, st.method, plan.data[st.index]):
        inputs[ref.split] = _asset_input(ref)
    for key in ("init_adapter", "init_model", "reward_model"):
        if getattr(st.locations, key):
            inputs[key] = _folder_input(getattr(st.locations, key))
    return inputs


def _stage_outputs(st: "StagePlan") -> dict[str, Any]:
    from azure.ai.ml import Output

    return {"adapter": Output(type="uri_folder", path=st.locations.output_dir, mode="rw_mount"),
            "checkpoints": Output(type="uri_folder", path=st.locations.checkpoint_dir, mode="rw_mount")}


def _stage_job(plan: "Plan", st: "StagePlan", section: AzureSection, env: str, choice: ComputeChoice,
               code: Path, inputs: dict[str, Any]):
    from azure.ai.ml import PyTorchDistribution, command

    spec = plan.spec
    kwargs: dict[str, Any] = {}
    if choice.job_tier or choice.priority:
        kwargs["queue_settings"] = {k: v for k, v in (("job_tier", choice.job_tier), ("priority", choice.priority)) if v}
    ident = identity(spec, section)
    if ident is not None:
        kwargs["identity"] = ident
    envvars = {"CLOUDFT_PROVIDER": "azure", "CLOUDFT_RUN_ID": plan.run_id, "PYTHONUNBUFFERED": "1",
               **secret_env(spec, section), **identity_env(spec, section)}
    return command(
        name=None,
        display_name=f"{spec.name}-{st.name}",
        description=f"cloudft {st.method} stage {st.index} of {spec.name}",
        tags={"cloudft.run_id": plan.run_id, "cloudft.stage": str(st.index), "cloudft.method": st.method},
        command=stage_command(st, bool(spec.secrets)),
        code=str(code),
        environment=env,
        environment_variables=envvars,
        inputs=inputs,
        outputs=_stage_outputs(st),
        compute=choice.compute,
        instance_count=choice.instance_count,
        instance_type=choice.instance_type,
        shm_size=section.shm_size,
        distribution=PyTorchDistribution(process_count_per_instance=choice.gpus_per_node),
        timeout=int(spec.compute.max_runtime_hours * 3600),
        is_deterministic=False,
        **kwargs,
    )


def job_name(plan: "Plan") -> str:
    """Azure ML job names: letters, digits, '_' and '-'; unique per run."""
    return plan.run_id.replace(".", "-")[:255]


def build(plan: "Plan", section: AzureSection, code_dir: Path) -> Build:
    """The entities of one submit. Single stage → command job; several → pipeline job (one step per stage)."""
    from azure.ai.ml import Input, dsl

    spec = plan.spec
    choice = choose_compute(plan, section)
    env = training_environment(section, Path(code_dir).parent / "environment")
    env_ref = environment_ref(section, env)
    code = stage_code(plan, section, code_dir)
    assets: dict[tuple, Any] = {}
    for st in plan.stages:
        for ref in data_assets(spec, st.method, plan.data[st.index]):
            if ref.local and (ref.name, ref.version) not in assets:
                assets[(ref.name, ref.version)] = data_entity(ref, spec.name)
    experiment = section.experiment or spec.name
    tags = {"cloudft.run_id": plan.run_id, "cloudft.spec": spec.name}

    if not plan.multi_stage:
        st = plan.stages[0]
        job = _stage_job(plan, st, section, env_ref, choice, code, _stage_inputs(plan, st))
        job.name = job_name(plan)
        job.experiment_name = experiment
        job.display_name = plan.run_id
        job.tags = tags
        return Build(job=job, environment=env, data=list(assets.values()), code_dir=code, compute=choice)

    steps = {}
    for st in plan.stages:
        # inputs are declared as folders/files; the previous stage's adapter is wired in the pipeline below
        decl = {k: (Input(type=v.type) if hasattr(v, "type") else v) for k, v in _stage_inputs(plan, st).items()}
        steps[st.index] = _stage_job(plan, st, section, env_ref, choice, code, decl)

    @dsl.pipeline(name=spec.name, description=f"cloudft {' → '.join(s.method for s in plan.stages)} for {spec.name}")
    def cloudft_pipeline():
        nodes = {}
        for st in plan.stages:
            inputs = _stage_inputs(plan, st)
            links = st.links
            if links.init_from is not None:
                channel = "init_adapter" if links.init_kind == "adapter" else "init_model"
                inputs[channel] = nodes[links.init_from].outputs.adapter
            if links.reward_from is not None:
                inputs["reward_model"] = nodes[links.reward_from].outputs.adapter
            node = steps[st.index](**inputs)
            node.name = f"stage{st.index}_{st.method}"
            for out_name, out in _stage_outputs(st).items():
                node.outputs[out_name].path = out.path
                node.outputs[out_name].mode = out.mode
            nodes[st.index] = node
        last = nodes[plan.stages[-1].index]
        return {"adapter": last.outputs.adapter}

    job = cloudft_pipeline()
    job.name = job_name(plan)
    job.experiment_name = experiment
    job.display_name = plan.run_id
    job.tags = tags
    job.settings.default_compute = choice.compute or SERVERLESS  # the SDK's form; YAML: submit.write_yaml
    job.settings.force_rerun = True
    return Build(job=job, environment=env, data=list(assets.values()), code_dir=code, compute=choice)


def as_job(job: "Job") -> "Job":
    """The standalone job entity of a `command()` node (what `job.yml` holds); other jobs unchanged."""
    from azure.ai.ml.entities import Command

    return job._to_job() if isinstance(job, Command) else job


def data_entity(ref: AssetRef, spec_name: str) -> "Data":
    from azure.ai.ml.entities import Data

    return Data(name=ref.name, version=ref.version, type=ref.type, path=ref.local,
                description=f"cloudft {ref.split} data of {spec_name} (version = content hash)",
                tags={"cloudft.sha256": ref.version, "cloudft.split": ref.split})
