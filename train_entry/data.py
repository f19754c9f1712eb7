"""Read canonical training data (JSONL/JSON/CSV/Parquet, gzip ok) into a `datasets.Dataset`.

train_entry reads only the canonical formats (TRL's column names); `cloudft data prepare` converts
everything else before upload. Format `auto` is decided from the first record's keys.

Conversations with tool calling (a `tools` column, assistant `tool_calls`, `tool` messages, or OpenAI's
`weight: 0` on an assistant turn) are tokenized here for SFT (`render_tool_conversations`): each is rendered
through the tokenizer's chat template with `tools=`, and only assistant turns are trained on (the masks come from
rendering each conversation prefix, so they hold for any template that renders prefixes as prefixes). In the
`datasets.Dataset` the tool schemas and call arguments are JSON text, so records with different argument
shapes share one Arrow schema; `restore_messages` gives the messages back as the chat template takes them.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Optional

CANONICAL_KEYS = {
    "preference": {"prompt", "chosen", "rejected"},
    "kto": {"prompt", "completion", "label"},
    "prompt_completion": {"prompt", "completion"},
    "messages": {"messages"},
    "text": {"text"},
}

OPTIONAL_KEYS = {"tools"}  # tool schemas beside conversational records (TRL's tool calling)
MESSAGE_KEYS = ("role", "content", "tool_calls", "name", "tool_call_id")  # what chat templates read

METHOD_FORMATS = {
    "sft": ("prompt_completion", "messages", "text"),
    "dpo": ("preference",),
    "orpo": ("preference",),
    "reward": ("preference",),
    "kto": ("kto", "preference"),  # TRL splits pairs into good/bad labels
    "rl": ("prompt_completion", "preference", "messages", "kto"),
}


class DataError(ValueError):
    """The data cannot be used for this method (exit code 2)."""


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL / JSON array / CSV / Parquet file (gzip ok). Line numbers are kept in errors."""
    name = path.name
    if name.endswith((".parquet",)):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig") as fh:
        if name.endswith((".csv", ".csv.gz")):
            import csv

            return list(csv.DictReader(fh))
        text = fh.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(stripped)
    records = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{i}: invalid JSON ({exc.msg}); run `cloudft data validate` on it") from None
    return records


def detect_format(record: dict[str, Any]) -> str:
    keys = set(record)
    for fmt, needed in CANONICAL_KEYS.items():
        if needed <= keys:
            return fmt
    raise DataError(
        f"unrecognised record keys {sorted(keys)}; train_entry reads canonical data "
        "(prompt/completion, messages, text, prompt/chosen/rejected, prompt/completion/label). "
        "Convert with `cloudft data prepare`."
    )


def _arrow_messages(value: Any) -> Any:
    """Messages with tool-call arguments as JSON text (one Arrow type for every argument shape)."""
    if not isinstance(value, list):
        return value
    out = []
    for m in value:
        if isinstance(m, dict) and m.get("tool_calls"):
            calls = [{**c, "function": {**c["function"], "arguments": _json_text(c["function"].get("arguments"))}}
                     for c in m["tool_calls"]]
            m = {**m, "tool_calls": calls}
        out.append(m)
    return out


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value if value is not None else {})


def restore_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as a chat template takes them: keys Arrow filled with null dropped, arguments decoded."""
    out = []
    for m in messages:
        msg = {k: m[k] for k in MESSAGE_KEYS if m.get(k) is not None}
        if msg.get("tool_calls"):
            msg["tool_calls"] = [
                {k: v for k, v in {**c, "function": {
                    "name": c["function"]["name"],
                    "arguments": json.loads(c["function"]["arguments"]) if isinstance(c["function"]["arguments"], str)
                    else c["function"]["arguments"]}}.items() if v is not None}
                for c in msg["tool_calls"]]
        out.append(msg)
    return out


def has_tool_content(rows: list[dict[str, Any]]) -> bool:
    """Whether any conversation uses tools, tool calls, tool results or per-turn weights."""
    for r in rows:
        if r.get("tools"):
            return True
        for key in ("messages", "prompt", "completion", "chosen", "rejected"):
            value = r.get(key)
            if isinstance(value, list) and any(isinstance(m, dict) and (m.get("role") == "tool" or m.get("tool_calls")
                                                                        or m.get("weight") is not None)
                                               for m in value):
                return True
    return False


def load_dataset(path: Path, fmt: str, method: str, columns: Optional[dict[str, Any]] = None):
    """A `datasets.Dataset` with only the canonical columns for `fmt` (and `tools`), checked against `method`."""
    from datasets import Dataset

    records = read_records(path)
    if not records:
        raise DataError(f"{path}: no records")
    if columns:
        rename = {theirs: ours for ours, theirs in columns.items() if isinstance(theirs, str)}
        records = [{rename.get(k, k): v for k, v in r.items()} for r in records]
    if fmt in ("auto", None):
        fmt = detect_format(records[0])
    if fmt not in CANONICAL_KEYS:
        raise DataError(f"{path}: format '{fmt}' is not canonical; convert it with `cloudft data prepare`")
    allowed = METHOD_FORMATS[method]
    if fmt not in allowed:
        raise DataError(f"{path}: method '{method}' needs {' or '.join(allowed)} data, got {fmt}")
    keep = sorted(CANONICAL_KEYS[fmt])
    optional = sorted(k for k in OPTIONAL_KEYS if any(k in r for r in records))
    dropped = sorted({k for r in records for k in r} - set(keep) - set(optional))
    if dropped:
        from .events import log

        log(f"{path.name}: columns not used by the {fmt} format, left out: {', '.join(dropped)}")
    rows = []
    for i, r in enumerate(records, start=1):
        missing = [k for k in keep if k not in r]
        if missing:
            raise DataError(f"{path}: record {i} lacks {missing}")
        row = {k: r[k] for k in keep}
        for k in optional:  # every row gets every column (Dataset.from_list reads the first row's keys only)
            value = r.get(k)
            row[k] = json.dumps(value) if value is not None and not isinstance(value, str) else value
        rows.append(row)
    if fmt == "kto":
        for r in rows:
            r["label"] = r["label"] in (True, 1, "true", "True", "1", "good", "up")
    if has_tool_content(rows):
        for r in rows:
            for k in ("messages", "prompt", "completion", "chosen", "rejected"):
                if k in r:
                    r[k] = _arrow_messages(r[k])
    return Dataset.from_list(rows), fmt


def render_conversation(tokenizer: Any, messages: list[dict[str, Any]], tools: Optional[list] = None,
                        trained: Optional[list[bool]] = None) -> tuple[list[int], list[int]]:
    """(input_ids, assistant mask) of one conversation rendered with the chat template and `tools`.

    An assistant turn's tokens are those between the rendering of the conversation before it (with the
    generation prompt) and the rendering through it, so its end-of-turn token is trained and its header is not.
    `trained[i]` False leaves assistant turn i out of the loss (OpenAI's weight 0)."""

    def render(msgs: list[dict[str, Any]], **kw: Any) -> str:
        return tokenizer.apply_chat_template(msgs, tools=tools, tokenize=False, **kw)

    full = render(messages)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant" or (trained is not None and not trained[i]):
            continue
        start = len(render(messages[:i], add_generation_prompt=True)) if i else 0
        through = render(messages[:i + 1])
        if not full.startswith(through) or start > len(through):
            raise DataError("the chat template renders a conversation's start differently from the whole "
                            "conversation, so the assistant turns cannot be located for the loss mask")
        spans.append((start, len(through)))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(s <= a < e for s, e in spans)) for a, _ in enc["offset_mapping"]]
    return list(enc["input_ids"]), mask


def render_tool_conversations(ds: Any, tokenizer: Any) -> Any:
    """SFT data with tool calling, tokenized (input_ids + assistant_masks) through the chat template with
    `tools=`; any other dataset is returned unchanged (TRL tokenizes it)."""
    if ds is None or "messages" not in ds.column_names:
        return ds
    rows = ds.to_list()
    if not has_tool_content(rows):
        return ds
    from datasets import Dataset

    if not getattr(tokenizer, "chat_template", None):
        raise DataError("the data has tool calls, but the tokenizer has no chat template to render them with")
    out: dict[str, list] = {"input_ids": [], "assistant_masks": []}
    for i, r in enumerate(rows, 1):
        tools = r.get("tools")
        tools = json.loads(tools) if isinstance(tools, str) else tools
        trained = [m.get("weight") != 0 for m in r["messages"]]
        try:
            ids, mask = render_conversation(tokenizer, restore_messages(r["messages"]), tools, trained)
        except DataError as exc:
            raise DataError(f"record {i}: {exc}") from None
        if 1 not in mask:
            raise DataError(f"record {i}: no assistant turn to train on")
        out["input_ids"].append(ids)
        out["assistant_masks"].append(mask)
    return Dataset.from_dict(out)
