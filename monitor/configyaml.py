"""YAML documents that remember where every value came from.

`config.py` validates plain Python values; this module turns YAML text into those values while
keeping, for every path into the data (``("feeds", 2, "interval")``), the position of the node
it came from, so that an error found later can name file, line and column.

What it promises:

* ``read_document`` never raises for bad input: YAML syntax errors, duplicate keys and missing
  ``${VAR}`` references come back as ``ConfigProblem`` values in ``Document.problems``.
* ``${NAME}`` in any string value is replaced from the environment given; ``$${`` is a literal
  ``${``. Keys are never substituted. A missing variable is reported by name only: the value
  around it may be a secret (a token inside a URL), so it is never echoed.
* Positions are 1-based (line, column), as editors show them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel
from pydantic import ValidationError as _PydanticError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

M = TypeVar("M", bound=BaseModel)
Path_ = tuple[str | int, ...]  # a path into the data: mapping keys and sequence indexes

_STR_TAG = "tag:yaml.org,2002:str"
# `$${` escapes; otherwise `${NAME}` with a shell-style name. Anything else after `${` is an error
# rather than left alone, so a typo such as `${SLACK TOKEN}` cannot reach a channel URL as-is.
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in one config file; line and column are 1-based."""

    file: str
    line: int
    column: int
    message: str  # starts with the path of the value, e.g. "feeds[2].interval: ..."

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


@dataclass(slots=True)
class Document:
    """The data of one YAML file with the position of every value and key in it."""

    name: str  # the file name as shown in messages
    text: str
    data: Any = None  # plain dicts, lists and scalars; None for an empty file
    values: dict[Path_, ScalarNode | MappingNode | SequenceNode] = field(default_factory=dict)
    keys: dict[Path_, Node] = field(default_factory=dict)  # path -> the key node that named it
    substituted: set[Path_] = field(default_factory=set)  # values changed by ${VAR}
    unresolved: set[Path_] = field(default_factory=set)  # values with a missing ${VAR}
    problems: list[ConfigProblem] = field(default_factory=list)

    def at(self, path: Path_, *, key: bool = False, offset: int | None = None) -> tuple[int, int]:
        """The (line, column) of the value at `path` (or of its key), 1-based.

        A path that is not in the document (a missing key) falls back to its nearest existing
        parent, so the message points at the mapping that lacks the key. `offset` is an index
        into a string value; it is honoured where the scalar's source can be mapped exactly.
        """
        while path not in self.values and path:
            path = path[:-1]
        node = self.values.get(path)
        if node is None:
            return 1, 1
        if isinstance(node, ScalarNode) and node.value == "" and node.style is None:
            key = True  # `url:` with nothing after it: the key is what the reader looks for
        if key and path in self.keys:
            mark = self.keys[path].start_mark
            return mark.line + 1, mark.column + 1
        if offset is not None and isinstance(node, ScalarNode) and path not in self.substituted:
            spot = scalar_position(self.text, node, offset)
            if spot is not None:
                return spot
        return node.start_mark.line + 1, node.start_mark.column + 1

    def problem(
        self, path: Path_, message: str, *, key: bool = False, offset: int | None = None
    ) -> ConfigProblem:
        line, column = self.at(path, key=key, offset=offset)
        return ConfigProblem(self.name, line, column, message)


def format_path(path: Path_) -> str:
    """``("feeds", 2, "interval")`` -> ``feeds[2].interval``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# libyaml's parser, where PyYAML has it: bench/speed.py's 1,000-rule config reads in 0.03 s
# instead of 0.2 s. Its nodes carry the same line, column and (character) index on a valid
# document, non-ASCII text included; it places a few marks elsewhere (an empty value, a
# syntax error's context), so a config with problems is read again with PyYAML's own parser,
# which the positions in messages are written against (see config.load_config_text).
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_document(text: str, name: str, env: Mapping[str, str], *, fast: bool = False) -> Document:
    """Parse `text` into a Document; every problem found is in ``.problems``.

    `fast`: with libyaml when available; positions of problems may then differ slightly.
    """
    doc = Document(name=name, text=text)
    loader = (_FAST_LOADER if fast else yaml.SafeLoader)(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            doc.data = _build(doc, loader, root, (), env)
    except yaml.MarkedYAMLError as exc:
        doc.problems.append(_syntax_problem(name, exc))
        doc.data = None
    except yaml.YAMLError as exc:  # a reader error (bad byte) carries a position, not a mark
        position = getattr(exc, "position", 0)
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        doc.problems.append(ConfigProblem(name, line, column, f"cannot read YAML: {exc}"))
        doc.data = None
    finally:
        loader.dispose()
    return doc


def _syntax_problem(name: str, exc: yaml.MarkedYAMLError) -> ConfigProblem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    message = f"YAML syntax error: {exc.problem or 'invalid YAML'}"
    if exc.context:
        where = ""
        if exc.context_mark is not None and exc.context_mark is not mark:
            where = f" at {exc.context_mark.line + 1}:{exc.context_mark.column + 1}"
        message += f" ({exc.context}{where})"
    return ConfigProblem(name, line, column, message)


def _build(
    doc: Document, loader: yaml.SafeLoader, node: Node, path: Path_, env: Mapping[str, str]
) -> Any:
    if isinstance(node, MappingNode):
        doc.values[path] = node
        loader.flatten_mapping(node)  # applies `<<` merge keys the way SafeLoader would
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):  # None, a list, a mapping, a date
                doc.problems.append(_node_problem(doc, key_node, "keys must be plain scalars"))
                continue
            if key in out:
                doc.problems.append(_node_problem(doc, key_node, f"duplicate key {key!r}"))
            child = (*path, key) if isinstance(key, str) else (*path, str(key))
            doc.keys[child] = key_node
            out[key] = _build(doc, loader, value_node, child, env)
        return out
    if isinstance(node, SequenceNode):
        doc.values[path] = node
        return [_build(doc, loader, item, (*path, i), env) for i, item in enumerate(node.value)]
    assert isinstance(node, ScalarNode)
    doc.values[path] = node
    value = loader.construct_object(node, deep=True)
    if node.tag == _STR_TAG and isinstance(value, str) and "$" in value:
        value = _substitute(doc, node, path, value, env)
    return value


def _substitute(
    doc: Document, node: ScalarNode, path: Path_, raw: str, env: Mapping[str, str]
) -> str:
    parts: list[str] = []
    end = 0
    for match in _VAR.finditer(raw):
        parts.append(raw[end : match.start()])
        end = match.end()
        token, name = match.group(0), match.group(1)
        if token == "$${":
            parts.append("${")
        elif name is None:
            doc.unresolved.add(path)
            spot = scalar_position(doc.text, node, match.start()) or _start(node)
            doc.problems.append(
                ConfigProblem(
                    doc.name,
                    *spot,
                    f"{format_path(path)}: '${{' must be followed by NAME}}"
                    " (write $${ for a literal)",
                )
            )
        elif name in env:
            parts.append(env[name])
        else:
            doc.unresolved.add(path)
            spot = scalar_position(doc.text, node, match.start()) or _start(node)
            doc.problems.append(
                ConfigProblem(
                    doc.name, *spot, f"{format_path(path)}: missing environment variable {name}"
                )
            )
    parts.append(raw[end:])
    value = "".join(parts)
    if value != raw:
        doc.substituted.add(path)
    return value


def _node_problem(doc: Document, node: Node, message: str) -> ConfigProblem:
    return ConfigProblem(doc.name, *_start(node), message)


def _start(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


# --- pydantic errors as positioned problems ---------------------------------------------


def validate(
    cls: type[M], doc: Document, data: dict[str, Any], problems: list[ConfigProblem]
) -> M | None:
    """Validate `data` as `cls`; turn every pydantic error into a positioned problem."""
    try:
        return cls.model_validate(data)
    except _PydanticError as exc:
        for error in exc.errors():
            problem = _translate(cls, doc, error)
            if problem is not None:
                problems.append(problem)
        return None


def _translate(cls: type[BaseModel], doc: Document, error: Any) -> ConfigProblem | None:
    # pydantic's loc holds extra steps for unions and dict keys ('list[...]', '[key]'); keep only
    # the steps that exist in the document, so the path reads like the YAML.
    path: Path_ = ()
    for step in error["loc"]:
        if (*path, step) in doc.values or (*path, step) in doc.keys:
            path = (*path, step)
    if path in doc.unresolved:
        return None  # a missing ${VAR} was already reported here; its fallout is noise
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(_fields_at(cls, path[:-1]))
        return doc.problem(path, f"{format_path(path)}: unknown key (allowed: {allowed})", key=True)
    if kind == "missing":
        missing = error["loc"][-1]
        where = format_path((*path, missing))
        return doc.problem(path, f"{where}: missing required key {missing!r}")
    if kind == "value_error":
        message = str(error["ctx"]["error"])
    elif kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, got {describe(error['input'])}"
        if kind == "string_type" and isinstance(error["input"], bool):
            message += " (quote it: yes, no, on and off are booleans in YAML)"
    else:
        message = error["msg"][0].lower() + error["msg"][1:]
    key = "[key]" in error["loc"]  # a dict key of the wrong kind: point at the key
    return doc.problem(path, f"{format_path(path)}: {message}" if path else message, key=key)


# pydantic's wording names Python types ("a valid dictionary or instance of HttpSettings");
# a YAML author thinks in mappings, lists and strings.
_EXPECTED = {
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
    "list_type": "a list",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
}


def describe(value: object) -> str:
    """How a YAML value is named in messages: 'a list', 'a mapping', 'nothing', 'str'."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return "a string" if isinstance(value, str) else type(value).__name__


def _fields_at(cls: type[BaseModel], path: Path_) -> list[str]:
    """The keys allowed at `path` below model `cls` (for 'unknown key' messages)."""
    current: Any = cls
    for step in path:
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(step, str):
            current = (
                current.model_fields[step].annotation if step in current.model_fields else None
            )
        else:  # a list index or a dict key: step into the item type
            args = [a for a in getattr(current, "__args__", ()) if a is not type(None)]
            current = args[-1] if args else None
        args = [a for a in getattr(current, "__args__", ()) if a is not type(None)]
        if len(args) == 1 and getattr(current, "__origin__", None) is None:
            current = args[0]  # `X | None`
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def ordered(problems: Sequence[ConfigProblem], main: str) -> list[ConfigProblem]:
    """The main file's problems first, then each other file's, each by position."""
    files = [main, *dict.fromkeys(p.file for p in problems if p.file != main)]
    unique = dict.fromkeys(problems)  # one position can be reached twice (a list and its item)
    return sorted(unique, key=lambda p: (files.index(p.file), p.line, p.column))


# --- mapping an offset inside a string value back to the file --------------------------------

_ESCAPES = {"x": 3, "u": 5, "U": 9}  # source length of \xNN, \uNNNN, \UNNNNNNNN


def scalar_position(text: str, node: ScalarNode, offset: int) -> tuple[int, int] | None:
    """The 1-based (line, column) in `text` of character `offset` of the scalar's value.

    Rebuilds the value from the source, recording where each character came from, for plain,
    quoted, literal and folded scalars. When the rebuilt text does not equal the node's value
    (an escape or a folding rule this does not model), returns None and the caller points at
    the scalar's start instead: a slightly vague position beats a wrong one.
    """
    source = text[node.start_mark.index : node.end_mark.index]
    base_line, base_col = node.start_mark.line, node.start_mark.column
    chars: list[str] = []
    spots: list[tuple[int, int]] = []
    lines = source.split("\n")
    style = node.style
    if style in ("|", ">"):
        body = lines[1:]
        content = [ln for ln in body if ln.strip()]
        if not content:
            return None
        indent = min(len(ln) - len(ln.lstrip(" ")) for ln in content)
        joiner = "\n" if style == "|" else " "
        for n, ln in enumerate(body):
            if n and (chars or ln.strip()):
                chars.append(joiner)
                spots.append((base_line + n, 0))
            for c, ch in enumerate(ln[indent:]):
                chars.append(ch)
                spots.append((base_line + 1 + n, indent + c))
        rebuilt = "".join(chars)
        if rebuilt.rstrip() != node.value.rstrip():
            return None
    else:
        quote = 1 if style in ("'", '"') else 0
        for n, ln in enumerate(lines):
            first_col = base_col if n == 0 else 0
            start = quote if n == 0 else len(ln) - len(ln.lstrip(" \t"))
            stop = len(ln) - (quote if n == len(lines) - 1 else 0)
            segment = ln[start:stop]
            if n:
                chars.append(" ")
                spots.append((base_line + n, 0))
            if n < len(lines) - 1:
                segment = segment.rstrip(" \t")
            c = 0
            while c < len(segment):
                ch = segment[c]
                width = 1
                if style == "'" and segment.startswith("''", c):
                    width = 2
                elif style == '"' and ch == "\\" and c + 1 < len(segment):
                    width = _ESCAPES.get(segment[c + 1], 2)
                    ch = node.value[len(chars)] if len(chars) < len(node.value) else ch
                chars.append(ch)
                spots.append((base_line + n, first_col + start + c))
                c += width
        if "".join(chars) != node.value:
            return None
    if not 0 <= offset < len(spots):
        return None
    line, column = spots[offset]
    return line + 1, column + 1
