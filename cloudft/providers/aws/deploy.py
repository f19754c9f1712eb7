"""Serve a run on a SageMaker real-time endpoint: the Hugging Face vLLM image.

Path chosen (see docs/aws.md): one Model whose container is the HF vLLM DLC, the training job's model.tar.gz
unpacked at /opt/ml/model. What it serves is decided by cloudft.serving.compat before anything is created: an
adapter vLLM can load is the LoRA module `adapter` on the base model vLLM pulls (`SM_VLLM_MODEL`); one it cannot
(DoRA, modules_to_save, rank > 512, non-linear targets) is served as the merged weights the job wrote
(export.merge, /opt/ml/model/merged) or refused; full fine-tuning serves the weights. Requests name `adapter`
in the OpenAI-style body either way. Model / EndpointConfig / Endpoint are plain SageMaker resources; no TGI
(maintenance mode).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional

from ...serving.compat import Served, ServeDecision, decide, sagemaker_env, serve_target, vllm_flags
from . import naming

if TYPE_CHECKING:
    from ...spec import ServeConfig

ADAPTER_NAME = "adapter"
MODEL_DIR = "/opt/ml/model"
VARIANT = "AllTraffic"


def serving_image(region: str, instance_type: str) -> str:
    from sagemaker.core import image_uris

    return image_uris.retrieve("huggingface-vllm", region, image_scope="inference", instance_type=instance_type)


def serving_env(decision: ServeDecision, served: Served, limits: "ServeConfig", base_model: str) -> dict[str, str]:
    """The vLLM container's environment for `decision`: the same vLLM settings a local vLLM server gets
    (cloudft.serving.compat.vllm_flags), as SM_VLLM_* variables, listening on all interfaces for the health check."""
    if decision.mode == "adapter":
        flags = vllm_flags(decision, served, limits, model=base_model, name=ADAPTER_NAME, adapter=MODEL_DIR)
    else:
        weights = f"{MODEL_DIR}/merged" if decision.mode == "merged" else MODEL_DIR
        flags = vllm_flags(decision, served, limits, model=weights, name=ADAPTER_NAME)
    return {**sagemaker_env(flags), "SM_VLLM_HOST": "0.0.0.0"}


def container_env(base_model: str, rank: int) -> dict[str, str]:
    """The environment for a plain LoRA adapter of `rank` on `base_model` (infra's serving stack uses it)."""
    from train_entry.config import PeftConfig

    from ...spec import ServeConfig

    served = Served(artifact="adapter", peft=PeftConfig(type="lora", r=rank))
    return serving_env(decide(serve_target("aws"), served), served, ServeConfig(), base_model)


def names(endpoint: str) -> tuple[str, str]:
    """(model name, endpoint config name) belonging to an endpoint."""
    return f"{endpoint[:57]}-model", f"{endpoint[:56]}-config"


def default_endpoint_name(run_id: str) -> str:
    return naming.clean(f"cft-{run_id}")[:63].rstrip("-")


def deploy(sm, *, endpoint: str, model_uri: str, env: dict[str, str], role_arn: str, instance_type: str,
           image: str, kms_key: Optional[str] = None, tags: Optional[dict[str, str]] = None,
           wait: bool = True) -> dict[str, Any]:
    """Create model, endpoint config and endpoint (each skipped when it exists); wait for InService."""
    from botocore.exceptions import ClientError

    model_name, config_name = names(endpoint)
    tag_list = [{"Key": k, "Value": v} for k, v in (tags or {}).items()]

    def create(call, **kwargs):
        try:
            call(**kwargs)
        except ClientError as exc:
            msg = exc.response.get("Error", {}).get("Message", "")
            if "already exist" not in msg.lower():
                raise

    create(sm.create_model, ModelName=model_name, ExecutionRoleArn=role_arn, Tags=tag_list,
           PrimaryContainer={"Image": image, "ModelDataUrl": model_uri, "Environment": env})
    variant = {"VariantName": VARIANT, "ModelName": model_name, "InstanceType": instance_type,
               "InitialInstanceCount": 1, "ContainerStartupHealthCheckTimeoutInSeconds": 900,
               "ModelDataDownloadTimeoutInSeconds": 900}
    config: dict[str, Any] = {"EndpointConfigName": config_name, "ProductionVariants": [variant], "Tags": tag_list}
    if kms_key:
        config["KmsKeyId"] = kms_key
    create(sm.create_endpoint_config, **config)
    create(sm.create_endpoint, EndpointName=endpoint, EndpointConfigName=config_name, Tags=tag_list)
    if wait:
        sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint,
                                                  WaiterConfig={"Delay": 30, "MaxAttempts": 60})
    status = sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"]
    return {"endpoint": endpoint, "status": status, "model": model_name, "endpoint_config": config_name,
            "image": image, "adapter": model_uri, "instance_type": instance_type}


def base_model_of(sm, endpoint: str) -> str:
    """The base model an endpoint's vLLM container serves beside the adapter (its SM_VLLM_MODEL)."""
    from ...errors import CloudftError

    config = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    variant = sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]
    env = sm.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"].get("Environment", {})
    if env.get("SM_VLLM_ENABLE_LORA") != "true":
        raise CloudftError(f"endpoint '{endpoint}' serves merged or full weights: there is no bare base to ask")
    return env["SM_VLLM_MODEL"]


def invoke(runtime, endpoint: str, prompt: str, max_new_tokens: int = 128, model: str = ADAPTER_NAME) -> str:
    """Greedy OpenAI-style completion against `model` (the adapter by default); returns the generated text."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_new_tokens, "temperature": 0}
    resp = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                   Accept="application/json", Body=json.dumps(body))
    raw = resp["Body"].read().decode("utf-8", errors="replace")
    return completion_text(raw)


def completion_text(raw: str) -> str:
    """The text of a completions / chat / TGI-style answer (the raw body when it is none of those)."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        choices = data.get("choices")
        if choices:
            first = choices[0]
            return first.get("text") or (first.get("message") or {}).get("content") or ""
        if "generated_text" in data:
            return data["generated_text"]
    return raw


def undeploy(sm, endpoint: str) -> list[str]:
    """Delete the endpoint, its config and the config's models; returns what was deleted."""
    from botocore.exceptions import ClientError

    removed: list[str] = []
    model_names: list[str] = []
    config_name = names(endpoint)[1]
    try:
        config_name = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        sm.delete_endpoint(EndpointName=endpoint)
        removed.append(f"endpoint {endpoint}")
    except ClientError:
        pass
    try:
        cfg = sm.describe_endpoint_config(EndpointConfigName=config_name)
        model_names = [v["ModelName"] for v in cfg.get("ProductionVariants", []) if v.get("ModelName")]
        sm.delete_endpoint_config(EndpointConfigName=config_name)
        removed.append(f"endpoint config {config_name}")
    except ClientError:
        model_names = [names(endpoint)[0]]
    for name in model_names:
        try:
            sm.delete_model(ModelName=name)
            removed.append(f"model {name}")
        except ClientError:
            pass
    return removed
