"""Deploying on Azure through the recording transport: the scoring code snapshot carries cloudft_textgen, the
spec's serve limits reach score.py, and what cannot be served is refused before any request."""

from __future__ import annotations

import json

import pytest

from test_azure_rest import env, stack, submit  # noqa: F401

from cloudft.errors import CloudftError
from cloudft.registry import Registry


def test_deploy_passes_the_limits_and_ships_the_generation_module(env, stack):  # noqa: F811
    transport, _, prov, _ = env
    prov.stack = stack  # the stack's endpoint identity: the run reads Key Vault secrets
    rec = submit(prov, "azure-lora.yaml")
    Registry().update(rec.run_id, status="completed")
    out = prov.deploy(Registry().get(rec.run_id), endpoint_name="limits-ep")
    assert out["mode"] == "adapter"
    props = transport.find("PUT", r"/onlineEndpoints/limits-ep/deployments/cloudft\?")[0].body["properties"]
    env_vars = props["environmentVariables"]
    assert env_vars["CLOUDFT_MAX_NEW_TOKENS"] == "512" and env_vars["CLOUDFT_MAX_PROMPT_TOKENS"] == "4096"
    assert props["codeConfiguration"]["scoringScript"] == "score.py"
    code_puts = [r.path for r in transport.find("PUT", r"blob\.core\.windows\.net/")]
    assert any(p.endswith("/cloudft_textgen.py") for p in code_puts) and any(p.endswith("/score.py")
                                                                            for p in code_puts)


def test_a_reward_model_is_refused_before_any_request(env):  # noqa: F811
    transport, _, prov, _ = env
    rec = submit(prov, "azure-lora.yaml")
    handle = dict(Registry().get(rec.run_id).handle, artifact="reward_model")
    Registry().update(rec.run_id, status="completed", handle=json.dumps(handle))
    sent = len(transport.requests)
    with pytest.raises(CloudftError, match="reward model"):
        prov.deploy(Registry().get(rec.run_id), endpoint_name="reward-ep")
    assert len(transport.requests) == sent
