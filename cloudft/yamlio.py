"""Load a YAML file safely and remember where every value came from (line, column).

Guards against hostile input before anything is built: size cap, binary content, alias bombs
(expanded node count is bounded), and documents that are not a mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import Problem, SpecError

MAX_BYTES = 1_000_000
MAX_EXPANDED_NODES = 100_000
MAX_DEPTH = 64

Loc = tuple  # a path of keys/indices, e.g. ("peft", "r")


@dataclass
class LocatedDoc:
    """A parsed YAML document plus the source position of every key and value."""

    path: str
    data: dict
    positions: dict  # Loc -> (line, col) of the value (1-based)
    key_positions: dict  # Loc -> (line, col) of the key

    def where(self, loc: Loc) -> tuple[Optional[int], Optional[int]]:
        """Best position for `loc`: the exact key or value, else the nearest ancestor."""
        loc = tuple(loc)
        while True:
            if loc in self.key_positions:
                return self.key_positions[loc]
            if loc in self.positions:
                return self.positions[loc]
            if not loc:
                return (None, None)
            loc = loc[:-1]

    def value_where(self, loc: Loc) -> tuple[Optional[int], Optional[int]]:
        """Position of the value at `loc` (where a wrong value is), else as `where`."""
        return self.positions.get(tuple(loc)) or self.where(loc)

    def problem(self, loc: Loc, message: str, fix: Optional[str] = None) -> Problem:
        line, col = self.where(loc)
        return Problem(self.path, line, col, ".".join(str(p) for p in loc), message, fix)


def _fail(path: str, message: str, fix: Optional[str] = None, line=None, col=None) -> SpecError:
    return SpecError([Problem(path, line, col, "", message, fix)])


def _check_expansion(root: yaml.Node, path: str) -> None:
    """Reject alias bombs: count nodes as if every alias were expanded, with memoisation."""
    memo: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise _fail(path, f"the document nests deeper than {MAX_DEPTH} levels", line=node.start_mark.line + 1)
        key = id(node)
        if key in memo:
            return memo[key]
        memo[key] = 1  # breaks cycles (recursive anchors)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k, depth + 1) + size(v, depth + 1)
                if total > MAX_EXPANDED_NODES:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for v in node.value:
                total += size(v, depth + 1)
                if total > MAX_EXPANDED_NODES:
                    break
        memo[key] = total
        return total

    if size(root, 0) > MAX_EXPANDED_NODES:
        raise _fail(
            path,
            f"the document expands to more than {MAX_EXPANDED_NODES} values (anchors/aliases used as a bomb?)",
            fix="a job spec is a small mapping; remove the repeated aliases",
        )


def _walk(node: yaml.Node, loc: Loc, positions: dict, key_positions: dict) -> None:
    positions[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            child = loc + (k.value if isinstance(k, yaml.ScalarNode) else str(k.value),)
            key_positions[child] = (k.start_mark.line + 1, k.start_mark.column + 1)
            _walk(v, child, positions, key_positions)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _walk(v, loc + (i,), positions, key_positions)


def load_text(text: str, path: str = "<string>") -> LocatedDoc:
    """Parse YAML text into a located mapping, or raise SpecError."""
    if "\x00" in text:
        raise _fail(path, "this is a binary file, not YAML", fix="pass a YAML job spec (see `cloudft init`)")
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        raise _fail(path, f"invalid YAML: {exc.problem or exc}", fix="check indentation and quoting on that line",
                    line=line, col=col) from None
    except yaml.YAMLError as exc:
        raise _fail(path, f"invalid YAML: {exc}") from None
    if len(nodes) == 0 or nodes[0] is None:
        raise _fail(path, "the file is empty", fix="start from `cloudft init` to get a commented spec")
    if len(nodes) > 1:
        raise _fail(path, "the file holds several YAML documents (---); a job spec is one document",
                    line=nodes[1].start_mark.line + 1)
    root = nodes[0]
    if not isinstance(root, yaml.MappingNode):
        kind = {yaml.SequenceNode: "a list", yaml.ScalarNode: "a single value"}.get(type(root), "not a mapping")
        raise _fail(path, f"the document is {kind}; a job spec is a mapping of keys (name:, base_model:, ...)",
                    fix="see `cloudft init` for the shape", line=root.start_mark.line + 1, col=1)
    _check_expansion(root, path)
    try:
        data = yaml.SafeLoader(text).get_single_data()
    except yaml.YAMLError as exc:
        raise _fail(path, f"invalid YAML: {exc}") from None
    positions: dict = {}
    key_positions: dict = {}
    _walk(root, (), positions, key_positions)
    return LocatedDoc(path, data, positions, key_positions)


def load_file(path: str | Path) -> LocatedDoc:
    """Read and parse a YAML file with the size/encoding guards."""
    p = Path(path)
    shown = str(path)
    if not p.exists():
        raise _fail(shown, "no such file", fix="check the path, or create one with `cloudft init`")
    if p.is_dir():
        raise _fail(shown, "this is a directory, not a YAML file")
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise _fail(shown, f"the file is {size:,} bytes; a job spec must be under {MAX_BYTES:,}",
                    fix="data belongs in data files referenced from the spec, not in the spec")
    raw = p.read_bytes()
    if b"\x00" in raw:
        raise _fail(shown, "this is a binary file, not YAML", fix="pass a YAML job spec (see `cloudft init`)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _fail(shown, f"the file is not valid UTF-8 (byte {exc.start})", fix="save it as UTF-8",
                    line=line) from None
    return load_text(text, shown)


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)
