"""Deploy compatibility as data: each documented vLLM rule catches its case, merging works around the ones it can,
the plan's serving section says how every target serves a run, and vLLM gets the same settings on SageMaker and
locally."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import REPO
from test_cli import cloudft
from train_entry.config import PeftConfig

from cloudft.errors import CloudftError
from cloudft.serving import compat
from cloudft.serving.compat import Served, decide, lora_rank_cap, sagemaker_env, serve_target, vllm_command, vllm_flags
from cloudft.spec import ServeConfig

AWS, AZURE = serve_target("aws"), serve_target("azure")

#: adapters vLLM cannot load but their merged weights it can: (peft settings, the rule that catches them)
MERGEABLE = [
    ({"type": "dora"}, "vllm-dora"),
    ({"type": "lora", "modules_to_save": ["lm_head"]}, "vllm-modules-to-save"),
    ({"type": "lora", "r": 1024}, "vllm-max-lora-rank"),
    ({"type": "qlora", "target_modules": ["q_proj", "embed_tokens"]}, "vllm-target-modules"),
]


def _local(engine: str, monkeypatch) -> compat.ServeTarget:
    monkeypatch.setattr(compat, "local_engine", lambda: engine)
    return serve_target("local")


@pytest.mark.parametrize("peft, rule", MERGEABLE)
def test_vllm_rules_refuse_or_serve_merged_weights(peft, rule, monkeypatch):
    served = Served("adapter", PeftConfig(**peft))
    refused = decide(AWS, served)
    assert refused.mode == "refused" and [f.rule for f in refused.findings] == [rule]
    finding = refused.findings[0]
    assert finding.severity == "error" and "export: {merge: true}" in finding.fix and "vllm/" in finding.source
    with pytest.raises(CloudftError, match="nothing was created") as err:
        refused.raise_if_refused("run-1")
    assert rule in str(err.value) and "export" in (err.value.hint or "")
    # with the merged weights the training job wrote, SageMaker serves those
    merged = decide(AWS, Served("adapter", PeftConfig(**peft), merged=True))
    assert merged.mode == "merged" and merged.findings[0].rule == rule and merged.findings[0].severity == "warning"
    # a local vLLM merges at deploy; transformers + PEFT (local CPU, Azure) loads the adapter as it is
    assert decide(_local("vllm", monkeypatch), served).mode == "merged"
    assert decide(_local("transformers", monkeypatch), served).mode == "adapter"
    assert decide(AZURE, served).mode == "adapter"


@pytest.mark.parametrize("kind", ["prefix", "prompt", "p_tuning"])
def test_prompt_learning_needs_a_transformers_server(kind, monkeypatch):
    served = Served("adapter", PeftConfig(type=kind), merged=True)  # merged weights do not exist for these
    d = decide(AWS, served)
    assert d.mode == "refused" and d.findings[0].rule == "vllm-prompt-learning"
    assert "--provider local" in d.findings[0].fix and "peft_helper" in d.findings[0].source
    assert decide(_local("vllm", monkeypatch), served).mode == "refused"
    assert decide(_local("transformers", monkeypatch), served).mode == "adapter"
    assert decide(AZURE, served).mode == "adapter"


def test_a_reward_model_is_served_nowhere_and_full_weights_everywhere(monkeypatch):
    for target in (AWS, AZURE, _local("transformers", monkeypatch)):
        d = decide(target, Served("reward_model", PeftConfig()))
        assert d.refused and d.findings[0].rule == "serve-reward-model" and "policy" in d.findings[0].fix
        assert decide(target, Served("full_weights", PeftConfig(type="none"))).mode == "weights"


@pytest.mark.parametrize("rank, cap", [(1, 1), (8, 8), (12, 16), (16, 16), (300, 320), (512, 512)])
def test_max_lora_rank_is_the_smallest_value_vllm_accepts(rank, cap):
    assert lora_rank_cap(rank) == cap
    d = decide(AWS, Served("adapter", PeftConfig(r=rank)))
    assert d.mode == "adapter" and d.settings == {"max_lora_rank": str(cap)}


def test_qlora_base_quantization():
    four = decide(AWS, Served("adapter", PeftConfig(type="qlora")))
    assert four.settings["quantization"] == "bitsandbytes" and four.findings[0].rule == "vllm-qlora-base"
    assert "lora_with_quantization_inference" in four.findings[0].source
    eight = decide(AWS, Served("adapter", PeftConfig(type="qlora", quantization={"bits": 8})))
    assert "quantization" not in eight.settings and eight.findings[0].severity == "warning"
    assert decide(AZURE, Served("adapter", PeftConfig(type="qlora"))).findings[0].rule == "transformers-qlora-base"


def test_merged_weights_are_served_wherever_the_run_wrote_them():
    d = decide(AZURE, Served("adapter", PeftConfig(), merged=True))
    assert d.mode == "merged" and d.findings[0].rule == "serve-merged"


def test_every_rule_cites_its_source():
    for rule in compat.RULES:
        assert rule.source and rule.fix
        if rule.id.startswith("vllm-"):
            assert "vllm/" in rule.source and rule.engines == ("vllm",)


def test_sagemaker_and_a_local_vllm_get_the_same_vllm_settings():
    served = Served("adapter", PeftConfig(type="qlora", r=24))
    d = decide(AWS, served)
    flags = vllm_flags(d, served, ServeConfig(), model="Qwen/Qwen2.5-0.5B", name="adapter", adapter="/opt/ml/model")
    env = sagemaker_env(flags)
    assert env == {"SM_VLLM_MODEL": "Qwen/Qwen2.5-0.5B", "SM_VLLM_ENABLE_LORA": "true",
                   "SM_VLLM_LORA_MODULES": "adapter=/opt/ml/model", "SM_VLLM_MAX_LORA_RANK": "32",
                   "SM_VLLM_MAX_LORAS": "1", "SM_VLLM_QUANTIZATION": "bitsandbytes"}
    argv = vllm_command(flags, "127.0.0.1", 8000)
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    for key, value in env.items():  # every SageMaker variable is the same vLLM flag on the command line
        flag = "--" + key.removeprefix("SM_VLLM_").lower().replace("_", "-")
        assert flag in argv and (value == "true" or argv[argv.index(flag) + 1] == value)
    # merged weights: no LoRA; the spec's explicit prompt limit becomes max_model_len (prompt + answer)
    merged = decide(AWS, Served("adapter", PeftConfig(type="dora"), merged=True))
    flags = vllm_flags(merged, served, ServeConfig(max_prompt_tokens=1000, max_new_tokens=200),
                       model="/opt/ml/model/merged", name="adapter")
    assert flags == {"model": "/opt/ml/model/merged", "served-model-name": "adapter", "max-model-len": "1200"}


def _plan_json(spec: Path, provider: str) -> dict:
    return json.loads(cloudft("plan", str(spec), "--provider", provider, "--json").stdout)


def test_plan_says_how_the_dora_example_is_served_on_aws(tmp_path):
    example = REPO / "examples" / "dora-qwen.yaml"
    serving = _plan_json(example, "aws")["serving"]
    assert set(serving) == {"local", "aws", "azure"}
    assert serving["aws"]["mode"] == "merged" and serving["aws"]["findings"][0]["rule"] == "vllm-dora"
    text = cloudft("plan", str(example), "--provider", "aws").stdout
    assert "serving (cloudft deploy)" in text and "merged weights" in text and "vllm-dora" in text
    # the same spec without export.merge: deploy on AWS would refuse, and the plan says so with the fix
    spec = tmp_path / "dora.yaml"
    spec.write_text(example.read_text().replace("  merge: true", "  merge: false"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "quickstart.jsonl").write_text((REPO / "examples/data/quickstart.jsonl").read_text())
    aws = _plan_json(spec, "aws")["serving"]["aws"]
    assert aws["mode"] == "refused" and "export: {merge: true}" in aws["findings"][0]["fix"]
    assert "deploy refuses" in cloudft("plan", str(spec), "--provider", "aws").stdout


def test_plan_of_a_prompt_tuning_spec_points_to_a_transformers_server():
    serving = _plan_json(REPO / "examples" / "prompt-tuning.yaml", "aws")["serving"]
    assert serving["aws"]["mode"] == "refused" and serving["azure"]["mode"] == "adapter"
    assert serving["aws"]["findings"][0]["rule"] == "vllm-prompt-learning"
