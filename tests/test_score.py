"""templates/azure/score.py, staged as `cloudft deploy` uploads it (with cloudft_textgen beside it), run on a tiny
model: hostile bodies get a 400 with a message (never a 500, never a silent accept), limits from the spec hold,
the answer is one JSON object, and it is the adapter's answer."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_serve_local import _adapter


@pytest.fixture(scope="module")
def adapter_dir(tiny_model, tmp_path_factory):
    from peft import LoraConfig

    root = tmp_path_factory.mktemp("azureml-models") / "cloudft-run" / "1"
    return _adapter(tiny_model, root / "adapter", LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                              task_type="CAUSAL_LM"))


def _load_score(monkeypatch, model_dir, base=None, max_new=8, max_prompt=32):
    """score.py from the staged code folder, initialised like the Azure ML inference server does."""
    from cloudft.providers.azure.deploy import serve_code

    code = serve_code()
    assert {"score.py", "cloudft_textgen.py", "cloudft_keyvault.py"} <= {p.name for p in code.iterdir()}
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("CLOUDFT_MAX_NEW_TOKENS", str(max_new))
    monkeypatch.setenv("CLOUDFT_MAX_PROMPT_TOKENS", str(max_prompt))
    monkeypatch.delenv("CLOUDFT_SECRETS", raising=False)
    if base:
        monkeypatch.setenv("CLOUDFT_BASE_MODEL", str(base))
    spec = importlib.util.spec_from_file_location("score_under_test", code / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.init()
    return module


@pytest.fixture(scope="module")
def score(adapter_dir, tiny_model):
    mp = pytest.MonkeyPatch()
    yield _load_score(mp, adapter_dir.parents[1], base=tiny_model)
    mp.undo()


def _error(resp) -> str:
    assert not isinstance(resp, dict), resp
    assert resp.status_code == 400 and resp.mimetype == "application/json"
    return json.loads(resp.get_data())["error"]


HOSTILE = [
    ("[1]", "JSON object"), ("null", "not null"), ('"x"', "not a string"), ("3", "not an integer"),
    ("", "not valid JSON"), ("{", "not valid JSON"), ('{"prompt": "a", "max_new_tokens": NaN}', "NaN"),
    ("[" * 3000 + "]" * 3000, "nested too deeply"),
    ('{"prompt": 5}', "prompt must be a string, not an integer"),
    ('{"prompt": null}', "prompt must be a string, not null"),
    ('{"prompt": ["a"]}', "not an array"),
    ('{"prompt": "a", "max_new_tokens": 1000000000}', "limit of 8"),
    ('{"prompt": "a", "max_new_tokens": true}', "must be an integer, not a boolean"),
    ('{"prompt": "a", "max_new_tokens": 2.5}', "not a number"),
    ('{"prompt": "a", "max_new_tokens": "4"}', "not a string"),
    ('{"prompt": "a", "max_new_tokens": 0}', "at least 1"),
    ('{"prompt": "a", "temperature": 0.5}', "unknown field(s): temperature"),
    ('{"prompt": ""}', "prompt is empty"),
    ('{"max_new_tokens": 4}', "needs a prompt"),
    ('{"input_data": [1]}', "JSON object"),
    ('{"prompt": "a", "adapter": "no"}', "adapter must be a boolean"),
    (json.dumps({"prompt": "word " * 100}), "above this endpoint's limit of 32"),
]


@pytest.mark.parametrize("body, words", HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
def test_hostile_bodies_get_a_400_with_the_reason(score, body, words):
    assert words in _error(score.run(body))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                         lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
                             st.sampled_from(["prompt", "max_new_tokens", "adapter", "input_data", "x"]) | st.text(),
                             kids, max_size=3), max_leaves=10))
def test_fuzzed_bodies_are_answered_or_refused_never_crash(score, body):
    resp = score.run(json.dumps(body))
    if isinstance(resp, dict):  # accepted: only well-typed requests within the limits
        req = body.get("input_data", body)
        assert isinstance(req["prompt"], str) and resp["completion_tokens"] <= 8
        assert set(req) <= {"prompt", "max_new_tokens", "adapter"}
    else:
        _error(resp)


def test_answer_is_one_json_object_and_the_adapters(score, adapter_dir, tiny_model):
    from cloudft.serving.textgen import load_text_model

    resp = score.run(json.dumps({"prompt": "What is the capital of Japan?", "max_new_tokens": 6}))
    assert isinstance(resp, dict) and set(resp) == {"generated_text", "prompt_tokens", "completion_tokens",
                                                    "finish_reason"}
    assert json.loads(json.dumps(resp)) == resp  # what the server sends: an object, encoded once
    ref = load_text_model(str(tiny_model), str(adapter_dir))
    assert resp["generated_text"] == ref.generate(ref.encode("What is the capital of Japan?"), 6).text
    base = score.run(json.dumps({"input_data": {"prompt": "What is the capital of Japan?", "max_new_tokens": 6,
                                                "adapter": False}}))
    assert base["generated_text"] != resp["generated_text"]
    # the context of the model is a limit too (tiny model: 2048 positions)
    big = _load_score(pytest.MonkeyPatch(), adapter_dir.parents[1], base=tiny_model, max_new=4096, max_prompt=4096)
    assert "context is 2048 tokens" in _error(big.run(json.dumps({"prompt": "a", "max_new_tokens": 4000})))


def test_merged_weights_are_served_when_the_run_wrote_them(tmp_path, tiny_model, monkeypatch):
    merged = tmp_path / "azureml-models" / "run" / "1" / "adapter" / "merged"
    shutil.copytree(tiny_model, merged)
    score = _load_score(monkeypatch, tmp_path / "azureml-models")
    assert score.tm.has_adapter is False
    assert isinstance(score.run('{"prompt": "Hello", "max_new_tokens": 3}'), dict)
    assert "no adapter to switch off" in _error(score.run('{"prompt": "Hello", "adapter": false}'))
