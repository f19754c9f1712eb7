"""Azure provider through MLClient with a recording azure-core transport (no account): REST payloads of
submit, status, logs, stop and deploy; data asset versions are created once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from azure_fixtures import (API, DATASTORE, SUB, ArmStore, FakeCredential, RecordingTransport, route_blob_storage,
                            workspace)

from cloudft.plan import build_plan
from cloudft.providers.azure import AzureProvider
from cloudft.providers.azure.handle import AzureHandle
from cloudft.registry import Registry
from cloudft.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDFT_HOME", str(tmp_path / "home"))
    transport = workspace(RecordingTransport())
    store = ArmStore(transport)
    route_blob_storage(monkeypatch, transport)
    cred = FakeCredential()
    return transport, store, AzureProvider(credential=cred, transport=transport, poll_s=0), cred


TRAIN_CLIENT = "11111111-1111-1111-1111-111111111111"
SERVE_CLIENT = "22222222-2222-2222-2222-222222222222"
SERVE_ID = (f"/subscriptions/{SUB}/resourceGroups/cloudft-rg/providers/Microsoft.ManagedIdentity/"
            "userAssignedIdentities/cloudft-serve")


def submit(prov: AzureProvider, spec_name: str):
    spec = load_spec(ROOT / "examples" / spec_name)
    prov.validate(spec)
    return prov.submit(build_plan(spec, "azure", locate=prov.locate))


@pytest.fixture
def stack(tmp_path):
    """Outputs of a cloudft stack (pulumi stack output --json): the identities it made."""
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"identity_client_id": TRAIN_CLIENT, "endpoint_identity_id": SERVE_ID,
                                "endpoint_identity_client_id": SERVE_CLIENT}))
    return str(path)


def test_submit_command_job_payload_and_registry(env):
    transport, store, prov, cred = env
    rec = submit(prov, "azure-lora.yaml")
    assert cred.scopes and all(s == ("https://management.azure.com/.default",) for s in cred.scopes[:1])
    puts = transport.find("PUT", r"/jobs/")
    assert len(puts) == 1 and puts[0].path.endswith(f"/jobs/{rec.external_id}")
    props = puts[0].body["properties"]
    assert props["jobType"] == "Command" and props["experimentName"] == "azure-lora"
    assert props["environmentId"].endswith("/environments/cloudft-train/versions/" + props["environmentId"].split("/")[-1])
    assert props["distribution"] == {"distributionType": "PyTorch", "processCountPerInstance": 1}
    assert props["resources"]["instanceType"] == "Standard_NC24ads_A100_v4"
    assert props["resources"]["instanceCount"] == 1
    # serverless: the workspace's user-assigned identity, by client id (no system-assigned identity there)
    assert props["identity"] == {"identityType": "Managed", "clientId": "00000000-0000-0000-0000-0000000000c1"}
    assert props["environmentVariables"]["AZURE_CLIENT_ID"] == "00000000-0000-0000-0000-0000000000c1"
    assert props["inputs"]["train"]["jobInputType"] == "uri_file"
    assert "/data/azure-lora-sft-train/versions/" in props["inputs"]["train"]["uri"]
    assert props["outputs"]["checkpoints"]["mode"] == "ReadWriteMount"
    assert props["outputs"]["checkpoints"]["uri"].startswith("azureml://datastores/workspaceblobstore/paths/cloudft/")
    assert "/codes/" in props["codeId"] and props["codeId"].endswith("/versions/1")
    assert props["environmentVariables"]["CLOUDFT_SECRETS"] == "HF_TOKEN=hf-token"
    assert "torchrun" not in props["command"]
    # the run config travelled inside the code snapshot (uploaded to blob storage)
    uploads = [r for r in transport.find("PUT", r"blob\.core\.windows\.net/.*cloudft_run/stage0\.json")]
    assert uploads and uploads[0].body["distributed"]["launcher"] == "platform"  # JSON file, parsed
    data_put = transport.find("PUT", r"/data/azure-lora-sft-train/versions/")
    assert data_put[0].body["properties"]["dataType"] == "uri_file"
    assert data_put[0].body["properties"]["dataUri"].startswith("azureml://datastores/workspaceblobstore/paths/")
    saved = Registry().get(rec.run_id)
    assert saved.provider == "azure" and saved.external_id == rec.external_id and saved.status == "queued"
    assert AzureHandle.model_validate(saved.handle).job_type == "command"


def test_second_submit_of_same_dataset_version_creates_no_new_asset(env):
    transport, store, prov, _ = env
    first = submit(prov, "azure-lora.yaml")
    n_data, n_env = len(transport.find("PUT", r"/data/")), len(transport.find("PUT", r"/environments/"))
    assert n_data >= 1 and n_env == 1
    second = submit(prov, "azure-lora.yaml")
    assert second.external_id != first.external_id
    assert len(transport.find("PUT", r"/data/")) == n_data  # same content → same version → reused
    assert len(transport.find("PUT", r"/environments/")) == n_env
    assert AzureHandle.model_validate(Registry().get(second.run_id).handle).assets["created"] == []


def test_submit_pipeline_payload(env):
    transport, store, prov, _ = env
    rec = submit(prov, "azure-sft-dpo.yaml")
    props = transport.find("PUT", r"/jobs/")[0].body["properties"]
    assert props["jobType"] == "Pipeline" and props["settings"]["force_rerun"] is True
    # the SDK resolves its "serverless" (YAML: azureml:serverless) to the workspace-scoped id, with no compute lookup
    assert props["settings"]["default_compute"].endswith("/workspaces/cloudft-ws/computes/serverless")
    assert not transport.find("GET", r"/computes/")
    jobs = props["jobs"]
    dpo = jobs["stage1_dpo"]
    assert dpo["inputs"]["init_adapter"]["value"] == "${{parent.jobs.stage0_sft.outputs.adapter}}"
    for step in jobs.values():
        assert step["queue_settings"]["job_tier"] == "Spot"
        assert step["resources"]["instance_count"] == 2
        assert step["distribution"]["process_count_per_instance"] == 2
    assert AzureHandle.model_validate(Registry().get(rec.run_id).handle).job_type == "pipeline"


def test_status_logs_stop(env):
    transport, store, prov, _ = env
    rec = submit(prov, "azure-lora.yaml")
    store.status[rec.external_id] = "Running"
    assert prov.status(rec).status == "running"
    log_url = "https://cloudftsa.blob.core.windows.net/azureml/ExperimentRun/std_log.txt?sig=fake"
    transport.add("GET", r"/history/v1\.0/.*/runs/[^/]+/details", (200, {
        "runId": rec.external_id, "status": "Running",
        "logFiles": {"user_logs/std_log.txt": log_url, "system_logs/lifecycler.log": log_url + "&x"}}))
    transport.add("GET", r"std_log\.txt\?sig=fake$", (200, b'##cloudft {"event": "step", "step": 1}\nhello\n'))
    lines = list(prov.logs(Registry().get(rec.run_id)))
    assert lines == ['##cloudft {"event": "step", "step": 1}', "hello"]
    assert transport.find("GET", API + r"/history/v1\.0/")
    transport.add("POST", r"/jobs/[^/]+/cancel\?", (202, None))
    stopped = prov.stop(Registry().get(rec.run_id))
    assert stopped.status == "stopped"
    assert transport.find("POST", rf"/jobs/{rec.external_id}/cancel\?")


def test_deploy_without_an_endpoint_identity_is_refused_for_a_run_with_secrets(env):
    transport, store, prov, _ = env
    rec = submit(prov, "azure-lora.yaml")
    Registry().update(rec.run_id, status="completed")
    with pytest.raises(Exception, match="no endpoint identity is set"):
        prov.deploy(Registry().get(rec.run_id), endpoint_name="lora-ep")
    run = Registry().get(rec.run_id)
    run.handle["azure"]["endpoint_identity_id"] = SERVE_ID  # the identity without its client id
    with pytest.raises(Exception, match="endpoint_identity_client_id is not set"):
        prov.deploy(run, endpoint_name="lora-ep")
    assert not transport.find("PUT", r"/onlineEndpoints/")  # refused before any request


def test_deploy_invoke_undeploy(env, stack, monkeypatch):
    transport, store, prov, _ = env
    prov.stack = stack
    rec = submit(prov, "azure-lora.yaml")
    Registry().update(rec.run_id, status="completed")
    out = prov.deploy(Registry().get(rec.run_id), instance_type=None, endpoint_name="lora-ep")
    assert out["endpoint"] == "lora-ep" and out["instance_type"] == "Standard_NC24ads_A100_v4"
    ep_puts = transport.find("PUT", r"/onlineEndpoints/lora-ep\?")
    assert ep_puts[0].body["properties"]["authMode"] == "Key"
    # the endpoint runs as the stack's serving identity (granted Key Vault Secrets User), not a fresh one
    assert ep_puts[0].body["identity"]["type"] == "UserAssigned"
    assert list(ep_puts[0].body["identity"]["userAssignedIdentities"]) == [SERVE_ID]
    assert ep_puts[-1].body["properties"]["traffic"] == {"cloudft": 100}
    dep = transport.find("PUT", r"/onlineEndpoints/lora-ep/deployments/cloudft\?")[0].body
    assert dep["sku"]["name"] == "Default" and dep["sku"]["capacity"] == 1
    dprops = dep["properties"]
    assert dprops["instanceType"] == "Standard_NC24ads_A100_v4" and dprops["endpointComputeType"] == "Managed"
    assert dprops["codeConfiguration"]["scoringScript"] == "score.py"
    assert "/models/cloudft-" in dprops["model"] and dprops["environmentVariables"]["CLOUDFT_BASE_MODEL"]
    # score.py asks for the endpoint identity's token (not the training identity's client id)
    assert dprops["environmentVariables"]["AZURE_CLIENT_ID"] == SERVE_CLIENT
    assert dprops["environmentVariables"]["CLOUDFT_KEY_VAULT"] == "cloudft-kv"
    model = transport.find("PUT", r"/models/cloudft-")[0].body["properties"]
    assert model["modelUri"].endswith("/0-sft/adapter/") and model["modelType"] == "custom_model"
    assert Registry().get(rec.run_id).meta["endpoint"] == "lora-ep"

    transport.add("POST", r"/onlineEndpoints/lora-ep/listKeys", (200, {"primaryKey": "k1", "secondaryKey": "k2"}))
    transport.add("POST", r"inference\.ml\.azure\.com/score", lambda req: (200, {"generated_text": "The sum is 4."})
                  if req.body == {"prompt": "2+2?", "max_new_tokens": 16} else (400, {"error": "bad request"}))
    assert prov.invoke("lora-ep", "2+2?", max_new_tokens=16) == "The sum is 4."
    transport.add("DELETE", r"/onlineEndpoints/lora-ep\?", (200, None))
    prov.undeploy("lora-ep")
    assert transport.find("DELETE", r"/onlineEndpoints/lora-ep\?")
    assert Registry().get(rec.run_id).meta["endpoint"] is None


def _job_outputs_service(transport: RecordingTransport, job_name: str, uri: str, files: dict[str, bytes]) -> None:
    """What the workspace answers for a finished job's named output: run history names the output's data asset,
    the data plane resolves it to the folder the job wrote (the URI cloudft sent), blob storage holds the files."""
    asset = f"azureml://locations/westeurope/workspaces/ws-id/data/azureml_{job_name}_output_data_adapter/versions/1"
    transport.add("POST", r"/history/v1\.0/.*/rundata", lambda req: (200, {"runMetadata": {
        "runId": req.body["runId"], "status": "Completed",
        "outputs": {"adapter": {"assetId": asset, "type": "uri_folder"}}}}))
    long_uri = uri.replace("azureml://datastores/",
                           f"azureml://subscriptions/{SUB}/resourcegroups/cloudft-rg/workspaces/cloudft-ws/datastores/")
    transport.add("POST", r"/dataversion/batchGetResolvedUris", lambda req: (200, {"values": {
        a: {"uri": long_uri, "type": "uri_folder"} for a in req.body["values"] if a == asset}}))
    prefix = uri.split("/paths/", 1)[1]
    listing = "".join(f"<Blob><Name>{prefix}{name}</Name><Properties><Content-Length>{len(data)}</Content-Length>"
                      f"<BlobType>BlockBlob</BlobType></Properties></Blob>" for name, data in files.items())
    xml = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="azureml-blobstore"><Blobs>'
           f"{listing}</Blobs><NextMarker /></EnumerationResults>").encode()
    transport.add("GET", r"comp=list&prefix=" + re.escape(prefix.replace("/", "%2F")),
                  (200, xml, {"Content-Type": "application/xml"}))
    for name, data in files.items():
        transport.add("GET", re.escape(f"/azureml-blobstore/{prefix}{name}") + "$",
                      (200, data, {"x-ms-blob-type": "BlockBlob", "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"}))


ADAPTER_FILES = {"adapter_config.json": b'{"peft_type": "LORA", "r": 16}', "adapter_model.safetensors": b"\x00\x01w"}


@pytest.mark.parametrize("datastore_auth", ["AccountKey", "None"])
def test_artifacts_downloads_the_adapter_the_job_wrote(env, tmp_path, datastore_auth):
    """`cloudft artifacts` through MLClient.jobs.download: run history → data plane → blob storage. With the
    stack's identity-based datastores (shared key off) blob requests carry the caller's Entra token, no key."""
    transport, store, prov, cred = env
    if datastore_auth == "None":
        identity_store = json.loads(json.dumps(DATASTORE))
        identity_store["properties"]["credentials"] = {"credentialsType": "None"}
        transport.add("GET", r"/datastores/workspaceblobstore\?", (200, identity_store))
        transport.add("GET", r"/datastores\?.*isDefault", (200, {"value": [identity_store]}))
    rec = submit(prov, "azure-lora.yaml")
    uri = transport.find("PUT", r"/jobs/")[0].body["properties"]["outputs"]["adapter"]["uri"]
    _job_outputs_service(transport, rec.external_id, uri, ADAPTER_FILES)
    store.status[rec.external_id] = "Running"
    with pytest.raises(Exception, match="outputs can be downloaded once it has finished"):
        prov.artifacts(Registry().get(rec.run_id), tmp_path / "early")
    store.status[rec.external_id] = "Completed"
    n = len(transport.requests)
    out = prov.artifacts(Registry().get(rec.run_id), tmp_path / "dl")
    assert out == tmp_path / "dl" / "named-outputs" / "adapter"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == ADAPTER_FILES
    blob_gets = [r for r in transport.requests[n:] if "blob.core.windows.net" in r.url]
    assert blob_gets and all(f"/{uri.split('/paths/', 1)[1]}" in r.url or "comp=list" in r.url for r in blob_gets)
    secrets = transport.find("POST", r"/listSecrets")
    if datastore_auth == "None":
        assert not [r for r in secrets if transport.requests.index(r) >= n]  # no account key asked for
        assert all(r.headers.get("Authorization", "").startswith("Bearer ") for r in blob_gets)
        assert ("https://storage.azure.com/.default",) in cred.scopes
