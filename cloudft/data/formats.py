"""Record shapes: detect a file's format and normalise each record to cloudft's canonical form (TRL's columns).

Source formats (DataConfig.format) and the canonical format each becomes:

| source | keys | canonical |
|---|---|---|
| prompt_completion | prompt + completion (or response) | prompt_completion |
| alpaca | instruction (+ input) + output | prompt_completion |
| messages | messages: [{role, content}] | messages |
| sharegpt | conversations: [{from, value}] | messages |
| text | text | text |
| preference | prompt + chosen + rejected (strings or message lists; a shared leading turn is the implicit prompt) | preference |
| hh_rlhf | chosen / rejected dialogs with "\\n\\nHuman:" / "\\n\\nAssistant:" turns | preference (conversational) |
| kto | prompt + completion + label | kto |

`columns` maps canonical names to the file's own (`{prompt: question, chosen: response_j, rejected: response_k}`);
a pairwise file with a label column uses `{prompt: q, response_a: a, response_b: b, label: winner, label_a: "A"}`
(the label value that means A is better).
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Optional

from ..errors import CloudftError
from .problems import RecordError

SOURCE_TO_CANONICAL = {
    "prompt_completion": "prompt_completion", "alpaca": "prompt_completion", "messages": "messages",
    "sharegpt": "messages", "text": "text", "preference": "preference", "hh_rlhf": "preference", "kto": "kto",
}
METHOD_KINDS: dict[str, tuple[str, ...]] = {
    "sft": ("prompt_completion", "messages", "text"),
    "dpo": ("preference",), "orpo": ("preference",), "reward": ("preference",),
    "kto": ("kto",),
    "rl": ("prompt_completion", "preference"),
}
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
                  "model": "assistant", "chatgpt": "assistant", "system": "system"}
LABEL_VALUES = {"true": True, "1": True, "yes": True, "good": True, "desirable": True, "thumbs_up": True,
                "false": False, "0": False, "no": False, "bad": False, "undesirable": False, "thumbs_down": False}
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
PAIRWISE_KEYS = ("response_a", "response_b", "label", "label_a", "label_b")


# -- detection ---------------------------------------------------------------------------------

def detect_format(obj: Any) -> Optional[str]:
    """The source format of one record (after column mapping), or None when its keys fit none."""
    if not isinstance(obj, dict):
        return None
    keys = obj.keys()
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "chosen" in keys and "rejected" in keys:
        chosen = obj.get("chosen")
        if "prompt" not in keys and isinstance(chosen, str) and ASSISTANT in chosen:
            return "hh_rlhf"
        return "preference"
    if "label" in keys and "completion" in keys:
        return "kto"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "prompt" in keys:
        return "prompt_completion"
    if "text" in keys:
        return "text"
    return None


def shape_error(path: str, keys: list[str], method: str) -> CloudftError:
    """The error for a file whose records fit no known shape: shows its keys and an example mapping."""
    kind = METHOD_KINDS.get(method, ("prompt_completion",))[0]
    targets = {"preference": ["prompt", "chosen", "rejected"], "kto": ["prompt", "completion", "label"],
               "messages": ["messages"], "text": ["text"]}.get(kind, ["prompt", "completion"])
    example = ", ".join(f"{t}: {k}" for t, k in zip(targets, keys)) or "prompt: <column>, completion: <column>"
    return CloudftError(
        f"{path}: records have keys {keys}, which fit no known data format "
        "(prompt/completion, instruction/output, messages, conversations, prompt/chosen/rejected, "
        "HH-RLHF chosen/rejected, prompt/completion/label, text)",
        hint=f"map your columns in the spec, e.g. data.columns: {{{example}}}, or set data.format "
             f"(`cloudft data` commands: --columns {','.join(f'{t}={k}' for t, k in zip(targets, keys))})",
    )


# -- column mapping ----------------------------------------------------------------------------

def make_mapper(columns: Optional[dict[str, str]]) -> Callable[[Any], Any]:
    """A function that renames a record's columns to canonical names (identity without a mapping)."""
    if not columns:
        return lambda obj: obj
    pairwise = "response_a" in columns
    rename = {src: canon for canon, src in columns.items() if canon not in PAIRWISE_KEYS}
    label_a = columns.get("label_a")
    label_b = columns.get("label_b")

    def mapper(obj: Any) -> Any:
        if not isinstance(obj, dict):
            return obj
        out = {rename.get(k, k): v for k, v in obj.items()}
        if pairwise:
            a, b = obj.get(columns["response_a"]), obj.get(columns.get("response_b", ""))
            label_col = columns.get("label")
            value = obj.get(label_col) if label_col else None
            if label_col and label_col not in obj:
                raise RecordError(label_col, "missing_field", f"label column '{label_col}' is missing")
            value = str(value).strip()
            if label_b is not None and value not in (str(label_a), str(label_b)):
                raise RecordError(label_col, "wrong_type",
                                  f"label {value!r} is neither {label_a!r} (A better) nor {label_b!r} (B better)")
            a_better = value == str(label_a)
            out["chosen"], out["rejected"] = (a, b) if a_better else (b, a)
        return out

    return mapper


def source_field(columns: Optional[dict[str, str]], field: str) -> str:
    """The field name as the user's file spells it (for problem reports)."""
    if not columns:
        return field
    head, sep, rest = field.partition("[") if "[" in field else field.partition(".")
    src = columns.get(head)
    return f"{src}{sep}{rest}" if src and src != head else field


# -- normalisers -------------------------------------------------------------------------------

def _text(obj: dict, key: str, *, empty_reason: str = "empty_field", name: Optional[str] = None) -> str:
    name = name or key
    if key not in obj or obj[key] is None:
        raise RecordError(name, "missing_field", f"'{name}' is missing")
    value = obj[key]
    if not isinstance(value, str):
        raise RecordError(name, "wrong_type", f"'{name}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise RecordError(name, empty_reason, f"'{name}' is empty")
    return value


def _check_chars(value: str, field: str) -> None:
    m = CONTROL.search(value)
    if m:
        code = ord(m.group())
        what = ("NUL" if code == 0 else "lone surrogate" if 0xD800 <= code <= 0xDFFF
                else f"control character U+{code:04X}")
        raise RecordError(field, "control_chars", f"{what} at character {m.start()}")


def check_chars(record: dict) -> None:
    """Raise RecordError for a NUL, control character or lone surrogate anywhere in a canonical record."""
    for key, value in record.items():
        if isinstance(value, str):
            _check_chars(value, key)
        elif isinstance(value, list):
            for i, msg in enumerate(value):
                _check_chars(msg["content"], f"{key}[{i}].content")


def _messages(value: Any, field: str, *, role_key: str = "role", content_key: str = "content",
              role_map: Optional[dict[str, str]] = None) -> list[dict[str, str]]:
    if value is None:
        raise RecordError(field, "missing_field", f"'{field}' is missing")
    if not isinstance(value, list):
        raise RecordError(field, "wrong_type", f"'{field}' must be a list of messages, got {type(value).__name__}")
    if not value:
        raise RecordError(field, "empty_field", f"'{field}' has no messages")
    out = []
    for i, msg in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(msg, dict):
            raise RecordError(where, "wrong_type", f"message must be an object, got {type(msg).__name__}")
        role = msg.get(role_key)
        if not isinstance(role, str):
            raise RecordError(f"{where}.{role_key}", "missing_field" if role is None else "wrong_type",
                              f"message has no '{role_key}' string")
        mapped = (role_map or {}).get(role.lower(), role) if role_map else role
        if mapped not in ROLES:
            raise RecordError(f"{where}.{role_key}", "unknown_role", f"unknown role {role!r}")
        content = msg.get(content_key)
        if content is None:
            raise RecordError(f"{where}.{content_key}", "missing_field", f"message has no '{content_key}'")
        if not isinstance(content, str):
            raise RecordError(f"{where}.{content_key}", "wrong_type",
                              f"'{content_key}' must be a string, got {type(content).__name__}")
        if not content.strip():
            raise RecordError(f"{where}.{content_key}", "empty_field", "message content is empty")
        out.append({"role": mapped, "content": content})
    return out


def check_turn_order(msgs: list[dict[str, str]], field: str, *, last: Optional[str] = "assistant",
                     first: str = "user") -> None:
    """[system], then alternating turns starting with `first`; the last turn's role must be `last` when given."""
    start = 1 if msgs and msgs[0]["role"] == "system" else 0
    expected = first
    for i, msg in enumerate(msgs[start:], start):
        if msg["role"] != expected:
            raise RecordError(f"{field}[{i}].role", "turn_order",
                              f"turn {i} is '{msg['role']}', expected '{expected}'")
        expected = "assistant" if expected == "user" else "user"
    if start == len(msgs):
        raise RecordError(field, "turn_order", "only a system message, no conversation")
    if last and msgs[-1]["role"] != last:
        raise RecordError(f"{field}[{len(msgs) - 1}].role", "turn_order", f"the last turn must be '{last}'")


def _prompt_completion(obj: dict, *, prompt_only: bool = False) -> dict:
    prompt = obj.get("prompt")
    if isinstance(prompt, list):
        msgs = _messages(prompt, "prompt")
        check_turn_order(msgs, "prompt", last="user")
        out: dict[str, Any] = {"prompt": msgs}
        key = "completion" if "completion" in obj else "response"
        if prompt_only and obj.get(key) in (None, ""):
            return out
        comp = _messages(obj.get(key), key)
        check_turn_order(comp, key, first="assistant")
        out["completion"] = comp
        return out
    out = {"prompt": _text(obj, "prompt", empty_reason="empty_prompt")}
    key = "completion" if "completion" in obj or "response" not in obj else "response"
    if prompt_only and obj.get(key) in (None, ""):
        return out
    out["completion"] = _text(obj, key)
    return out


def _alpaca(obj: dict, **_: Any) -> dict:
    instruction = _text(obj, "instruction", empty_reason="empty_prompt")
    extra = obj.get("input")
    if extra is not None and not isinstance(extra, str):
        raise RecordError("input", "wrong_type", f"'input' must be a string, got {type(extra).__name__}")
    prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    return {"prompt": prompt, "completion": _text(obj, "output")}


def _chat(obj: dict, **_: Any) -> dict:
    msgs = _messages(obj.get("messages"), "messages")
    check_turn_order(msgs, "messages")
    return {"messages": msgs}


def _sharegpt(obj: dict, **_: Any) -> dict:
    msgs = _messages(obj.get("conversations"), "conversations", role_key="from", content_key="value",
                     role_map=SHAREGPT_ROLES)
    check_turn_order(msgs, "conversations")
    return {"messages": msgs}


def _plain_text(obj: dict, **_: Any) -> dict:
    return {"text": _text(obj, "text")}


def _preference(obj: dict, **_: Any) -> dict:
    chosen, rejected = obj.get("chosen"), obj.get("rejected")
    if isinstance(chosen, list) or isinstance(rejected, list):
        return _conversational_preference(obj, chosen, rejected)
    out = {"prompt": _text(obj, "prompt", empty_reason="empty_prompt"),
           "chosen": _text(obj, "chosen"), "rejected": _text(obj, "rejected")}
    if out["chosen"].strip() == out["rejected"].strip():
        raise RecordError("rejected", "chosen_equals_rejected", "chosen and rejected are the same text")
    return out


def _conversational_preference(obj: dict, chosen: Any, rejected: Any) -> dict:
    c, r = _messages(chosen, "chosen"), _messages(rejected, "rejected")
    if "prompt" in obj and obj["prompt"] is not None:
        prompt = _messages(obj["prompt"], "prompt")
    else:  # implicit prompt: the shared leading turns
        n = 0
        while n < min(len(c), len(r)) - 1 and c[n] == r[n]:
            n += 1
        prompt, c, r = c[:n], c[n:], r[n:]
        if not prompt:
            raise RecordError("prompt", "empty_prompt", "chosen and rejected share no leading turn to use as prompt")
    check_turn_order(prompt, "prompt", last="user")
    check_turn_order(c, "chosen", first="assistant")
    check_turn_order(r, "rejected", first="assistant")
    if c == r:
        raise RecordError("rejected", "chosen_equals_rejected", "chosen and rejected are the same messages")
    return {"prompt": prompt, "chosen": c, "rejected": r}


def split_hh_dialog(text: str, field: str) -> tuple[list[dict[str, str]], str]:
    """Split an HH-RLHF dialog into its prompt turns (user/assistant messages) and the final assistant reply."""
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        raise RecordError(field, "wrong_type", "no '\\n\\nAssistant:' turn in the dialog")
    head, reply = text[:cut], text[cut + len(ASSISTANT):]
    turns: list[dict[str, str]] = []
    for part in re.split(r"(\n\nHuman:|\n\nAssistant:)", head)[1:]:
        if part in (HUMAN, ASSISTANT):
            turns.append({"role": "user" if part == HUMAN else "assistant", "content": ""})
        elif turns:
            turns[-1]["content"] = part.strip()
    if not turns:
        raise RecordError(field, "empty_prompt", "no '\\n\\nHuman:' turn before the last assistant reply")
    return turns, reply.strip()


def _hh_rlhf(obj: dict, **_: Any) -> dict:
    chosen, rejected = _text(obj, "chosen"), _text(obj, "rejected")
    p1, c = split_hh_dialog(chosen, "chosen")
    p2, r = split_hh_dialog(rejected, "rejected")
    if p1 != p2:
        raise RecordError("rejected", "turn_order", "chosen and rejected have different dialog histories",
                          "both dialogs must share every turn before the last assistant reply")
    for i, turn in enumerate(p1):
        if not turn["content"]:
            raise RecordError(f"chosen (turn {i + 1})", "empty_field", "empty turn in the dialog history")
    check_turn_order(p1, "prompt", last="user")
    if not c:
        raise RecordError("chosen", "empty_field", "the chosen reply is empty")
    if not r:
        raise RecordError("rejected", "empty_field", "the rejected reply is empty")
    if c == r:
        raise RecordError("rejected", "chosen_equals_rejected", "chosen and rejected replies are the same")
    return {"prompt": p1, "chosen": [{"role": "assistant", "content": c}],
            "rejected": [{"role": "assistant", "content": r}]}


def _kto(obj: dict, **_: Any) -> dict:
    out = _prompt_completion({k: obj.get(k) for k in ("prompt", "completion")})
    label = obj.get("label")
    if isinstance(label, bool):
        out["label"] = label
    elif isinstance(label, (int, float)) and label in (0, 1):
        out["label"] = bool(label)
    elif isinstance(label, str) and label.strip().lower() in LABEL_VALUES:
        out["label"] = LABEL_VALUES[label.strip().lower()]
    elif label is None:
        raise RecordError("label", "missing_field", "'label' is missing")
    else:
        raise RecordError("label", "wrong_type", f"'label' must be true or false, got {label!r}")
    return out


NORMALISERS: dict[str, Callable[..., dict]] = {
    "prompt_completion": _prompt_completion, "alpaca": _alpaca, "messages": _chat, "sharegpt": _sharegpt,
    "text": _plain_text, "preference": _preference, "hh_rlhf": _hh_rlhf, "kto": _kto,
}


def normalise(obj: Any, fmt: str, *, prompt_only: bool = False, chars: bool = True) -> dict:
    """The canonical record for `obj` in source format `fmt`; raises RecordError naming the field and reason.

    `chars=False` skips the control-character scan (the reader knows the raw line cannot hold one).
    """
    if not isinstance(obj, dict):
        raise RecordError("", "not_an_object", f"record is a {type(obj).__name__}, not an object")
    if fmt == "prompt_completion":
        rec = _prompt_completion(obj, prompt_only=prompt_only)
    else:
        rec = NORMALISERS[fmt](obj)
    if chars:
        check_chars(rec)
    return rec


def prompt_key(record: dict) -> Optional[str]:
    """The record's prompt as text (for prompt-level split and leakage checks), None without a prompt."""
    prompt = record.get("prompt")
    if prompt is None:
        msgs = record.get("messages")
        if not msgs:
            return None
        prompt = [m for m in msgs if m["role"] != "assistant"][:2]
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False, sort_keys=True)


def record_text(record: dict) -> str:
    """All the text of a canonical record, for near-duplicate and PII checks."""
    parts: list[str] = []
    for key in ("prompt", "completion", "chosen", "rejected", "text", "messages"):
        value = record.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(m["content"] for m in value)
    return "\n".join(parts)
