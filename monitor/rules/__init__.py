"""The watch-rule language: parse queries, compile rules once, match items with evidence.

``parse_query`` (syntax.py) turns a query into an AST or raises ``RuleSyntaxError`` with a
position; ``compile_rules`` (engine.py) compiles every rule and raises ``RuleErrors`` listing
each broken one; ``RuleSet.match`` returns a ``Match`` per matching rule, evaluating only the
rules that a prefilter over all rules' literal words admits (prefilter.py) and whose ``feeds``
filter admits the item's feed (``admits``); ``RuleSet.explain`` returns an ``Explanation``
(every clause, satisfied or not, with its evidence) and ``format_explanation`` prints it
(explain.py). ``tokenize`` and ``fold`` (text.py) are the one text normaliser that rules and
items share.
"""

from monitor.rules.engine import RuleError, RuleErrors, RuleSet, admits, compile_rules
from monitor.rules.explain import Clause, Evidence, Explanation, format_explanation
from monitor.rules.syntax import RuleSyntaxError, parse_query, to_query
from monitor.rules.text import Token, fold, tokenize

__all__ = [
    "Clause",
    "Evidence",
    "Explanation",
    "RuleError",
    "RuleErrors",
    "RuleSet",
    "RuleSyntaxError",
    "Token",
    "admits",
    "compile_rules",
    "fold",
    "format_explanation",
    "parse_query",
    "to_query",
    "tokenize",
]
