"""The watch-rule language: query text -> AST, with errors that point at the offending token.

Grammar (precedence from loosest to tightest: OR < AND < NEAR < NOT/field scope < atom)::

    query   := or
    or      := and ("OR" and)*
    and     := near (["AND"] near)*            juxtaposition is AND
    near    := unary (("NEAR" | "NEAR/n" | "ONEAR" | "ONEAR/n") unary)*   left-associative
    unary   := "NOT" unary | FIELD unary | atom
    atom    := WORD | WORD* | "phrase" | @ALIAS | /regex/ | "(" or ")"
    FIELD   := title: | summary: | text: | url: | author: | source:

Lexical decisions:

* ``AND OR NOT NEAR ONEAR`` are operators only in upper case and only as whole words; ``and``,
  ``Not`` or ``ANDROID`` are ordinary words. To search for the word AND, quote it: ``"AND"``.
* A WORD is a run of anything but white space, parentheses and ``"``; it may not start with
  ``@``, ``/`` or ``-``. It is folded by :mod:`monitor.rules.text`, so ``U.S.`` means the phrase
  ``u s`` and ``Iran's`` the phrase ``iran s``. A trailing ``*`` makes the (last) word a prefix.
* A phrase may span lines; its words may end in ``*`` too (``"islamic republic*"``).
* ``NEAR`` alone means ``NEAR/5``: the two sides are at most 5 words apart (adjacent words are
  1 apart), either order; ``ONEAR`` requires the left side first.
* ``/regex/`` is an RE2 pattern (``\\/`` for a slash inside); it is checked when rules compile.

Structural rules checked here (so every error has a position): each operator has its operands,
parentheses balance, NEAR joins only words, phrases, aliases, regexes, ORs of those and other
NEARs, field scopes do not nest, a query nests at most :data:`MAX_DEPTH` levels (parentheses,
NOTs, field scopes and chained NEARs), and a query needs something positive to look for
(``NOT a`` alone would match almost every item).

:func:`parse_query` raises :class:`RuleSyntaxError` and nothing else, whatever the input.
:func:`to_query` prints an AST back to a query that parses to an equal AST.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, VisitError

from monitor.rules.text import words

__all__ = [
    "DEFAULT_NEAR",
    "FIELDS",
    "MAX_DEPTH",
    "Alias",
    "And",
    "Field",
    "Near",
    "Node",
    "Not",
    "Or",
    "Phrase",
    "Regex",
    "RuleSyntaxError",
    "Term",
    "dump",
    "parse_query",
    "to_query",
]

DEFAULT_NEAR: Final = 5
FIELDS: Final = ("title", "summary", "text", "url", "author", "source")
# A sane ceiling: the distance is counted in words, and a window beyond a few hundred words
# is "anywhere in the article", which AND already says.
_MAX_NEAR: Final = 1000

# How deep a query may nest. Each open parenthesis, each NOT or field scope in force and each
# NEAR of a chain (NEAR is left-associative: a NEAR b NEAR c nests) is a level. Rules people
# write nest a handful of levels; the bound exists because the parser's tree transformer and
# the compiler's, matcher's and explainer's walks recurse once or more per level: 300 nested
# parentheses or 500 chained NOTs overran Python's recursion limit (a RecursionError, not an
# error that points at the query). At 64 levels the deepest of them takes about 260 frames
# (32 times "w AND (x OR (", measured), well inside the default limit of 1000 even under the
# daemon's own stack; tests/test_rules_syntax.py holds that margin.
MAX_DEPTH: Final = 64

# (line, column), both 1-based; not part of a node's equality, so trees compare by meaning.
Pos: TypeAlias = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Term:
    """One word as written (``ratif`` with ``prefix=True`` for ``ratif*``); folded at compile."""

    word: str
    prefix: bool = False
    pos: Pos = field(default=(1, 1), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Phrase:
    """Words as written between quotes; they must appear in this order, adjacent."""

    words: tuple[str, ...]
    pos: Pos = field(default=(1, 1), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Alias:
    """``@NAME``: any term of the alias; the name is resolved (case-insensitively) at compile."""

    name: str
    pos: Pos = field(default=(1, 1), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Regex:
    """``/pattern/``: an RE2 pattern, matched case-insensitively over a field's original text."""

    pattern: str
    pos: Pos = field(default=(1, 1), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]
    pos: Pos = field(default=(1, 1), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]
    pos: Pos = field(default=(1, 1), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Not:
    item: Node
    pos: Pos = field(default=(1, 1), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Near:
    """``left NEAR/distance right``; ``ordered`` for ONEAR (left must come first)."""

    left: Node
    right: Node
    distance: int = DEFAULT_NEAR
    ordered: bool = False
    pos: Pos = field(default=(1, 1), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Field:
    """``name:item``: ``item`` is looked for only in that field (one of :data:`FIELDS`)."""

    name: str
    item: Node
    pos: Pos = field(default=(1, 1), compare=False, repr=False)


Node: TypeAlias = Term | Phrase | Alias | Regex | And | Or | Not | Near | Field


class RuleSyntaxError(ValueError):
    """A query that is not a valid rule. ``line``/``column`` are 1-based, within the query."""

    def __init__(self, message: str, line: int, column: int, hint: str | None = None) -> None:
        self.message = message
        self.line = line
        self.column = column
        self.hint = hint
        text = f"{line}:{column}: {message}"
        super().__init__(f"{text} ({hint})" if hint else text)


_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: near_expr (_AND? near_expr)*
?near_expr: unary (NEAR unary)*
?unary: NOT unary -> not_
      | FIELD unary -> field
      | atom
?atom: WORD -> word
     | PHRASE -> phrase
     | ALIAS -> alias
     | REGEX -> regex
     | _LPAR or_expr _RPAR

_OR.3: /OR(?![^\s()"])/
_AND.3: /AND(?![^\s()"])/
NOT.3: /NOT(?![^\s()"])/
NEAR.3: /O?NEAR(\/[^\s()"]*)?(?![^\s()"])/
FIELD.2: /(title|summary|text|url|author|source):/
PHRASE: /"[^"]*"/
ALIAS: /@[^\W][\w\-]*/
REGEX: /\/(\\.|[^\/\\\n])*\//
WORD: /[^\s()"@\/][^\s()"]*/
_LPAR: "("
_RPAR: ")"
%ignore /\s+/
"""

_PARSER = Lark(_GRAMMAR, parser="lalr", lexer="basic", maybe_placeholders=False)

_OPERATORS = frozenset({"_OR", "_AND", "NOT", "NEAR", "FIELD"})
_UNKNOWN_FIELD = re.compile(r"([A-Za-z]+):")


def _at(tok: Token) -> Pos:
    return (tok.line or 1, tok.column or 1)


def _error(message: str, tok: Token | Pos, hint: str | None = None) -> RuleSyntaxError:
    line, column = tok if isinstance(tok, tuple) else _at(tok)
    return RuleSyntaxError(message, line, column, hint)


def _check_word(raw: str, pos: Pos) -> None:
    """A word or phrase word must hold letters or digits; ``*`` only at its end."""
    body = raw[:-1] if raw.endswith("*") else raw
    if "*" in body:
        raise _error(
            f"'*' inside {raw!r}", pos, "* is allowed only at the end of a word, as in ratif*"
        )
    if not words(body):
        raise _error(f"{raw!r} has no letters or digits", pos, "quote it or remove it")


def _op_name(tok: Token) -> str:
    return tok.type.lstrip("_") if tok.type != "FIELD" else str(tok)


@v_args(inline=True)
class _ToAst(Transformer[Token, "Node"]):
    def word(self, tok: Token) -> Node:
        raw = str(tok)
        pos = _at(tok)
        if raw.startswith("-"):
            raise _error(f"{raw!r} starts with '-'", pos, f"to exclude a word write NOT {raw[1:]}")
        unknown = _UNKNOWN_FIELD.match(raw)
        if unknown and unknown.group(1) not in (*FIELDS, "tag"):
            raise _error(
                f"unknown field {unknown.group(1)!r}",
                pos,
                "fields are " + ", ".join(f"{f}:" for f in FIELDS) + "; quote text to search it",
            )
        _check_word(raw, pos)
        if raw.endswith("*"):
            return Term(raw[:-1], True, pos)
        return Term(raw, False, pos)

    def phrase(self, tok: Token) -> Node:
        pos = _at(tok)
        parts = tuple(str(tok)[1:-1].split())
        if not parts:
            raise _error("empty phrase", pos, 'put words between the quotes: "evin prison"')
        for part in parts:
            _check_word(part, pos)
        return Phrase(parts, pos)

    def alias(self, tok: Token) -> Node:
        return Alias(str(tok)[1:], _at(tok))

    def regex(self, tok: Token) -> Node:
        pattern = str(tok)[1:-1].replace("\\/", "/")
        if not pattern:
            raise _error("empty regular expression", tok, "write a pattern between the slashes")
        return Regex(pattern, _at(tok))

    def not_(self, tok: Token, item: Node) -> Node:
        return Not(item, _at(tok))

    def field(self, tok: Token, item: Node) -> Node:
        if _find_field(item) is not None:
            raise _error("field scopes cannot be nested", tok, "use one scope per group")
        return Field(str(tok)[:-1], item, _at(tok))

    def or_expr(self, *items: Node) -> Node:
        return Or(tuple(items), items[0].pos)

    def and_expr(self, *items: Node) -> Node:
        return And(tuple(items), items[0].pos)

    def near_expr(self, *parts: Node | Token) -> Node:
        node = parts[0]
        assert not isinstance(node, Token)
        for i in range(1, len(parts), 2):
            op, right = parts[i], parts[i + 1]
            assert isinstance(op, Token) and not isinstance(right, Token)
            text = str(op)
            distance = DEFAULT_NEAR
            if "/" in text:
                number = text.split("/", 1)[1]
                if not (number.isascii() and number.isdigit()) or not 1 <= int(number) <= _MAX_NEAR:
                    raise _error(
                        f"bad distance in {text!r}",
                        op,
                        f"write a whole number of words from 1 to {_MAX_NEAR}, as in NEAR/5",
                    )
                distance = int(number)
            for side in (node, right):
                if not _positional(side):
                    raise _error(
                        f"{text.split('/')[0]} cannot join this operand",
                        side.pos,
                        "NEAR joins words, phrases, aliases, regexes and ORs of them; "
                        "put AND, NOT and field scopes outside it",
                    )
            node = Near(node, right, distance, text.startswith("O"), node.pos)
        return node


def _positional(node: Node) -> bool:
    if isinstance(node, Or):
        return all(_positional(item) for item in node.items)
    return isinstance(node, Term | Phrase | Alias | Regex | Near)


def _find_field(node: Node) -> Field | None:
    if isinstance(node, Field):
        return node
    if isinstance(node, And | Or):
        for item in node.items:
            found = _find_field(item)
            if found is not None:
                return found
    if isinstance(node, Not):
        return _find_field(node.item)
    return None


def _stray_tag(node: Node, *, inside_source: bool) -> Term | None:
    """A ``tag:x`` word that is not under ``source:`` (it would silently search ``tag x``)."""
    if isinstance(node, Term):
        return node if node.word.startswith("tag:") and not inside_source else None
    if isinstance(node, Field):
        return _stray_tag(node.item, inside_source=node.name == "source")
    children: tuple[Node, ...] = ()
    if isinstance(node, And | Or):
        children = node.items
    elif isinstance(node, Not):
        children = (node.item,)
    elif isinstance(node, Near):
        children = (node.left, node.right)
    for child in children:
        found = _stray_tag(child, inside_source=inside_source)
        if found is not None:
            return found
    return None


def _only_negative(node: Node) -> Node | None:
    """The sub-query that lets ``node`` match without any positive hit, if there is one."""
    if isinstance(node, Not):
        return node
    if isinstance(node, Field):
        return _only_negative(node.item)
    if isinstance(node, And):
        found = [_only_negative(item) for item in node.items]
        return found[0] if all(f is not None for f in found) else None
    if isinstance(node, Or):
        for item in node.items:
            culprit = _only_negative(item)
            if culprit is not None:
                return culprit
    return None


def _lex(query: str) -> list[Token]:
    try:
        return list(_PARSER.lex(query))
    except UnexpectedCharacters as e:
        pos = (e.line, e.column)
        char = query[e.pos_in_stream] if e.pos_in_stream is not None else ""
        if char == '"':
            raise _error("unterminated phrase", pos, 'close the phrase with "') from None
        if char == "/":
            raise _error(
                "unterminated regular expression", pos, "close it with / (write \\/ inside it)"
            ) from None
        if char == "@":
            raise _error(
                "@ without an alias name", pos, "write the alias name right after @, as in @IRAN"
            ) from None
        raise _error(f"unexpected character {char!r}", pos) from None


_OPERAND_START = frozenset({"WORD", "PHRASE", "ALIAS", "REGEX", "_LPAR", "NOT", "FIELD"})
_OPERAND_END = frozenset({"WORD", "PHRASE", "ALIAS", "REGEX", "_RPAR"})


def _check_depth(tokens: list[Token]) -> None:
    """Raise at the first token that nests the query deeper than :data:`MAX_DEPTH` levels.

    Counted on the tokens, before the parser builds a tree that deep: the levels of the open
    parentheses (each with the NOTs, field scopes and NEARs that lead to it), the NOTs and
    field scopes in a row before the next operand, and the NEARs chained so far in the group.
    """
    groups: list[tuple[int, int]] = []  # per open parenthesis: (levels it adds, outer NEARs)
    depth = 0  # levels of the open parentheses
    prefixes = 0  # NOTs and field scopes in a row, waiting for their operand
    nears = 0  # NEARs chained in the current group
    prev: Token | None = None
    for tok in tokens:
        kind = tok.type
        if kind in _OPERAND_START and prev is not None and prev.type in _OPERAND_END:
            nears = 0  # juxtaposition is AND: a new chain starts
        if kind in {"NOT", "FIELD"}:
            prefixes += 1
        elif kind == "NEAR":
            nears += 1
        elif kind in {"_AND", "_OR"}:
            nears = 0
        elif kind == "_LPAR":
            added = prefixes + nears + 1
            groups.append((added, nears))
            depth += added
            prefixes = nears = 0
        elif kind == "_RPAR":
            if groups:  # an unmatched ')' is the grammar's error, reported later
                added, nears = groups.pop()
                depth -= added
        else:
            prefixes = 0
        if depth + prefixes + nears > MAX_DEPTH:
            raise _error(
                f"the query nests more than {MAX_DEPTH} levels deep",
                tok,
                "parentheses, NOT, field scopes and chained NEARs each add a level; "
                "write a OR (b OR (c)) as a OR b OR c, and NOT NOT a as a",
            )
        prev = tok


def _grammar_error(tokens: list[Token], query: str) -> RuleSyntaxError:
    """Explain why ``tokens`` do not form a query, pointing at the first culprit."""
    opened: list[Token] = []
    prev: Token | None = None
    for tok in tokens:
        kind = tok.type
        if kind == "_LPAR":
            opened.append(tok)
        elif kind == "_RPAR":
            if prev is not None and prev.type == "_LPAR":
                return _error("empty parentheses", prev, "put a term between ( and )")
            if prev is not None and prev.type in _OPERATORS:
                return _dangling(prev)
            if not opened:
                return _error("unmatched ')'", tok, "no parenthesis is open here")
            opened.pop()
        elif kind in {"_OR", "_AND", "NEAR"} and (
            prev is None or prev.type in _OPERATORS or prev.type == "_LPAR"
        ):
            return _error(
                f"{_op_name(tok)} without a term before it",
                tok,
                f"{_op_name(tok)} needs a term on both sides",
            )
        prev = tok
    if prev is None:
        return _error("empty query", (1, 1), "write at least one word to look for")
    if prev.type in _OPERATORS:
        return _dangling(prev)
    if opened:
        line, column = _at(opened[-1])
        where = f"line {line}, column {column}" if "\n" in query else f"column {column}"
        return _error("unclosed parenthesis", opened[-1], f"unclosed parenthesis opened at {where}")
    return _error("cannot parse the query", tokens[0])


def _dangling(op: Token) -> RuleSyntaxError:
    name = _op_name(op)
    if op.type in {"NOT", "FIELD"}:
        return _error(f"{name} without a term after it", op, f"{name} needs a term after it")
    return _error(f"{name} without a term after it", op, f"{name} needs a term on both sides")


# A configuration's queries are parsed twice on every start and reload (`config` validates them,
# the daemon compiles them): with 1,000 rules, lark's parse is 0.57 s of compile_rules' 0.65 s
# (cProfile of bench/speed.py's warm run). The AST depends on the query text alone and is
# immutable, so the second parse is a lookup. Errors are not cached.
_PARSED_CACHE: Final = 8192


@functools.lru_cache(maxsize=_PARSED_CACHE)
def parse_query(query: str) -> Node:
    """Parse a rule query into its AST; raise :class:`RuleSyntaxError` if it is not valid.

    The same text gives the same (immutable, shared) AST.
    """
    tokens = _lex(query)
    _check_depth(tokens)
    try:
        tree = _PARSER.parse(query)
    except UnexpectedInput:
        raise _grammar_error(tokens, query) from None
    try:
        node = _ToAst().transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, RuleSyntaxError):
            raise e.orig_exc from None
        raise
    stray = _stray_tag(node, inside_source=False)
    if stray is not None:
        raise _error(
            f"{stray.word!r} outside source:", stray.pos, "search feed tags as source:tag:NAME"
        )
    culprit = _only_negative(node)
    if culprit is not None:
        raise _error(
            "the query has nothing positive to look for",
            culprit.pos,
            "NOT only excludes: a query made of NOT terms would match almost every item; "
            "add a term to look for, e.g. evin AND NOT football",
        )
    return node


# --- printing ------------------------------------------------------------------------------

_PLAIN_WORD = re.compile(r'[^\s()"@/\-][^\s()"]*')
_KEYWORD = re.compile(r"(AND|OR|NOT|O?NEAR(/.*)?|(title|summary|text|url|author|source):.*)")


def _print_word(word: str, prefix: bool) -> str:
    star = "*" if prefix else ""
    if _PLAIN_WORD.fullmatch(word) and not _KEYWORD.fullmatch(word + star):
        return word + star
    return f'"{word}{star}"'  # a one-word phrase: same meaning, safe from the lexer


def _level(node: Node) -> int:
    if isinstance(node, Or):
        return 0
    if isinstance(node, And):
        return 1
    if isinstance(node, Near):
        return 2
    return 3


def to_query(node: Node) -> str:
    """Print ``node`` as query text; ``parse_query(to_query(n)) == n`` for any parsed ``n``."""

    def sub(child: Node, min_level: int) -> str:
        text = to_query(child)
        return f"({text})" if _level(child) < min_level else text

    if isinstance(node, Term):
        return _print_word(node.word, node.prefix)
    if isinstance(node, Phrase):
        return '"' + " ".join(node.words) + '"'
    if isinstance(node, Alias):
        return "@" + node.name
    if isinstance(node, Regex):
        return "/" + node.pattern.replace("/", "\\/") + "/"
    if isinstance(node, Or):
        # A nested OR keeps its parentheses so that the printed query parses to the same tree.
        return " OR ".join(sub(item, 1) for item in node.items)
    if isinstance(node, And):
        return " AND ".join(sub(item, 2) for item in node.items)
    if isinstance(node, Near):
        op = ("ONEAR" if node.ordered else "NEAR") + f"/{node.distance}"
        return f"{sub(node.left, 2)} {op} {sub(node.right, 3)}"
    if isinstance(node, Not):
        return "NOT " + sub(node.item, 3)
    return f"{node.name}:{sub(node.item, 3)}"


def dump(node: Node) -> str:
    """A compact S-expression of ``node`` for tests and debugging: ``(AND iran (OR a b*))``."""
    if isinstance(node, Term):
        return node.word + ("*" if node.prefix else "")
    if isinstance(node, Phrase):
        return '"' + " ".join(node.words) + '"'
    if isinstance(node, Alias):
        return "@" + node.name
    if isinstance(node, Regex):
        return f"/{node.pattern}/"
    if isinstance(node, And | Or):
        name = "AND" if isinstance(node, And) else "OR"
        return f"({name} " + " ".join(dump(i) for i in node.items) + ")"
    if isinstance(node, Not):
        return f"(NOT {dump(node.item)})"
    if isinstance(node, Near):
        op = ("ONEAR" if node.ordered else "NEAR") + f"/{node.distance}"
        return f"({op} {dump(node.left)} {dump(node.right)})"
    return f"({node.name}: {dump(node.item)})"
