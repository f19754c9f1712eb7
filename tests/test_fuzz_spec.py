"""Hostile specs, generated: 0 tracebacks, 0 accepted values a run cannot use.

Two generators (hypothesis, derandomized so CI sees the same inputs every run):
- from the spec's JSON Schema (`cloudft schema`): every section, each value either drawn from what the schema
  allows or a hostile one for its type (bounds ± 1, .inf/.nan, booleans for numbers, numbers for booleans,
  quoted numbers, blank / NUL / control-character text, enum typos, wrong shapes);
- by mutating the example specs in examples/: set any schema path (existing or not) to such a value, drop keys,
  add misspelt ones, and mutate the YAML text itself (duplicated lines, aliases, anchors, tags, truncation).

Every input goes through `load_spec_text` and must either be refused with a SpecError whose every problem has a
file and line, or be accepted and usable. "Usable" is checked against the code and libraries that consume it:
- the spec serialises to strict JSON (no inf/NaN), and each stage's merged training settings validate;
- `build_plan(spec, "local")` succeeds or refuses with a CloudftError (say, a data file that does not exist);
- each stage's run config round-trips through its JSON file unchanged;
- what train_entry builds from a run config before it loads a model accepts it: transformers' TrainingArguments
  (the fields every method shares, via TrainContext.training_args), the peft config (`modeling.peft_config`),
  numpy's seed, and datasketch's MinHash LSH index for `data.near_dup_threshold`.
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cloudft.errors import CloudftError, SpecError  # noqa: E402
from cloudft.spec import JobSpec, json_schema, load_spec_text  # noqa: E402
from train_entry.config import RunConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
DATA_FILES = [str(REPO / "examples" / "data" / n) for n in ("quickstart.jsonl", "preferences.jsonl")]
SCHEMA = json_schema()
PER_GENERATOR = 1100  # two generators: 2,200 specs

FUZZ = settings(max_examples=PER_GENERATOR, deadline=None, derandomize=True, database=None,
                phases=[Phase.generate, Phase.shrink], print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


# -- values from the schema ---------------------------------------------------------------------------------------

def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _types(node: dict) -> list[dict]:
    """The alternatives of a node (anyOf members, resolved)."""
    node = _resolve(node)
    if "anyOf" in node:
        return [m for a in node["anyOf"] for m in _types(a)]
    return [node]


def _bounds(node: dict) -> tuple[Any, Any]:
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    return low, high


TEXTS = st.sampled_from(["", " ", "\t", "x\x00y", " lead", "trail ", "two\nlines", "x" * 3000, "ünï/cødé",
                         "../../etc/passwd", "%", "*", "{a}", "-", "null", "~"])
JUNK = st.sampled_from([None, True, False, 0, -1, 1.5, "", "abc", [], {}, ["x"], {"k": "v"}, "1e-4",
                        float("inf"), float("nan"), 2**64])


def hostile(node: dict) -> st.SearchStrategy:
    """A value of the wrong type or out of range for this node."""
    cases: list[st.SearchStrategy] = [JUNK]
    for alt in _types(node):
        kind = alt.get("type")
        if "enum" in alt or "const" in alt:
            choices = [str(c) for c in alt.get("enum", [alt.get("const")])]
            cases.append(st.sampled_from(choices).flatmap(lambda c: st.sampled_from(
                [c.upper(), c + "x", c[:-1], " " + c, c.replace("_", "-"), c * 2])))
        elif kind in ("number", "integer"):
            low, high = _bounds(alt)
            edges = [v for b in (low, high) if b is not None for v in (b - 1, b - 1e-9, b, b + 1e-9, b + 1, b * 10)]
            edges += [float("inf"), -float("inf"), float("nan"), 2**63, 2**32, -(2**63) - 1, 10**30, True, "7"]
            if kind == "integer":
                edges += [1.5, 2.0]
            cases.append(st.sampled_from(edges))
        elif kind == "string":
            cases.append(TEXTS)
        elif kind == "boolean":
            cases.append(st.sampled_from([0, 1, 2, "yes", "no", "true", "on", "False"]))
        elif kind == "array":
            cases.append(st.sampled_from(["a-string", [None], [[]], [""], [1, 2]]))
        elif kind == "object":
            cases.append(st.sampled_from([["list"], "text", 5, {"not_a_key": 1}]))
    return st.one_of(cases)


# Where a schema-valid string would only ever fail "file not found", draw real files most of the time, so the
# plan and the libraries behind it see the other values too.
SPECIAL = {
    ("data", "train"): st.sampled_from(DATA_FILES),
    ("data", "validation"): st.sampled_from(DATA_FILES + [None]),
    ("base_model",): st.sampled_from(["org/model", "Qwen/Qwen2.5-0.5B", "meta-llama/Meta-Llama-3-8B"]),
    ("secrets",): st.dictionaries(st.sampled_from(["HF_TOKEN", "WANDB_API_KEY", "hf", "PATH", "X-Y"]),
                                  st.sampled_from(["env:HF", "env:", "env:1A", "secretsmanager:a/b",
                                                   "secretsmanager:", "keyvault:kv-name", "keyvault:kv_name",
                                                   "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x",
                                                   "arn:aws:secretsmanager:", "hf_plain_value"]), max_size=2),
}


def valid(node: dict, path: tuple = (), depth: int = 0) -> st.SearchStrategy:
    """A value the schema allows (which our validators may still refuse: that must be a clean SpecError)."""
    key = tuple(p for p in path if not isinstance(p, int))[-2:]
    plain = st.one_of([_valid_one(a, path, depth) for a in _types(node)])
    for k, strat in SPECIAL.items():
        if key[-len(k):] == k:
            return st.one_of(strat, plain)
    return plain


def _valid_one(node: dict, path: tuple, depth: int) -> st.SearchStrategy:
    kind = node.get("type")
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "const" in node:
        return st.just(node["const"])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low, high = _bounds(node)
        low = low + 1 if "exclusiveMinimum" in node else low
        high = high - 1 if "exclusiveMaximum" in node else high
        return st.integers(low if low is not None else -(2**40), high if high is not None else 2**40)
    if kind == "number":
        return st.floats(node.get("minimum", node.get("exclusiveMinimum")),
                         node.get("maximum", node.get("exclusiveMaximum")),
                         exclude_min="exclusiveMinimum" in node, exclude_max="exclusiveMaximum" in node,
                         allow_nan=False, allow_infinity=False)
    if kind == "string":
        if "pattern" in node:
            return st.from_regex(node["pattern"], fullmatch=True)
        return st.text(min_size=node.get("minLength", 0), max_size=12)
    if kind == "array":
        items = node.get("items", {})
        return st.lists(valid(items, path + (0,), depth + 1), min_size=node.get("minItems", 0), max_size=3)
    if kind == "object":
        props = node.get("properties")
        if props is None:
            extra = node.get("additionalProperties", True)
            values = valid(extra, path + ("*",), depth + 1) if isinstance(extra, dict) else \
                st.one_of(st.integers(), st.text(max_size=8), st.booleans(), st.none())
            return st.dictionaries(st.text(min_size=1, max_size=10), values, max_size=3)
        required = set(node.get("required", []))
        return st.fixed_dictionaries(
            {k: valid(v, path + (k,), depth + 1) for k, v in props.items() if k in required},
            optional={k: valid(v, path + (k,), depth + 1) for k, v in props.items() if k not in required},
        )
    return JUNK


def schema_paths(node: dict, path: tuple = ()) -> list[tuple[tuple, dict]]:
    """Every (path, schema node) below `node`, lists entered at index 0."""
    out = [(path, node)] if path else []
    for alt in _types(node):
        if alt.get("type") == "object" and "properties" in alt:
            for k, v in alt["properties"].items():
                out.extend(schema_paths(v, path + (k,)))
        elif alt.get("type") == "array" and len(path) < 2:
            out.extend(schema_paths(alt.get("items", {}), path + (0,)))
    return out


PATHS = schema_paths(SCHEMA)
SCHEMA_VALUES = valid(SCHEMA)
EXAMPLE_DOCS = {p: yaml.safe_load(p.read_text()) for p in EXAMPLES}

# Appended or spliced into the YAML text: YAML-level hostility.
SNIPPETS = ["name: again", "x: &a [*a]", "<<: *nowhere", "---", "\tbad: tab", "? [a, b]\n: 1",
            "y: !!python/object/apply:os.system [echo]", "z: !!binary aGVsbG8=", "when: 2001-01-01",
            "training: {epochs: 1e999}", "peft: {r: .nan}", "a: &b {c: 1}\nd: *b", "nested: " + "[" * 80 + "]" * 80,
            "k: 'unterminated", "1: int key", "null: null key", "~: tilde", "? {x: 1}\n: mapping key",
            "s: \"\\x07bell\"", "s: \"\\0\""]


def _set(doc: dict, path: tuple, new: Any) -> None:
    cur: Any = doc
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(cur, list):
                return
            while len(cur) <= part:
                cur.append({"method": "sft"})
            if not isinstance(cur[part], dict):
                cur[part] = {"method": cur[part] if isinstance(cur[part], str) else "sft"}
            cur = cur[part]
        else:
            if not isinstance(cur.get(part), (dict, list)) or (isinstance(nxt, int) != isinstance(cur[part], list)):
                cur[part] = [] if isinstance(nxt, int) else {}
            cur = cur[part]
    last = path[-1]
    if isinstance(last, int):
        if isinstance(cur, list):
            cur.append(new) if len(cur) <= last else cur.__setitem__(last, new)
    elif isinstance(cur, dict):
        cur[last] = new


def mutate(draw, doc: dict, least: int) -> dict:
    """`least`..3 changes at schema paths (existing or not): mostly a hostile value, else a valid one, a dropped
    key or a misspelt one."""
    for _ in range(draw(st.integers(least, 3))):
        path, node = draw(st.sampled_from(PATHS))
        op = draw(st.sampled_from(["hostile", "hostile", "hostile", "valid", "drop", "misspell"]))
        if op == "drop":
            parent = doc
            for part in path[:-1]:
                parent = parent.get(part) if isinstance(parent, dict) else None
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
        elif op == "misspell":
            _set(doc, path[:-1] + (str(path[-1])[:-1] + "e",), 1)
        else:
            _set(doc, path, draw(hostile(node) if op == "hostile" else valid(node, path, 1)))
    return doc


def mutate_text(draw, text: str) -> str:
    """YAML-level hostility, one time in three: a snippet appended, a line doubled or dropped, a cut."""
    how = draw(st.sampled_from(["none"] * 6 + ["append", "duplicate", "delete", "truncate"]))
    lines = text.splitlines()
    if how == "append":
        text += draw(st.sampled_from(SNIPPETS)) + "\n"
    elif how == "duplicate" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        text = "\n".join(lines[: i + 1] + [lines[i]] + lines[i + 1:]) + "\n"
    elif how == "delete" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        text = "\n".join(lines[:i] + lines[i + 1:]) + "\n"
    elif how == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    return text


@st.composite
def mutated_examples(draw) -> tuple[str, str]:
    source = draw(st.sampled_from(EXAMPLES))
    doc = mutate(draw, copy.deepcopy(EXAMPLE_DOCS[source]), least=1)
    return str(source), mutate_text(draw, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


@st.composite
def schema_specs(draw) -> tuple[str, str]:
    """A spec drawn from the schema, then 0-3 changes (0: the schema-valid spec as drawn)."""
    doc = mutate(draw, draw(SCHEMA_VALUES), least=0)
    return str(REPO / "examples" / "generated.yaml"), yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


# -- what "usable" means -----------------------------------------------------------------------------------------

def _floats(obj: Any) -> list[float]:
    if isinstance(obj, float):
        return [obj]
    if isinstance(obj, dict):
        return [f for v in obj.values() for f in _floats(v)]
    if isinstance(obj, list):
        return [f for v in obj for f in _floats(v)]
    return []


def plan_for(spec: JobSpec):
    """The local plan (the one place this test touches the plan's API)."""
    from cloudft.plan import build_plan
    from cloudft.providers.local import LocalProvider

    return build_plan(spec, "local", locate=LocalProvider().locate)


@lru_cache(maxsize=None)
def _lsh(threshold: float) -> None:
    from cloudft.data.dedup import NearDupIndex

    NearDupIndex(threshold)


@lru_cache(maxsize=None)
def _config_only_model() -> str:
    """A folder with a Llama config and no weights: FSDP's arguments name the model's decoder-layer class, read from
    its config, and the fuzzed specs name a hub id that cannot be fetched here."""
    import tempfile

    from transformers import LlamaConfig

    folder = tempfile.mkdtemp(prefix="cloudft-fuzz-model-")
    LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, vocab_size=64).save_pretrained(folder)
    return folder


@lru_cache(maxsize=None)
def _libraries_accept(run_config_json: str) -> None:
    """What train_entry builds from the run config before loading a model must accept its values."""
    import numpy as np
    from transformers import TrainingArguments

    from train_entry.context import TrainContext
    from train_entry.layout import Layout
    from train_entry.modeling import peft_config
    from train_entry.runtime import World

    rc = RunConfig.model_validate_json(run_config_json)
    if rc.distributed.sharded:
        rc = rc.model_copy(update={"base_model": _config_only_model()})
    layout = Layout(output_dir=Path("/nonexistent/out"), checkpoint_dir=Path("/nonexistent/ckpt"),
                    train=Path("/nonexistent/train.jsonl"), validation=None, init_adapter=None, reward_model=None,
                    platform="local")
    processes = rc.distributed.nnodes * rc.distributed.nproc_per_node  # as the launcher starts them
    ctx = TrainContext(rc, layout, World(0, 0, processes), "fp32")
    args = ctx.training_args()
    if processes > 1:  # the process group the launcher makes does not exist in this one process
        args.pop("ddp_backend", None)
    TrainingArguments(**args)
    peft_config(rc.peft, tokenizer_source="org/model")
    np.random.seed(rc.training.seed)
    if rc.data.near_dup_threshold is not None:
        _lsh(rc.data.near_dup_threshold)


def check(path: str, text: str, stats: Counter) -> None:
    try:
        spec = load_spec_text(text, path)
    except SpecError as exc:  # anything else is a traceback: the test fails with it
        assert exc.problems, "a SpecError without problems"
        for p in exc.problems:
            assert p.file == path and p.line is not None and p.message, f"unlocated problem: {p.render()}"
        stats["refused"] += 1
        return
    stats["accepted"] += 1
    assert all(math.isfinite(f) for f in _floats(spec.model_dump())), "a non-finite number was accepted"
    json.dumps(spec.model_dump(mode="json"), allow_nan=False)
    for i in range(len(spec.stage_list())):
        spec.stage_training(i)
    from cloudft.capabilities import check_capabilities

    if any(f.severity == "error" for f in check_capabilities(spec, "local")):  # `validate` refuses it, located
        stats["refused by capabilities"] += 1
        return
    try:
        plan = plan_for(spec)
    except CloudftError:
        stats["refused at plan"] += 1
        return
    stats["planned"] += 1
    for stage in plan.stages:
        rc = stage.run_config
        assert RunConfig.model_validate_json(rc.to_json()) == rc, "run config does not round-trip"
        _libraries_accept(rc.to_json())
    stats["library-checked"] += 1


@pytest.mark.parametrize("name,strategy,refused_at_least,checked_at_least", [
    ("schema-generated", schema_specs(), PER_GENERATOR // 10, PER_GENERATOR // 10),
    ("mutated example", mutated_examples(), PER_GENERATOR // 4, PER_GENERATOR // 20),
])
def test_hostile_specs(name, strategy, refused_at_least, checked_at_least):
    stats: Counter = Counter()

    @FUZZ
    @given(strategy)
    def one(case: tuple[str, str]) -> None:
        check(*case, stats)

    one()
    print(f"{name} specs: {dict(stats)}")
    assert stats["accepted"] + stats["refused"] >= PER_GENERATOR
    # the generators must keep reaching both sides and the libraries, or the property says little
    assert stats["refused"] >= refused_at_least and stats["library-checked"] >= checked_at_least
