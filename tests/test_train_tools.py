"""Tool calling end to end (issue 15, item 6): OpenAI/LLaMA-Factory tool-calling data → cloudft's canonical
messages + tools → train_entry renders each conversation through the tokenizer's chat template with `tools=`
and trains on assistant turns only (tool results, user turns and the tool schemas are not trained on)."""

from __future__ import annotations

import json
import shutil

import pytest

from cloudft.data.pipeline import Options
from cloudft.data.store import prepare_files
from data_fixtures import write_jsonl
from format_fixtures import LF_SHAREGPT_TOOLS, OPENAI_TOOLS

# a chat template that renders tools and tool calls, in the style of the tool-aware templates transformers ships
TOOL_TEMPLATE = (
    "{% if tools %}{{ '<|system|>\nTools: ' + (tools | tojson) + eos_token + '\n' }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' and message.tool_calls is defined and message.tool_calls %}"
    "{{ '<|assistant|>\n' }}{% for call in message.tool_calls %}"
    "{{ '<call>' + (call['function'] | tojson) + '</call>' }}{% endfor %}{{ eos_token + '\n' }}"
    "{% else %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory, tiny_model):
    """The session's tiny model with a tool-aware chat template."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tool-model") / "m"
    shutil.copytree(tiny_model, out)
    tok = AutoTokenizer.from_pretrained(out)
    tok.chat_template = TOOL_TEMPLATE
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def canonical(tmp_path_factory):
    """OpenAI and LLaMA-Factory tool-calling records through `cloudft data prepare` (canonical messages)."""
    tmp = tmp_path_factory.mktemp("tool-data")
    out = []
    for name, recs in (("openai", OPENAI_TOOLS), ("sharegpt", LF_SHAREGPT_TOOLS)):
        prepare_files([(write_jsonl(tmp / f"{name}.jsonl", recs), "train")], Options(method="sft"), tmp / name)
        out.append(tmp / name / "train.jsonl")
    return out


def _trained_text(tok, ids, mask):
    return tok.decode([i for i, m in zip(ids, mask) if m])


def test_rendered_with_tools_and_only_assistant_turns_trained(tool_model, canonical):
    from transformers import AutoTokenizer

    from train_entry.data import load_dataset, render_tool_conversations

    tok = AutoTokenizer.from_pretrained(tool_model)
    ds, fmt = load_dataset(canonical[0], "auto", "sft")
    assert fmt == "messages" and "tools" in ds.column_names
    rows = render_tool_conversations(ds, tok)
    ids, mask = rows[0]["input_ids"], rows[0]["assistant_masks"]
    full = tok.decode(ids)
    assert 'Tools: [{"type": "function", "function": {"name": "get_weather"' in full  # rendered with tools=
    assert '<call>{"name": "get_weather", "arguments": {"city": "Paris"}}</call>' in full
    trained = _trained_text(tok, ids, mask)
    assert trained == ('<call>{"name": "get_weather", "arguments": {"city": "Paris"}}</call></s>\n'
                       "It is 18 C and cloudy in Paris.</s>\n")
    assert "temp_c" not in trained and "What is the weather" not in trained and "Tools:" not in trained
    # OpenAI weight 0: the assistant turn stays in the context, out of the loss
    ids, mask = rows[2]["input_ids"], rows[2]["assistant_masks"]
    assert "Yo." in tok.decode(ids) and _trained_text(tok, ids, mask) == "Hello!</s>\n"
    # LLaMA-Factory function_call / observation turns end up the same way
    ds, _ = load_dataset(canonical[1], "auto", "sft")
    row = render_tool_conversations(ds, tok)[0]
    assert _trained_text(tok, row["input_ids"], row["assistant_masks"]).startswith('<call>{"name": "get_weather"')


def test_sft_trainer_trains_on_assistant_tokens_only(tool_model, canonical, tmp_path):
    from train_entry.config import DataConfig, OutputsConfig, PeftConfig, RunConfig, TrainingConfig
    from train_entry.context import TrainContext
    from train_entry.layout import resolve
    from train_entry.methods.sft import build_trainer
    from train_entry.runtime import World

    cfg = RunConfig(name="tools", base_model=str(tool_model), peft=PeftConfig(type="none"),
                    data=DataConfig(train=str(canonical[0])),
                    training=TrainingConfig(max_steps=1, per_device_batch_size=2, max_length=512, packing=True),
                    outputs=OutputsConfig(output_dir=str(tmp_path / "o"), checkpoint_dir=str(tmp_path / "c")))
    ctx = TrainContext(cfg=cfg, layout=resolve(cfg, tmp_path / "run.json"), world=World(0, 0, 1), precision="fp32")
    trainer = build_trainer(ctx)
    tok = trainer.processing_class
    labelled = [tok.decode([t for t, lab in zip(r["input_ids"], r["labels"]) if lab != -100])
                for r in trainer.train_dataset]
    joined = "".join(labelled)
    assert "It is 18 C and cloudy in Paris." in joined and "Hello!" in joined
    assert "temp_c" not in joined and "Weather in Oslo" not in joined and "Yo." not in joined
    metrics = trainer.train().metrics
    assert metrics["train_loss"] == metrics["train_loss"]  # a number, not NaN


def test_a_template_that_renders_prefixes_differently_is_a_clear_error(tool_model, canonical):
    from transformers import AutoTokenizer

    from train_entry.data import DataError, load_dataset, render_tool_conversations

    tok = AutoTokenizer.from_pretrained(tool_model)
    tok.chat_template = "{{ messages | length }}:" + TOOL_TEMPLATE  # the message count changes every prefix
    ds, _ = load_dataset(canonical[0], "auto", "sft")
    with pytest.raises(DataError, match="record 1: the chat template renders a conversation's start differently"):
        render_tool_conversations(ds, tok)


def test_datasets_keep_one_schema_for_different_argument_shapes(tmp_path):
    from train_entry.data import load_dataset, restore_messages

    calls = [{"city": "Paris"}, {"lat": 1.5, "lon": 2.5, "units": "metric"}]
    recs = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": a}}]},
        {"role": "tool", "content": "r"}, {"role": "assistant", "content": "ok"}]} for a in calls]
    ds, _ = load_dataset(write_jsonl(tmp_path / "c.jsonl", recs), "messages", "sft")
    back = [restore_messages(r["messages"])[1]["tool_calls"][0]["function"]["arguments"] for r in ds]
    assert back == calls  # no null-filled keys from the other record's arguments
    assert json.loads(json.dumps(back)) == calls


def test_evaluation_renders_stored_tool_calls_as_the_template_expects(tool_model, canonical):
    """Evaluation reads the same canonical file: tool-call arguments stored as JSON text are decoded before the
    chat template sees them (otherwise the template would write them JSON-encoded twice)."""
    from transformers import AutoTokenizer

    from train_entry.data import load_dataset
    from train_entry.evaluate import completions

    tok = AutoTokenizer.from_pretrained(tool_model)
    rows = load_dataset(canonical[0], "messages", "sft")[0].to_list()
    with_calls = [r for r in rows if any(m.get("tool_calls") for m in r["messages"])]
    assert with_calls
    prompt, _ = completions(with_calls[:1], "messages", tok)[0]
    assert '<call>{"name": ' in prompt and '"arguments": {' in prompt  # arguments as an object, not a string
    assert '\\"' not in prompt
