"""Azure provider through MLClient with a recording azure-core transport (no account): REST payloads of
submit, status, logs, stop and deploy; data asset versions are created once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure_fixtures import API, ArmStore, FakeCredential, RecordingTransport, route_blob_storage, workspace

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


def submit(prov: AzureProvider, spec_name: str):
    spec = load_spec(ROOT / "examples" / spec_name)
    prov.validate(spec)
    return prov.submit(build_plan(spec, "azure", locate=prov.locate))


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
    assert props["identity"]["identityType"] == "Managed"
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


def test_deploy_invoke_undeploy(env, monkeypatch):
    transport, store, prov, _ = env
    rec = submit(prov, "azure-lora.yaml")
    Registry().update(rec.run_id, status="completed")
    out = prov.deploy(Registry().get(rec.run_id), instance_type=None, endpoint_name="lora-ep")
    assert out["endpoint"] == "lora-ep" and out["instance_type"] == "Standard_NC24ads_A100_v4"
    ep_puts = transport.find("PUT", r"/onlineEndpoints/lora-ep\?")
    assert ep_puts[0].body["properties"]["authMode"] == "Key"
    assert ep_puts[-1].body["properties"]["traffic"] == {"cloudft": 100}
    dep = transport.find("PUT", r"/onlineEndpoints/lora-ep/deployments/cloudft\?")[0].body
    assert dep["sku"]["name"] == "Default" and dep["sku"]["capacity"] == 1
    dprops = dep["properties"]
    assert dprops["instanceType"] == "Standard_NC24ads_A100_v4" and dprops["endpointComputeType"] == "Managed"
    assert dprops["codeConfiguration"]["scoringScript"] == "score.py"
    assert "/models/cloudft-" in dprops["model"] and dprops["environmentVariables"]["CLOUDFT_BASE_MODEL"]
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
