"""Deploying on AWS against moto: what vLLM cannot load is served as merged weights or refused before any request
creates anything; the smoke test asks the adapter and the bare base."""

from __future__ import annotations

import json
import urllib.request

import pytest

from aws_fixtures import REGION, aws_env, moto_endpoint, plan_for, write_spec  # noqa: F401

from cloudft.errors import CloudftError

CREATES = ("SageMaker.CreateModel", "SageMaker.CreateEndpointConfig", "SageMaker.CreateEndpoint")


@pytest.fixture(scope="module", autouse=True)
def _reset_moto(moto_endpoint):  # noqa: F811 - moto's state is per process: leave none to later modules
    yield
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint[0]}/moto-api/reset", method="POST")).read()


def _submit(aws_env, name: str, settings: str):
    spec = write_spec(aws_env["tmp"], aws_env["role_arn"], name=name, stages=f"method: sft\n{settings}")
    prov, plan = plan_for(spec)
    return prov, prov.submit(plan)


def _answers(url: str, *texts: str) -> None:
    """Queue what moto's InvokeEndpoint answers next (vLLM completions)."""
    results = [{"Body": json.dumps({"choices": [{"text": t}]}), "ContentType": "application/json"} for t in texts]
    req = urllib.request.Request(f"{url}/moto-api/static/sagemaker/endpoint-results", method="POST",
                                 data=json.dumps({"results": results, "region": REGION}).encode())
    urllib.request.urlopen(req).read()


def test_dora_without_merged_weights_is_refused_before_anything_is_created(aws_env):
    prov, rec = _submit(aws_env, "dora-refused", "peft: {type: dora, r: 16}")
    sm = aws_env["boto"].client("sagemaker")
    before = {t: aws_env["faults"].seen.get(t, 0) for t in CREATES}
    with pytest.raises(CloudftError, match="nothing was created") as err:
        prov.deploy(rec, endpoint_name="dora-refused")
    assert "vllm-dora" in str(err.value) and "export: {merge: true}" in err.value.hint
    assert {t: aws_env["faults"].seen.get(t, 0) for t in CREATES} == before
    assert "dora-refused" not in [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]


def test_prompt_tuning_is_refused_and_pointed_at_a_transformers_server(aws_env):
    prov, rec = _submit(aws_env, "prompt-refused", "peft: {type: prompt, num_virtual_tokens: 8}")
    with pytest.raises(CloudftError, match="vllm-prompt-learning") as err:
        prov.deploy(rec, endpoint_name="prompt-refused")
    assert "--provider local" in err.value.hint


def test_dora_with_merged_weights_serves_them(aws_env):
    prov, rec = _submit(aws_env, "dora-merged", "peft: {type: dora, r: 16}\nexport: {merge: true}")
    result = prov.deploy(rec, instance_type="ml.g4dn.xlarge", endpoint_name="dora-merged")
    assert result["mode"] == "merged" and result["status"] == "InService"
    env = aws_env["boto"].client("sagemaker").describe_model(ModelName=result["model"])["PrimaryContainer"][
        "Environment"]
    assert env == {"SM_VLLM_MODEL": "/opt/ml/model/merged", "SM_VLLM_SERVED_MODEL_NAME": "adapter",
                   "SM_VLLM_HOST": "0.0.0.0"}
    # merged weights have no bare base beside them: the smoke test checks that the endpoint answers
    _answers(aws_env["url"], " The sum is 4.")
    report = prov.smoke(rec, result, "Compute 2 + 2.")  # moto answers a body it saw before (any endpoint) as before
    assert report.ok and report.check == "answered" and report.answer == " The sum is 4."
    with pytest.raises(CloudftError, match="no bare base"):
        prov.invoke("dora-merged", "x", base=True)
    prov.undeploy("dora-merged")


def test_lora_adapter_smoke_test_compares_adapter_and_base(aws_env):
    prov, rec = _submit(aws_env, "lora-served", "peft: {type: qlora, r: 24}\nserve: {max_prompt_tokens: 1000}")
    result = prov.deploy(rec, instance_type="ml.g4dn.xlarge", endpoint_name="lora-served")
    env = aws_env["boto"].client("sagemaker").describe_model(ModelName=result["model"])["PrimaryContainer"][
        "Environment"]
    assert env["SM_VLLM_ENABLE_LORA"] == "true" and env["SM_VLLM_MAX_LORA_RANK"] == "32"
    assert env["SM_VLLM_QUANTIZATION"] == "bitsandbytes" and env["SM_VLLM_MAX_MODEL_LEN"] == "1512"
    _answers(aws_env["url"], " The sum is 42.", " Hello there")
    report = prov.smoke(rec, result, "Compute 12 + 30.")
    assert report.ok and report.check == "adapter-vs-base" and report.expected == " Hello there"
    _answers(aws_env["url"], " same", " same")
    report = prov.smoke(rec, result, "Compute 1 + 1.")
    assert not report.ok and "equals the bare base's" in report.detail
    prov.undeploy("lora-served")


def test_an_aws_run_is_served_on_this_machine_before_paying_for_an_endpoint(aws_env, tiny_model, tmp_path):
    """`cloudft deploy RUN --provider local` on a SageMaker run: its model.tar.gz is downloaded and served here."""
    import io
    import tarfile

    from peft import LoraConfig

    from test_serve_local import _adapter

    from cloudft.providers.local import LocalProvider

    prov, rec = _submit(aws_env, "try-here", "peft: {type: lora, r: 4, target_modules: [q_proj, v_proj]}")
    adapter = _adapter(tiny_model, tmp_path / "adapter", LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj",
                                                                                                  "v_proj"],
                                                                    task_type="CAUSAL_LM"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in adapter.iterdir():
            tar.add(f, arcname=f.name)
    sm, s3 = aws_env["boto"].client("sagemaker"), aws_env["boto"].client("s3")
    uri = sm.describe_training_job(TrainingJobName=rec.external_id)["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = uri[5:].split("/", 1)
    s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    local = LocalProvider()
    out = local.deploy(rec, endpoint_name="try-here")
    try:
        assert out["mode"] == "adapter" and out["base_model"] == str(tiny_model)  # the adapter's own base
        report = local.smoke(rec, out, "What is the capital of Japan?")
        assert report.ok and report.check == "reference"
    finally:
        local.undeploy("try-here")
    assert not [e for e in sm.list_endpoints()["Endpoints"] if e["EndpointName"] == "try-here"]
