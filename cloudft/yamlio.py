"""Load a YAML file safely and remember where every value came from (line, column).

Guards against hostile input before anything is built: size cap, binary content, nesting depth, recursive
aliases, alias bombs (expanded node count is bounded), duplicate keys, and documents that are not a mapping.
Floats follow YAML 1.2 (`1e-4` is a number), the rest YAML 1.1 as PyYAML reads it.
"""

from __future__ import annotations

import re
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


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus YAML 1.2 floats: PyYAML follows YAML 1.1, where a float needs a dot and a signed
    exponent, so `learning_rate: 1e-4` (the way everyone writes it) would be the text '1e-4'."""


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _fail(path: str, message: str, fix: Optional[str] = None, line=None, col=None) -> SpecError:
    return SpecError([Problem(path, line, col, "", message, fix)])


def _line(node_or_mark: Any) -> int:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return mark.line + 1


def _check_depth(text: str, path: str) -> None:
    """Refuse deep nesting before composing: PyYAML builds the node tree recursively, so a few thousand `[`
    would end in a RecursionError. Parsing events is iterative."""
    depth = 0
    for event in yaml.parse(text, Loader=SpecLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _fail(path, f"the document nests deeper than {MAX_DEPTH} levels",
                            fix="a job spec is a few levels deep; remove the nesting", line=_line(event),
                            col=event.start_mark.column + 1)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_graph(root: yaml.Node, path: str) -> None:
    """Reject recursive aliases (a node inside itself), nesting that aliases make deeper than MAX_DEPTH, and alias
    bombs (count nodes as if every alias were expanded, with memoisation)."""
    memo: dict[int, tuple[int, int]] = {}  # node → (expanded size, expanded height)
    open_nodes: set[int] = set()

    def too_deep(node: yaml.Node) -> SpecError:
        return _fail(path, f"the document nests deeper than {MAX_DEPTH} levels (counting what aliases expand to)",
                     fix="a job spec is a few levels deep; remove the nesting", line=_line(node),
                     col=node.start_mark.column + 1)

    def visit(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in open_nodes:
            raise _fail(path, f"the anchor defined on line {_line(node)} is used inside itself (a recursive alias)",
                        fix="an alias (*name) may only refer to a value that is already complete",
                        line=_line(node), col=node.start_mark.column + 1)
        if depth > MAX_DEPTH:
            raise too_deep(node)
        if key in memo:
            if depth + memo[key][1] > MAX_DEPTH:
                raise too_deep(node)
            return memo[key]
        open_nodes.add(key)
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        total, height = 1, 0
        for child in children:
            size, h = visit(child, depth + 1)
            total, height = total + size, max(height, h + 1)
            if total > MAX_EXPANDED_NODES:
                break
        open_nodes.discard(key)
        memo[key] = (total, height)
        return memo[key]

    if visit(root, 0)[0] > MAX_EXPANDED_NODES:
        raise _fail(
            path,
            f"the document expands to more than {MAX_EXPANDED_NODES} values (anchors/aliases used as a bomb?)",
            fix="a job spec is a small mapping; remove the repeated aliases", line=_line(root),
        )


def _duplicate_keys(node: yaml.MappingNode, loc: Loc, path: str) -> list[Problem]:
    """Keys written twice in one mapping: YAML keeps the last silently; we name both lines."""
    seen: dict[tuple, yaml.Node] = {}
    problems = []
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        first = seen.setdefault((key.tag, key.value), key)
        if first is not key:
            problems.append(Problem(
                path, _line(key), key.start_mark.column + 1, ".".join(str(p) for p in loc + (key.value,)),
                f"duplicate key '{key.value}' (first on line {_line(first)}, again on line {_line(key)})",
                "keep one of them: YAML would silently use the last one"))
    return problems


def _walk(node: yaml.Node, loc: Loc, doc: LocatedDoc, problems: dict) -> None:
    doc.positions[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for p in _duplicate_keys(node, loc, doc.path):
            problems.setdefault((p.line, p.column), p)
        for k, v in node.value:
            child = loc + (k.value if isinstance(k, yaml.ScalarNode) else str(k.value),)
            doc.key_positions[child] = (k.start_mark.line + 1, k.start_mark.column + 1)
            _walk(v, child, doc, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _walk(v, loc + (i,), doc, problems)


def _located(exc: yaml.MarkedYAMLError, path: str) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    col = mark.column + 1 if mark else None
    return _fail(path, f"invalid YAML: {exc.problem or exc}", fix="check indentation and quoting on that line",
                 line=line, col=col)


def load_text(text: str, path: str = "<string>") -> LocatedDoc:
    """Parse YAML text into a located mapping, or raise SpecError."""
    if "\x00" in text:
        raise _fail(path, "this is a binary file, not YAML", fix="pass a YAML job spec (see `cloudft init`)",
                    line=text[: text.index("\x00")].count("\n") + 1)
    try:
        _check_depth(text, path)
        nodes = list(yaml.compose_all(text, Loader=SpecLoader))
    except yaml.MarkedYAMLError as exc:
        raise _located(exc, path) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (control characters, ...)
        line = text[: exc.position].count("\n") + 1
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        raise _fail(path, f"invalid YAML: character {char!r} is not allowed in YAML text",
                    fix="remove it, or write it as an escape (\\x07) inside double quotes", line=line) from None
    except yaml.YAMLError as exc:
        raise _fail(path, f"invalid YAML: {exc}", line=1) from None
    if len(nodes) == 0 or nodes[0] is None:
        raise _fail(path, "the file is empty", fix="start from `cloudft init` to get a commented spec", line=1)
    if len(nodes) > 1:
        raise _fail(path, "the file holds several YAML documents (---); a job spec is one document",
                    line=nodes[1].start_mark.line + 1)
    root = nodes[0]
    if not isinstance(root, yaml.MappingNode):
        kind = {yaml.SequenceNode: "a list", yaml.ScalarNode: "a single value"}.get(type(root), "not a mapping")
        raise _fail(path, f"the document is {kind}; a job spec is a mapping of keys (name:, base_model:, ...)",
                    fix="see `cloudft init` for the shape", line=root.start_mark.line + 1, col=1)
    _check_graph(root, path)
    doc = LocatedDoc(path, {}, {}, {})
    duplicates: dict = {}
    _walk(root, (), doc, duplicates)
    if duplicates:
        raise SpecError(sorted(duplicates.values(), key=lambda p: (p.line, p.column)))
    try:
        doc.data = SpecLoader("").construct_document(root)
    except yaml.MarkedYAMLError as exc:
        raise _located(exc, path) from None
    except yaml.YAMLError as exc:
        raise _fail(path, f"invalid YAML: {exc}", line=_line(root)) from None
    return doc


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
    """YAML text of `data` (keys in their order)."""
    return yaml.safe_dump(data, sort_keys=False)
