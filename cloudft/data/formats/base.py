"""What every source format shares: the `SourceFormat` record, the registry, and the field checks.

A source format is one way a tool writes training data (LLaMA-Factory's alpaca, OpenAI chat, TRL's preference
columns, ...). Each knows which top-level keys it reads (`keys`), which it needs (`required`), what each source
column becomes (`columns`), and how to convert one record to cloudft's canonical form (TRL's columns). Detection
(`detect.py`) scores every registered format against the first records; conversion is `SourceFormat.convert`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

from ..problems import RecordError

CANONICAL = ("prompt_completion", "messages", "text", "preference", "kto")
LABEL_VALUES = {"true": True, "1": True, "yes": True, "good": True, "desirable": True, "thumbs_up": True,
                "false": False, "0": False, "no": False, "bad": False, "undesirable": False, "thumbs_down": False}
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# keys a chat message may have in OpenAI's and TRL's chat formats (`function_call` and the `function` role are
# OpenAI's deprecated forms of tool calls; `training` is Axolotl's per-message train flag)
MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "name", "tool_call_id", "weight", "function_call",
                          "training"})
MAX_DEPTH = 32  # nesting allowed inside tool schemas and call arguments (canonical records are flat otherwise)

# Unused columns with these names carry a label or a target: dropping them would change what is trained on.
TARGET_LIKE = re.compile(
    r"^(labels?|scores?|ratings?|ground_truth|targets?|winner|preference|preferred.*|non_preferred.*|better.*|"
    r"chosen.*|rejected.*|responses?(_.*)?|outputs?(_.*)?|completions?(_.*)?|answers?(_.*)?|rewards?|kto_tag|"
    r"gold.*|reference.*|expected.*|.*_(label|score|rating|answer|response|output|completion))$", re.I)


def looks_like_target(column: str) -> bool:
    """True when an unused column's name says it holds a label, score or target answer."""
    return bool(TARGET_LIKE.match(column))


@dataclass(frozen=True)
class SourceFormat:
    """One source format: how to recognise it, what its columns become, and how to convert a record."""

    name: str  # the value of data.format
    canonical: str  # the canonical kind it becomes (CANONICAL)
    convert: Callable[..., dict]  # (record, prompt_only=False) -> canonical record; raises RecordError
    required: tuple[str, ...]  # keys a record needs for this format to apply
    columns: dict[str, str]  # every key it reads -> what it becomes (docs, hints, the unused-column report)
    origin: str  # who writes it
    reference: str  # where its published description is
    example: dict  # an example record in this format (docs/data.md, tests)
    evidence: Optional[Callable[[dict], float]] = None  # shape evidence added to the score; -1 rules it out
    nested: tuple[str, ...] = ()  # keys holding message lists whose per-message keys are checked too
    message_keys: frozenset = MESSAGE_KEYS  # keys a message may have (for `nested`)
    priority: int = 0  # breaks ties in detection: the lower wins (a general form loses to the plain one)
    keys: frozenset = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", frozenset(self.columns))

    def score(self, obj: dict) -> float:
        """How well a (mapped) record fits: the share of its keys this format reads, plus shape evidence;
        0 when a required key is missing or the evidence rules it out."""
        if not obj or any(k not in obj for k in self.required):
            return 0.0
        bonus = self.evidence(obj) if self.evidence is not None else 0.0
        if bonus <= -1:
            return 0.0
        return sum(1 for k in obj if k in self.keys) / len(obj) + bonus

    def unused(self, obj: dict) -> list[str]:
        """Keys of a record this format does not read (nested message keys as `messages[].key`)."""
        out = [k for k in obj if k not in self.keys]
        for key in self.nested:
            msgs = obj.get(key)
            if isinstance(msgs, dict):
                msgs = [msgs]
            if isinstance(msgs, list):
                extra = {k for m in msgs if isinstance(m, dict) for k in m if k not in self.message_keys}
                out.extend(f"{key}[].{k}" for k in sorted(extra))
        return out


REGISTRY: dict[str, SourceFormat] = {}


def register(*formats: SourceFormat) -> None:
    for fmt in formats:
        if fmt.name in REGISTRY:
            raise ValueError(f"source format {fmt.name} registered twice")
        if fmt.canonical not in CANONICAL:
            raise ValueError(f"{fmt.name}: unknown canonical format {fmt.canonical}")
        REGISTRY[fmt.name] = fmt


# -- field checks shared by the converters ------------------------------------------------------------

def text(obj: dict, key: str, *, empty_reason: str = "empty_field", name: Optional[str] = None,
         allow_empty: bool = False) -> str:
    """The string at `key`; RecordError when it is missing, not a string or blank."""
    name = name or key
    if key not in obj or obj[key] is None:
        raise RecordError(name, "missing_field", f"'{name}' is missing")
    value = obj[key]
    if not isinstance(value, str):
        raise RecordError(name, "wrong_type", f"'{name}' must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RecordError(name, empty_reason, f"'{name}' is empty")
    return value


def optional_text(obj: dict, key: str) -> str:
    """An optional string field ('' when absent or null)."""
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError(key, "wrong_type", f"'{key}' must be a string, got {type(value).__name__}")
    return value


def join_prompt(first: str, second: str) -> str:
    """An instruction and its optional input, as one prompt (a blank line between; no input, no blank line)."""
    return f"{first}\n\n{second}" if second.strip() else first


def bool_label(value: Any, field_: str) -> bool:
    """A desirable/undesirable label: bool, 0/1, or true/false, yes/no, good/bad, ... as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in LABEL_VALUES:
        return LABEL_VALUES[value.strip().lower()]
    if value is None:
        raise RecordError(field_, "missing_field", f"'{field_}' is missing")
    raise RecordError(field_, "wrong_type", f"'{field_}' must be true or false, got {str(value)[:40]!r}")


def is_bool_label(value: Any) -> bool:
    """Whether `value` reads as a desirable/undesirable label (detection evidence)."""
    try:
        bool_label(value, "")
    except RecordError:
        return False
    return True


def check_depth(value: Any, field_: str, limit: int = MAX_DEPTH) -> None:
    """RecordError when `value` nests lists/objects deeper than `limit` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                raise RecordError(field_, "too_deep", f"nested more than {limit} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def parse_json_text(value: Any, field_: str, what: str) -> Any:
    """A JSON value given as text (tools and arguments are often JSON strings); other values as they are."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise RecordError(field_, "wrong_type", f"{what} is not valid JSON ({str(exc)[:80]})") from None


def strings(value: Any) -> Iterator[tuple[str, str]]:
    """(path, string) for every string inside a canonical record, keys of nested objects included."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            yield path, item
        elif isinstance(item, dict):  # children pushed in reverse: reported in document order
            for k, v in reversed(list(item.items())):
                where = f"{path}.{k}" if path else str(k)
                stack.append((where, v))
                if isinstance(k, str):
                    stack.append((where, k))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", item[i]) for i in range(len(item) - 1, -1, -1))


def check_chars(record: dict) -> None:
    """Raise RecordError for a NUL, control character or lone surrogate anywhere in a canonical record."""
    for path, value in strings(record):
        m = CONTROL.search(value)
        if m:
            code = ord(m.group())
            what = ("NUL" if code == 0 else "lone surrogate" if 0xD800 <= code <= 0xDFFF
                    else f"control character U+{code:04X}")
            raise RecordError(path, "control_chars", f"{what} at character {m.start()}")
