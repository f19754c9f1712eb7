"""The local OpenAI-compatible server: generation that matches the adapter's forward pass, hostile requests (never a
500, never a silent accept), and `cloudft deploy --provider local` → invoke → POST /v1/completions → undeploy after a
short real training run on a tiny model built on the spot."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import EXAMPLE_DATA
from test_cli import cloudft


@pytest.fixture(autouse=True)
def _no_server_left():
    """Whatever a test deployed is stopped after it, passed or failed."""
    yield
    from cloudft.serving.local import local_endpoints, undeploy_local

    for name in local_endpoints():
        undeploy_local(name, missing_ok=True)


#: the vLLM OpenAI-server flags cloudft may pass (see the test that checks the generated command line)
VLLM_SERVER_FLAGS = {"--host", "--port", "--model", "--served-model-name", "--enable-lora", "--lora-modules",
                     "--max-lora-rank", "--max-loras", "--quantization", "--max-model-len"}


def _adapter(base: Path, out: Path, config) -> Path:
    """A PEFT adapter on `base` with non-trivial weights (so it answers differently from the base)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), config)
    for name, p in model.named_parameters():
        if p.requires_grad and "lora_A" not in name:
            p.data.normal_(0, 0.5)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_model, tmp_path_factory) -> dict[str, Path]:
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig

    root = tmp_path_factory.mktemp("adapters")
    return {
        "lora": _adapter(tiny_model, root / "lora", LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                              task_type="CAUSAL_LM")),
        "prefix": _adapter(tiny_model, root / "prefix", PrefixTuningConfig(num_virtual_tokens=4,
                                                                          task_type="CAUSAL_LM")),
        "prompt": _adapter(tiny_model, root / "prompt", PromptTuningConfig(num_virtual_tokens=4,
                                                                          task_type="CAUSAL_LM")),
    }


def _forward_decode(tm, ids: list[int], steps: int) -> list[int]:
    """Greedy decoding with a full forward pass per token: what the adapter computes in training."""
    import torch

    seq = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(steps):
            nxt = tm.model(input_ids=seq).logits[0, -1].argmax()
            seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
    return seq[0, len(ids):].tolist()


@pytest.mark.parametrize("kind", ["lora", "prefix", "prompt"])
def test_generation_is_the_adapters_own(kind, adapters, tiny_model):
    from cloudft.serving.textgen import load_text_model

    tm = load_text_model(str(tiny_model), str(adapters[kind]))
    assert tm.prompt_learning == (kind != "lora")
    ids = tm.encode("What is the capital of Japan?")
    gen = tm.generate(ids, 6)
    expected = _forward_decode(tm, ids, 6)
    assert gen.text == tm.tokenizer.decode(expected, skip_special_tokens=True)
    assert gen.text != tm.generate(ids, 6, adapter=False).text  # the adapter, not the bare base, answered


@pytest.mark.parametrize("kind", ["lora", "prefix", "prompt"])
def test_train_entry_report_generations_are_the_adapters_own_too(kind, adapters, tiny_model):
    """train_entry's evaluation generations (the report's side-by-side answers) follow the adapter's forward pass
    as well: PeftModel.generate does not for prefix / prompt tuning."""
    from cloudft.serving.textgen import load_text_model
    from train_entry.evaluate import generate

    tm = load_text_model(str(tiny_model), str(adapters[kind]))
    prompt = "What is the capital of Japan?"
    expected = tm.tokenizer.decode(_forward_decode(tm, tm.encode(prompt), 6), skip_special_tokens=True)
    assert generate(tm.model, tm.tokenizer, [prompt], max_new_tokens=6) == [expected]


# -- the server in this process (uvicorn in a thread), hostile requests ------------------------------------------

@pytest.fixture(scope="module")
def server(adapters, tiny_model):
    import uvicorn

    from cloudft.serving.server import Server, ServerConfig, create_app
    from cloudft.serving.textgen import load_text_model
    from cloudft.spec import ServeConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ServerConfig(name="tuned", base_name="tuned-base", weights=str(tiny_model), adapter=str(adapters["lora"]),
                       port=port, limits=ServeConfig(max_new_tokens=8, max_prompt_tokens=64), max_body_bytes=4096)
    srv = Server(cfg, load_text_model(cfg.weights, cfg.adapter))
    http = uvicorn.Server(uvicorn.Config(create_app(srv), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not http.started and time.time() < deadline:
        time.sleep(0.05)
    yield srv, f"http://127.0.0.1:{port}"
    http.should_exit = True
    thread.join(timeout=10)


def _call(url: str, body: bytes | None = None, method: str = "POST") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


HOSTILE = [  # (body, status, words in the message)
    (b"[1]", 400, "JSON object, not an array"),
    (b"null", 400, "not null"),
    (b'"x"', 400, "not a string"),
    (b"7", 400, "not a number"),
    (b"", 400, "not valid JSON"),
    (b"\xff\xfe{", 400, "not valid JSON"),
    (b'{"prompt": "a", "temperature": NaN}', 400, "NaN is not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, 413, "larger than"),
    (b"[" * 2000 + b"]" * 2000, 400, "nested too deeply"),
    (json.dumps({"prompt": 5}).encode(), 400, "expected str or list[str]"),
    (json.dumps({"prompt": ["a", "b"]}).encode(), 400, "one prompt per request"),
    (json.dumps({"prompt": "a", "max_tokens": "5"}).encode(), 400, "valid integer"),
    (json.dumps({"prompt": "a", "max_tokens": True}).encode(), 400, "valid integer"),
    (json.dumps({"prompt": "a", "max_tokens": 0}).encode(), 400, "greater than or equal to 1"),
    (json.dumps({"prompt": "a", "max_tokens": 10**9}).encode(), 400, "limit of 8 tokens per answer"),
    (json.dumps({"prompt": "a " * 200}).encode(), 400, "above this server's limit of 64"),
    (json.dumps({"prompt": ""}).encode(), 400, "prompt is empty"),
    (json.dumps({"prompt": "a", "stream": True}).encode(), 400, "stream=true is not supported"),
    (json.dumps({"prompt": "a", "n": 3}).encode(), 400, "n=3 is not supported"),
    (json.dumps({"prompt": "a", "logprobs": 2}).encode(), 400, "logprobs=2 is not supported"),
    (json.dumps({"prompt": "a", "tools": []}).encode(), 400, "unrecognized request argument supplied: tools"),
    (json.dumps({"prompt": "a", "temperature": -1}).encode(), 400, "temperature"),
    (json.dumps({"prompt": "a", "stop": ["", "x"]}).encode(), 400, "non-empty strings"),
    (json.dumps({"prompt": "a", "model": "gpt-4"}).encode(), 404, "does not exist"),
    (json.dumps({"max_tokens": 3}).encode(), 400, "missing required field: prompt"),
]


@pytest.mark.parametrize("body, status, words", HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
def test_hostile_completion_bodies_get_a_clear_4xx(server, body, status, words):
    _, url = server
    code, answer = _call(f"{url}/v1/completions", body)
    assert code == status and words in answer["error"]["message"], answer
    assert set(answer["error"]) == {"message", "type", "param", "code"}


def test_chat_and_routes(server):
    srv, url = server
    ok = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}
    code, answer = _call(f"{url}/v1/chat/completions", json.dumps(ok).encode())
    assert code == 200 and answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] <= 4
    assert answer["choices"][0]["message"]["role"] == "assistant"
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_tokens": 4,
             "temperature": 0}
    assert _call(f"{url}/v1/chat/completions", json.dumps(parts).encode())[1]["choices"] == answer["choices"]
    for bad, words in [({"messages": []}, "at least 1"), ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
                       ({"messages": [{"role": "user", "content": 7}]}, "expected str or list[TextPart]"),
                       ({"messages": "hi"}, "valid list"),
                       ({**ok, "max_completion_tokens": 100}, "max_completion_tokens 100 is above")]:
        code, answer = _call(f"{url}/v1/chat/completions", json.dumps(bad).encode())
        assert code == 400 and words in answer["error"]["message"], (bad, answer)
    models = _call(f"{url}/v1/models", method="GET")[1]
    assert [m["id"] for m in models["data"]] == ["tuned", "tuned-base"] and models["data"][0]["parent"] == "tuned-base"
    assert _call(f"{url}/health", method="GET") == (200, {"status": "ok", "model": "tuned"})
    assert _call(f"{url}/v1/nope", b"{}")[0] == 404
    # the bare base answers under its own name, differently from the adapter
    body = {"prompt": "What is the capital of Japan?", "max_tokens": 6, "temperature": 0}
    tuned = _call(f"{url}/v1/completions", json.dumps(body).encode())[1]
    base = _call(f"{url}/v1/completions", json.dumps({**body, "model": "tuned-base"}).encode())[1]
    assert tuned["model"] == "tuned" and tuned["choices"][0]["text"] != base["choices"][0]["text"]
    assert tuned["usage"]["total_tokens"] == tuned["usage"]["prompt_tokens"] + tuned["usage"]["completion_tokens"]


JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False)
                    | st.text(max_size=20), lambda kids: st.lists(kids, max_size=4)
                    | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)
FIELDS = ["model", "prompt", "messages", "max_tokens", "temperature", "top_p", "stop", "seed", "n", "stream",
          "logprobs", "echo", "user", "presence_penalty", "logit_bias", "max_completion_tokens", "role", "content"]
BODIES = JSON | st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=5) | st.fixed_dictionaries(
    {"prompt": st.text(max_size=30)}, optional={k: JSON for k in FIELDS[3:10]})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(body=BODIES)
def test_fuzzed_bodies_never_crash_the_server(server, body):
    from cloudft.serving.server import ApiError

    srv, _ = server
    raw = json.dumps(body).encode()
    for handler in (srv.completion, srv.chat):
        try:
            answer = handler(raw)
        except ApiError as exc:
            assert exc.status in (400, 404) and exc.message, exc.message
        else:  # accepted: a well-formed answer within the limits
            assert answer["usage"]["completion_tokens"] <= 8 and answer["choices"][0]["finish_reason"] in \
                ("stop", "length")


# -- cloudft deploy --provider local, end to end -----------------------------------------------------------------

def _post(url: str, body: dict) -> dict:
    return _call(url, json.dumps(body).encode())[1]


def _train(tmp_path: Path, model: Path) -> str:
    (tmp_path / "train.jsonl").write_text((EXAMPLE_DATA / "quickstart.jsonl").read_text())
    spec = tmp_path / "serve.yaml"
    spec.write_text(f"""name: served
base_model: {model}
peft: {{type: lora, r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}}
data: {{train: train.jsonl}}
training: {{max_steps: 3, per_device_batch_size: 8, max_length: 64, learning_rate: 0.02, lr_scheduler: constant,
           warmup_ratio: 0.0}}
eval: {{enabled: false, prompts: ["Compute 12 + 30."]}}
serve: {{max_new_tokens: 32, max_prompt_tokens: 256}}
""")
    proc = cloudft("submit", str(spec), timeout=600)
    assert "completed" in proc.stdout, proc.stdout + proc.stderr
    return json.loads(cloudft("runs", "--json").stdout)[0]["run_id"]


def test_deploy_invoke_post_undeploy_after_a_short_training_run(tmp_path, tiny_model):
    run_id = _train(tmp_path, tiny_model)
    out = json.loads(cloudft("deploy", run_id, "--provider", "local", "--json", timeout=600).stdout)
    try:
        assert out["url"].startswith("http://127.0.0.1:") and out["base_url"] == out["url"] + "/v1"
        assert out["model"] == "served" and out["engine"] == "transformers" and out["mode"] == "adapter"
        smoke = out["smoke"]
        assert smoke["ok"] and smoke["check"] == "reference" and smoke["prompt"] == "Compute 12 + 30."
        assert smoke["answer"] == smoke["expected"]
        answer = cloudft("invoke", out["endpoint"], "--prompt", "Compute 12 + 30.", "--max-new-tokens", "16").stdout
        assert answer.rstrip("\n") == smoke["answer"]  # greedy: the same 16 tokens as the smoke test
        completion = _post(f"{out['base_url']}/completions", {"model": "served", "prompt": "Compute 12 + 30.",
                                                              "max_tokens": 16, "temperature": 0})
        assert completion["object"] == "text_completion" and completion["choices"][0]["text"] == smoke["answer"]
        over = _call(f"{out['base_url']}/completions", json.dumps({"prompt": "x", "max_tokens": 33}).encode())
        assert over[0] == 400 and "limit of 32" in over[1]["error"]["message"]  # the spec's serve: section
        again = cloudft("deploy", run_id, "--provider", "local", check=False)
        assert again.returncode != 0 and "already serving" in again.stderr
    finally:
        cloudft("undeploy", out["endpoint"])
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{out['url']}/health", timeout=5)
    gone = cloudft("invoke", out["endpoint"], "--prompt", "x", check=False)
    assert gone.returncode != 0 and "no local endpoint" in gone.stderr


def _local_run(tmp_path: Path, run_id: str, output: Path, **handle) -> "object":
    """A completed local run in the registry whose last stage wrote `output` (no training needed)."""
    import shutil

    from cloudft.handles import LocalHandle
    from cloudft.registry import Registry, RunRecord

    stage = tmp_path / run_id / "0-sft" / "output"
    shutil.copytree(output, stage)
    rec = RunRecord(run_id=run_id, name="made", provider="local", status="completed", run_dir=str(tmp_path / run_id),
                    handle=LocalHandle(stages=("0-sft",), **handle).model_dump(mode="json"))
    Registry().add(rec)
    return rec


def test_merged_weights_are_merged_here_and_served(tmp_path, adapters, tiny_model):
    from train_entry.config import PeftConfig

    from cloudft.processes import alive
    from cloudft.providers.local import LocalProvider

    rec = _local_run(tmp_path, "merge-1", adapters["lora"], base_model=str(tiny_model), artifact="adapter",
                     peft=PeftConfig(r=4, target_modules=["q_proj", "v_proj"]), merged=True)
    prov = LocalProvider()
    out = prov.deploy(rec, endpoint_name="merged-ep")
    try:
        assert out["mode"] == "merged" and out["base_model_name"] is None
        assert (Path(out["weights"]) / "config.json").is_file() and Path(out["weights"]).name == "merged"
        report = prov.smoke(rec, out, "What is the capital of Japan?")
        assert report.ok and report.check == "reference"  # merged weights answer as base + adapter do
    finally:
        prov.undeploy("merged-ep")
    assert not alive(out["pid"])


def test_deploy_refuses_before_starting_anything(tmp_path, adapters, tiny_model):
    from train_entry.config import PeftConfig

    from cloudft.errors import CloudftError
    from cloudft.paths import home
    from cloudft.providers.local import LocalProvider

    rec = _local_run(tmp_path, "reward-1", adapters["lora"], base_model=str(tiny_model), artifact="reward_model",
                     peft=PeftConfig())
    with pytest.raises(CloudftError, match="reward model") as err:
        LocalProvider().deploy(rec)
    assert "nothing was created" in str(err.value) and not (home() / "endpoints").exists()
    # a server that cannot start is reported with its log, and leaves no endpoint behind
    weights = tmp_path / "not-a-model"
    weights.mkdir()
    (weights / "config.json").write_text('{"model_type": "no-such-architecture"}')
    broken = _local_run(tmp_path, "broken-1", weights, base_model=str(weights), artifact="full_weights",
                        peft=PeftConfig(type="none"))
    with pytest.raises(CloudftError, match="exited"):
        LocalProvider().deploy(broken, timeout=120)
    assert not list((home() / "endpoints").glob("*/endpoint.json"))



@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_a_local_vllm_gets_the_sagemaker_containers_settings(kind, tmp_path, adapters, tiny_model, monkeypatch):
    """With vLLM and a GPU here, deploy starts vLLM's OpenAI server with the LoRA flags the SageMaker container
    gets, or (DoRA) merges the adapter here with train_entry's merge and serves the merged weights."""
    import os

    from train_entry.config import PeftConfig

    from cloudft.errors import CloudftError
    from cloudft.providers.local import LocalProvider
    from cloudft.serving import compat

    # a stand-in for vLLM's OpenAI server (not installable here): records its command line and exits
    fake = tmp_path / "fake-vllm" / "vllm" / "entrypoints" / "openai"
    fake.mkdir(parents=True)
    for d in (fake, fake.parent, fake.parent.parent):
        (d / "__init__.py").write_text("")
    argv_file = tmp_path / "argv.json"
    (fake / "api_server.py").write_text(f"import json, sys\nopen({str(argv_file)!r}, 'w').write(json.dumps(sys.argv))"
                                        "\nsys.exit(1)\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path / 'fake-vllm'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setattr(compat, "local_engine", lambda: "vllm")  # and a GPU
    rec = _local_run(tmp_path, f"vllm-{kind}", adapters["lora"], base_model=str(tiny_model), artifact="adapter",
                     peft=PeftConfig(type=kind, r=12, target_modules=["q_proj", "v_proj"]))
    with pytest.raises(CloudftError, match="exited"):
        LocalProvider().deploy(rec, endpoint_name=f"vllm-{kind}", port=8123, timeout=120)
    argv = json.loads(argv_file.read_text())[1:]  # what vLLM's argument parser would read
    assert argv[argv.index("--port") + 1] == "8123" and argv[argv.index("--host") + 1] == "127.0.0.1"
    flags = {a: argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else "" for i, a in
             enumerate(argv) if a.startswith("--")}
    output = tmp_path / f"vllm-{kind}" / "0-sft" / "output"
    if kind == "lora":
        assert flags["--model"] == str(tiny_model) and flags["--enable-lora"] == ""
        assert flags["--lora-modules"] == f"made={output}" and flags["--max-lora-rank"] == "16"
        assert flags["--max-loras"] == "1" and flags["--served-model-name"] == "made-base"
    else:
        assert flags["--model"] == str(output / "merged") and "--enable-lora" not in flags
        assert flags["--served-model-name"] == "made" and (output / "merged" / "config.json").is_file()
    # the stand-in takes any command line; vLLM's parser does not: every flag must be one vLLM's OpenAI server
    # defines (EngineArgs and the frontend's arguments: vllm/engine/arg_utils.py, vllm/entrypoints/openai/cli_args.py;
    # its own tests start the server with these, e.g. tests/entrypoints/openai/test_lora_adapters.py)
    assert set(flags) <= VLLM_SERVER_FLAGS, set(flags) - VLLM_SERVER_FLAGS
