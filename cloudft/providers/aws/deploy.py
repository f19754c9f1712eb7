"""Serve an adapter on a SageMaker real-time endpoint: the Hugging Face vLLM image with LoRA enabled.

Path chosen (see docs/aws.md): one Model whose container is the HF vLLM DLC, the base model pulled by
vLLM (`SM_VLLM_MODEL`), and the adapter archive (the training job's model.tar.gz, adapter files at its
root) unpacked at /opt/ml/model and registered as the LoRA module `adapter`. Requests name it in the
OpenAI-style body (`"model": "adapter"`). Model / EndpointConfig / Endpoint are plain SageMaker
resources: no merged full-weight copy per fine-tune, no TGI (maintenance mode).
"""

from __future__ import annotations

import json
from typing import Any, Optional

from . import naming

ADAPTER_NAME = "adapter"
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
VARIANT = "AllTraffic"


def serving_image(region: str, instance_type: str) -> str:
    from sagemaker.core import image_uris

    return image_uris.retrieve("huggingface-vllm", region, image_scope="inference", instance_type=instance_type)


def lora_rank_cap(rank: int) -> int:
    """vLLM's --max-lora-rank must be one of its supported values and at least the adapter's rank."""
    return next((r for r in LORA_RANKS if r >= rank), LORA_RANKS[-1])


def container_env(base_model: str, rank: int) -> dict[str, str]:
    return {
        "SM_VLLM_MODEL": base_model,
        "SM_VLLM_ENABLE_LORA": "true",
        "SM_VLLM_LORA_MODULES": f"{ADAPTER_NAME}=/opt/ml/model",
        "SM_VLLM_MAX_LORA_RANK": str(lora_rank_cap(rank)),
        "SM_VLLM_MAX_LORAS": "1",
        "SM_VLLM_HOST": "0.0.0.0",
    }


def names(endpoint: str) -> tuple[str, str]:
    """(model name, endpoint config name) belonging to an endpoint."""
    return f"{endpoint[:57]}-model", f"{endpoint[:56]}-config"


def default_endpoint_name(run_id: str) -> str:
    return naming.clean(f"cft-{run_id}")[:63].rstrip("-")


def deploy(sm, *, endpoint: str, model_uri: str, base_model: str, rank: int, role_arn: str,
           instance_type: str, image: str, kms_key: Optional[str] = None,
           tags: Optional[dict[str, str]] = None, wait: bool = True) -> dict[str, Any]:
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
           PrimaryContainer={"Image": image, "ModelDataUrl": model_uri,
                             "Environment": container_env(base_model, rank)})
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


def invoke(runtime, endpoint: str, prompt: str, max_new_tokens: int = 128) -> str:
    """OpenAI-style completion against the adapter; returns the generated text."""
    body = {"model": ADAPTER_NAME, "prompt": prompt, "max_tokens": max_new_tokens}
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
