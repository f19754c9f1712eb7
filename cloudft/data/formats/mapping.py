"""Column mapping (`data.columns`, `data.ignore_columns`): from the user's columns to a format's names.

- A plain value renames a column: `{prompt: question, chosen: response_j, rejected: response_k}`.
- A value with `{column}` placeholders is a template built from several columns:
  `{prompt: "{instruction}\\n\\n{input}"}`. The columns a template reads are used up (not reported as unused).
  When a placeholder's column is empty, the result is stripped of the whitespace around it, so an empty
  `input` leaves the instruction alone.
- A pairwise file with a label column: `{prompt: q, response_a: a, response_b: b, label: winner,
  label_a: "A", label_b: "B"}` (label_a/label_b: the label values meaning "A is better" / "B is better";
  numbers and booleans are fine, `label_a: 1`). Any other label value (a tie, a typo) is an error for that
  record, never a guess.
- `ignore_columns`: columns left out on purpose (they are not reported as unused, nor refused).
"""

from __future__ import annotations

import string
from typing import Any, Callable, Iterable, Optional, Union

from ...errors import CloudftError
from ..problems import RecordError

PAIRWISE = ("response_a", "response_b", "label", "label_a", "label_b")
LABEL_VALUES = ("label_a", "label_b")
ColumnValue = Union[str, int, float, bool]


def template_fields(value: str, where: str) -> list[str]:
    """The column names a template reads ([] for a plain column name); CloudftError for a bad template."""
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise CloudftError(f"data.columns.{where}: {value!r} is not a valid template ({exc})",
                           hint="write placeholders as {column}; a literal brace as {{ or }}") from None
    fields = [name for _, name, spec, conv in parts if name is not None]
    if len(parts) == 1 and parts[0][1] is None:
        return []  # no placeholder: a column name (braces escaped as {{ }} would be odd in one)
    for _, name, spec, conv in parts:
        if name is None:
            continue
        if not name or spec or conv or any(c in name for c in ".[]"):
            raise CloudftError(f"data.columns.{where}: placeholder {{{name}{'!' + conv if conv else ''}"
                               f"{':' + spec if spec else ''}}} is not a plain column name",
                               hint="use {column} only (no format specs, indexes or attributes)")
    return fields


def label_key(value: Any) -> str:
    """A label value in comparable form: 1, "1" and 1.0 agree; text is compared without case or spaces."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().lower()


def _render(template: str, obj: dict, fields: list[str], target: str) -> str:
    values, empty = {}, False
    for name in fields:
        if name not in obj:
            raise RecordError(name, "missing_field", f"column '{name}' (used by the {target} template) is missing")
        value = obj[name]
        if value is None:
            value = ""
        if isinstance(value, (dict, list)):
            raise RecordError(name, "wrong_type", f"column '{name}' is a {type(value).__name__}; a template "
                              "needs text")
        value = str(value)
        empty = empty or not value.strip()
        values[name] = value
    out = template.format(**values)
    return out.strip() if empty else out


def check_columns(columns: Optional[dict[str, Any]], allowed: Iterable[str]) -> None:
    """CloudftError for a mapping that cannot work (unknown names, an incomplete pairwise mapping)."""
    if not columns:
        return
    allowed = set(allowed) | set(PAIRWISE)
    for target, value in columns.items():
        if target not in allowed:
            raise CloudftError(f"data.columns: '{target}' is not a name any format reads",
                               hint=f"map to one of: {', '.join(sorted(allowed))}")
        if target in LABEL_VALUES:
            if not isinstance(value, (str, int, float, bool)):
                raise CloudftError(f"data.columns.{target}: a label value (text, number or true/false)")
        elif not isinstance(value, str) or not value.strip():
            raise CloudftError(f"data.columns.{target}: give the column name (or a template) as text")
        else:
            template_fields(value, target)
    if "response_a" in columns:
        missing = [k for k in PAIRWISE if k not in columns]
        if missing:
            raise CloudftError(f"data.columns: a pairwise mapping needs {', '.join(missing)} too",
                               hint="e.g. {prompt: q, response_a: a, response_b: b, label: winner, label_a: A, "
                                    "label_b: B}: label_b says which value means B is better, so a tie or a "
                                    "typo is reported instead of read as B")
        if label_key(columns["label_a"]) == label_key(columns["label_b"]):
            raise CloudftError("data.columns: label_a and label_b are the same value")
    elif any(k in columns for k in ("response_b", "label_a", "label_b")):
        raise CloudftError("data.columns: response_b, label_a and label_b belong to a pairwise mapping",
                           hint="add response_a (and the others), or drop them")


def make_mapper(columns: Optional[dict[str, Any]], ignore: Iterable[str] = ()) -> Callable[[Any], Any]:
    """A function from a record to the same record under the format's names (identity without a mapping)."""
    ignore = frozenset(ignore or ())
    if not columns and not ignore:
        return lambda obj: obj
    columns = dict(columns or {})
    pairwise = "response_a" in columns
    renames: dict[str, str] = {}
    templates: dict[str, tuple[str, list[str]]] = {}
    for target, value in columns.items():
        if target in LABEL_VALUES or (pairwise and target in ("response_a", "response_b", "label")):
            continue
        fields = template_fields(value, target)
        if fields:
            templates[target] = (value, fields)
        else:
            renames[value] = target
    consumed = {f for _, fields in templates.values() for f in fields}
    if pairwise:
        consumed |= {columns["response_a"], columns["response_b"], columns["label"]}
        key_a, key_b = label_key(columns["label_a"]), label_key(columns["label_b"])
    targets = set(renames.values()) | set(templates) | ({"chosen", "rejected"} if pairwise else set())
    both = ignore & (consumed | set(renames))
    if both:
        raise CloudftError(f"data.ignore_columns: {', '.join(sorted(both))} is also mapped in data.columns",
                           hint="a column is either mapped or ignored")

    def mapper(obj: Any) -> Any:
        if not isinstance(obj, dict):
            return obj
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if k in ignore or k in consumed:
                continue
            if k in renames:
                out[renames[k]] = v
            elif k in targets:
                raise RecordError(k, "mapping_conflict", f"the file has a '{k}' column and data.columns maps "
                                  "another column to that name", f"map or ignore '{k}' too (data.ignore_columns)")
            else:
                out.setdefault(k, v)
        for target, (template, fields) in templates.items():
            out[target] = _render(template, obj, fields, target)
        if pairwise:
            label_col = columns["label"]
            for col in (columns["response_a"], columns["response_b"], label_col):
                if col not in obj:
                    raise RecordError(col, "missing_field", f"column '{col}' is missing")
            value = label_key(obj[label_col])
            if value not in (key_a, key_b):
                raise RecordError(label_col, "wrong_label", f"label {obj[label_col]!r} is neither "
                                  f"{columns['label_a']!r} (A better) nor {columns['label_b']!r} (B better)",
                                  "ties and unknown labels cannot become a preference pair; drop them or fix "
                                  "the value")
            a, b = obj[columns["response_a"]], obj[columns["response_b"]]
            out["chosen"], out["rejected"] = (a, b) if value == key_a else (b, a)
        return out

    return mapper


def source_field(columns: Optional[dict[str, Any]], field: str) -> str:
    """The field name as the user's file spells it (for problem reports)."""
    if not columns:
        return field
    head, sep, rest = field.partition("[") if "[" in field else field.partition(".")
    src = columns.get(head)
    if not isinstance(src, str) or src == head:
        return field
    fields = template_fields(src, head)
    if fields:
        return f"{head} (from {', '.join(fields)})"
    return f"{src}{sep}{rest}"
