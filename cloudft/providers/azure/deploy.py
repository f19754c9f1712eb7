"""`cloudft deploy/invoke/undeploy` on Azure ML managed online endpoints.

Serving choice: **base + adapter**. The run's adapter output is registered as a model (no copy: its
datastore URI), and `templates/azure/score.py` loads the base model named in the adapter's config and
applies the adapter with PEFT (any PEFT type). Adapters stay small and one registered model per run is cheap;
when the run exported merged weights (`export.merge: true`) the script serves those instead. What cannot be
served (a reward model) is refused before any request (cloudft.serving.compat).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ...errors import CloudftError
from ...registry import Registry
from ...serving.compat import check_run
from .entities import TEMPLATES, conda_spec, short_hash
from .handle import AzureHandle
from .runtime import torch_requirements
from .section import AzureSection

if TYPE_CHECKING:
    from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint

    from ...registry import RunRecord

DEPLOYMENT = "cloudft"
#: torch comes pinned for the serving image's CUDA (runtime.torch_requirements), the same version as training
SERVE_PIP = ["azureml-inference-server-http", "transformers", "peft", "accelerate", "safetensors", "azure-identity"]


def endpoint_identity(section: AzureSection, secret_env: dict[str, str]):
    """The endpoint's identity: the user-assigned one the stack grants registry, storage and Key Vault access
    (azure.endpoint_identity_id). Without it Azure gives the endpoint a new system-assigned identity that nothing
    grants Key Vault access, so score.py's secret read would fail (403) and the deployment never turn healthy:
    refused when the run has secrets."""
    from azure.ai.ml.entities import IdentityConfiguration, ManagedIdentityConfiguration

    if section.endpoint_identity_id:
        if secret_env and not section.endpoint_identity_client_id:  # the docs' UAI sample names it for the script
            raise CloudftError("azure.endpoint_identity_client_id is not set: score.py could not ask for the "
                               "endpoint identity's Key Vault token", hint="set it (stack output of that name)")
        return IdentityConfiguration(type="user_assigned", user_assigned_identities=[
            ManagedIdentityConfiguration(resource_id=section.endpoint_identity_id)])
    if secret_env:
        raise CloudftError(
            "the run reads Key Vault secrets, but no endpoint identity is set: a new endpoint's system-assigned "
            "identity has no Key Vault access, so score.py would get 403 and the deployment never become healthy",
            hint="set azure.endpoint_identity_id and azure.endpoint_identity_client_id (stack outputs of the same "
                 "names; --stack NAME at submit) to a user-assigned identity with the roles in docs/azure.md")
    return None


def endpoint_name_for(run: "RunRecord", section: AzureSection, given: Optional[str]) -> str:
    """3-32 chars, starts with a letter, letters/digits/dashes; unique per run unless given."""
    name = given or section.endpoint_name
    if not name:
        digest = hashlib.sha256(run.run_id.encode()).hexdigest()[:6]
        name = f"{re.sub(r'[^a-z0-9-]', '-', run.name.lower())[:24].strip('-')}-{digest}"
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]", name):
        raise CloudftError(f"invalid endpoint name '{name}'",
                           hint="3-32 characters: a letter first, then letters, digits or dashes")
    return name


def serve_code() -> Path:
    """The scoring code folder: templates/azure (score.py, the Key Vault helper) plus cloudft's generation module
    as `cloudft_textgen.py`, the one the local server runs. Staged under CLOUDFT_HOME by content hash, so the same
    code is the same snapshot."""
    from ...paths import home
    from ...serving import textgen

    files = {p.name: p.read_bytes() for p in sorted(TEMPLATES.glob("*.py"))}
    files["cloudft_textgen.py"] = Path(textgen.__file__).read_bytes()
    digest = hashlib.sha256(b"".join(n.encode() + b"\0" + b + b"\0" for n, b in sorted(files.items()))).hexdigest()
    out = home() / "azure-serve-code" / digest[:16]
    if not out.is_dir():
        tmp = out.with_name(out.name + f".{os.getpid()}.partial")
        tmp.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        try:
            tmp.rename(out)
        except OSError:  # another deploy staged the same code meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def serve_entities(run: "RunRecord", section: AzureSection, endpoint: str, instance_type: Optional[str]
                   ) -> tuple["ManagedOnlineEndpoint", "ManagedOnlineDeployment"]:
    """The endpoint and its deployment (base + adapter), built offline."""
    from azure.ai.ml.entities import (CodeConfiguration, Environment, ManagedOnlineDeployment,
                                      ManagedOnlineEndpoint, Model, OnlineRequestSettings, ProbeSettings)

    dep = section.deploy
    handle = AzureHandle.model_validate(run.handle)
    sku = instance_type or dep.instance_type or handle.instance_type
    if not sku:
        raise CloudftError("no GPU SKU for the endpoint",
                           hint="pass --instance-type (e.g. Standard_NC24ads_A100_v4) or set azure.deploy.instance_type")
    outputs = handle.outputs
    if not outputs:
        raise CloudftError(f"run {run.run_id} has no recorded outputs to deploy")
    last_stage, adapter_uri = list(outputs.items())[-1]
    model = Model(name=f"cloudft-{run.run_id}"[:255], version="1", type="custom_model", path=adapter_uri,
                  description=f"cloudft adapter of {run.run_id} (stage {last_stage})",
                  tags={"cloudft.run_id": run.run_id, "cloudft.base_model": handle.base_model})
    from .preflight import endpoint_findings

    refused = [f for f in endpoint_findings(sku, handle.base_model) if f.severity == "error"]
    if refused:
        raise CloudftError("; ".join(f.message for f in refused), hint=refused[0].fix)
    ident = endpoint_identity(section, handle.secret_env)
    conda = conda_spec(torch_requirements(dep.image) + SERVE_PIP)
    env = Environment(name="cloudft-serve", version=short_hash("serve", dep.image, json.dumps(conda, sort_keys=True)),
                      image=dep.image, conda_file=conda, description="cloudft scoring runtime (base + adapter)")
    endpoint_ent = ManagedOnlineEndpoint(name=endpoint, auth_mode=dep.auth_mode, identity=ident,
                                         description=f"cloudft: {run.name}", tags={"cloudft.run_id": run.run_id})
    env_vars = {"CLOUDFT_BASE_MODEL": handle.base_model,  # score.py refuses requests over the spec's limits
                "CLOUDFT_MAX_NEW_TOKENS": str(handle.serve.max_new_tokens),
                "CLOUDFT_MAX_PROMPT_TOKENS": str(handle.serve.prompt_cap)}
    # names only: the scoring script fetches values from Key Vault, as the endpoint's identity (not the job's);
    # handles recorded before identity_env held the job's AZURE_CLIENT_ID in secret_env: never pass that one on
    env_vars.update({k: v for k, v in handle.secret_env.items() if k != "AZURE_CLIENT_ID"})
    if ident is not None and section.endpoint_identity_client_id:
        env_vars["AZURE_CLIENT_ID"] = section.endpoint_identity_client_id
    deployment = ManagedOnlineDeployment(
        name=DEPLOYMENT, endpoint_name=endpoint, model=model, environment=env,
        code_configuration=CodeConfiguration(code=str(serve_code()), scoring_script="score.py"),
        instance_type=sku, instance_count=dep.instance_count, environment_variables=env_vars,
        request_settings=OnlineRequestSettings(request_timeout_ms=dep.request_timeout_ms,
                                               max_concurrent_requests_per_instance=dep.max_concurrent_requests_per_instance),
        readiness_probe=ProbeSettings(initial_delay=dep.readiness_initial_delay_s, period=10, timeout=10,
                                      failure_threshold=30),
        liveness_probe=ProbeSettings(initial_delay=dep.readiness_initial_delay_s, period=10, timeout=10,
                                     failure_threshold=30),
    )
    return endpoint_ent, deployment


def deploy(ml: Any, run: "RunRecord", instance_type: Optional[str] = None, endpoint_name: Optional[str] = None,
           **_: Any) -> dict[str, Any]:
    """Create (or update) the endpoint and the deployment, send it all traffic, remember it on the run."""
    if run.status != "completed":
        raise CloudftError(f"run {run.run_id} is {run.status}; deploy a completed run",
                           hint=f"cloudft status {run.run_id}")
    handle = AzureHandle.model_validate(run.handle)
    decision, _ = check_run("azure", handle, run.run_id)  # refused here, before any request
    section = AzureSection.model_validate(handle.azure)
    name = endpoint_name_for(run, section, endpoint_name)
    endpoint, deployment = serve_entities(run, section, name, instance_type)
    adapter_uri = deployment.model.path
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    ml.online_deployments.begin_create_or_update(deployment).result()
    endpoint.traffic = {DEPLOYMENT: 100}
    created = ml.online_endpoints.begin_create_or_update(endpoint).result()
    Registry().update(run.run_id, meta={"endpoint": name})
    return {"endpoint": name, "deployment": DEPLOYMENT, "instance_type": deployment.instance_type,
            "scoring_uri": getattr(created, "scoring_uri", None), "model": adapter_uri, "mode": decision.mode,
            "serves": decision.summary(),
            "invoke": f"cloudft invoke {name} --provider azure --prompt '...'"}


def invoke(ml: Any, endpoint: str, prompt: str, max_new_tokens: int = 128, base: bool = False, **_: Any) -> str:
    """Send one greedy prompt through `online_endpoints.invoke` and return the generated text (`base`: ask the
    bare base model, score.py switching the adapter off)."""
    body: dict[str, Any] = {"prompt": prompt, "max_new_tokens": max_new_tokens}
    if base:
        body["adapter"] = False
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "request.json"
        req.write_text(json.dumps(body))
        raw = ml.online_endpoints.invoke(endpoint_name=endpoint, request_file=str(req))
    try:
        answer = json.loads(raw)
        if isinstance(answer, str):  # a deployment from before score.py returned an object: a JSON string
            answer = json.loads(answer)
    except (TypeError, ValueError):
        return str(raw)
    return answer.get("generated_text", json.dumps(answer)) if isinstance(answer, dict) else str(answer)


def undeploy(ml: Any, endpoint: str) -> None:
    """Delete the endpoint (and with it its deployments)."""
    ml.online_endpoints.begin_delete(name=endpoint).result()
    for rec in Registry().list(limit=500, provider="azure"):
        if rec.meta.get("endpoint") == endpoint:
            Registry().update(rec.run_id, meta={"endpoint": None})


def write_serving_yaml(endpoint: "ManagedOnlineEndpoint", deployment: "ManagedOnlineDeployment",
                       out: Path) -> list[Path]:
    """`endpoint.yml` / `deployment.yml` as `az ml online-endpoint|online-deployment create --file` take them."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, ent in (("endpoint", endpoint), ("deployment", deployment)):
        path = out / f"{name}.yml"
        path.write_text(yaml.safe_dump(json.loads(json.dumps(ent._to_dict())), sort_keys=False))
        paths.append(path)
    return paths
