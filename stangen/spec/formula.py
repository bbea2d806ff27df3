"""lme4 formulas in: `formula:` in a spec, `Spec.from_formula`, `stangen from-formula`.

Two steps, each its own function:

    parsed = parse("normexam ~ standLRT * schavg + (standLRT | school)")   # the formula's terms (formulae's parser)
    found = to_long_form(parsed, frame)    # spec keys (outcome, predictors, levels, …) + what the data decided

Parsing is the `formulae` package's (the parser behind bambi): its scanner, parser and resolver expand `*`,
`/`, `-` and `(x + z | g)` exactly as lme4 does. stangen adds only what formulae does not read: lme4's
`(x || g)` (uncorrelated effects) is scanned as two pipes and rewritten to one pipe before parsing, with the
bar remembered as uncorrelated.

The long form says what a formula leaves to the data, so the data decide it: a population predictor that is
constant within each group of a level becomes that level's group-level predictor, and `x:w` with `w` at that
level and `x` varying there a cross-level interaction. Each such decision is a note in words.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..core.errors import Problem, SpecError, suggest
from ..core.families import FAMILIES
from ..core.frames import is_numeric, mostly_numbers
from ..core.names import printable
from .validate import INTERCEPT

# calls a formula may wrap a variable in, and what each means for the spec
FACTOR_CALLS = ("factor", "as.factor")             # categorical
REFERENCE_CALLS = ("relevel", "C")                 # categorical with a reference category
MEAN_CALL = "ave"                                  # ave(x, g): the group mean of x, a group-level predictor
# calls stangen does not take, and what to write instead
TRANSFORM_ADVICE = ("transformations are not done inside a spec: add a column with the transformed values "
                    "to the data and use its name")
UNSUPPORTED_CALLS = {
    "offset": "an offset names one column: offset(log_exposure), with log_exposure = log(exposure) added to the "
              "data (a spec's `offset:`)",
    "poly": "write the powers as columns of the data (x2 = x², x3 = x³) and list them as predictors",
    "s": "smooth terms (mgcv/brms s(), t2(), te(), gp()) are not supported; a spline basis written as data "
         "columns can be used as predictors",
    "I": "arithmetic inside a formula is not read: add a column with the values to the data and use its name",
    "ordered": "an ordinal outcome is `family: cumulative` with `order: [low, …, high]` beside the formula",
    "mo": "monotonic effects (brms mo()) are not supported; use the variable as categorical (factor(x))",
}
for _name in ("t2", "te", "gp", "ns", "bs"):
    UNSUPPORTED_CALLS[_name] = UNSUPPORTED_CALLS["s"]


@dataclass(frozen=True)
class Component:
    """One variable of a population term: a column (maybe wrapped in factor()/relevel()/C()) or ave(x, g)."""

    column: str
    categorical: bool = False      # factor(f), relevel(f, …), C(f, …)
    reference: str | None = None   # relevel(f, "b"), C(f, Treatment("b"))
    mean_by: str | None = None     # ave(x, g): the mean of column within g

    @property
    def text(self) -> str:
        return f"{MEAN_CALL}({self.column}, {self.mean_by})" if self.mean_by else self.column


@dataclass(frozen=True)
class Bar:
    """One `(coefficients | grouping)` of the formula, expanded: `(1 | a/b)` is two bars, on (a,) and (a, b)."""

    text: str                        # as written, e.g. '(Days | Subject)'
    intercept: bool
    slopes: tuple[str, ...]          # population term names, e.g. ('Days',), ('x:z',)
    grouping: tuple[str, ...]        # ('school',); ('batch', 'cask') for batch:cask or batch/cask's second part
    correlated: bool                 # False for `||`

    @property
    def coefficients(self) -> tuple[str, ...]:
        return ((INTERCEPT,) if self.intercept else ()) + self.slopes


@dataclass(frozen=True)
class ParsedFormula:
    """A formula's terms in stangen's words."""

    text: str
    outcome: str
    trials: str | None                       # cbind(s, n - s): trials n
    intercept: bool
    terms: tuple[tuple[Component, ...], ...]  # population terms, each a tuple of its variables
    bars: tuple[Bar, ...]
    offset: str | None = None                # offset(x): the column added with coefficient 1

    def term_sets(self) -> tuple:
        """The model as sets, for comparing two formulas: equal for `x*w` and `x + w + x:w`, for `(x || g)`
        and `(1 | g) + (0 + x | g)`, for `(1 | a/b)` and `(1 | a) + (1 | a:b)`."""
        population = frozenset(frozenset(c.text for c in term) for term in self.terms)
        blocks: dict[tuple[str, ...], list[Bar]] = {}
        for bar in self.bars:
            blocks.setdefault(bar.grouping, []).append(bar)
        groups = frozenset(
            (grouping, frozenset(frozenset(c.split(":")) for b in bars for c in b.coefficients),
             any(b.correlated and len(b.coefficients) > 1 for b in bars))
            for grouping, bars in blocks.items())
        return self.outcome, self.trials, self.intercept, population, groups, self.offset


@dataclass(frozen=True)
class LongForm:
    """The spec keys a formula stands for, and why: notes in words (for the user), comments by spec path
    (for the YAML `stangen from-formula` writes)."""

    keys: dict
    notes: tuple[str, ...] = ()
    comments: Mapping[str, str] = field(default_factory=dict)


class FormulaError(SpecError):
    kind = "formula problem"


def _problem(message: str) -> Problem:
    return Problem("formula", message)


# -- parse ---------------------------------------------------------------------------------------------------
def parse(text: str) -> ParsedFormula:
    """Read an lme4 formula. Raises FormulaError naming every term stangen cannot take, with what to write."""
    parsed, problems = read(text)
    if problems:
        raise FormulaError(problems)
    return parsed


MAX_LENGTH = 10_000  # characters: a formula of a real model is a line or two
MAX_NESTING = 30  # parentheses inside one another


def _check_size(text: str) -> None:
    """Refuse a formula too long or too deeply nested to be a model (the parser recurses on both), or whose
    parentheses do not pair up (formulae would read up to the stray one and silently drop the rest)."""
    if len(text) > MAX_LENGTH:
        raise FormulaError(_problem(f"the formula has {len(text):,} characters; at most {MAX_LENGTH:,}"))
    opened: list[int] = []  # where each open parenthesis is
    quote = None            # inside `name`, "string" or 'string', parentheses are text
    for position, ch in enumerate(text, start=1):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "`\"'":
            quote = ch
        elif ch == "(":
            opened.append(position)
            if len(opened) > MAX_NESTING:
                raise FormulaError(_problem(f"parentheses nested more than {MAX_NESTING} deep "
                                            f"(at character {position})"))
        elif ch == ")":
            if not opened:
                raise FormulaError(_problem(f"the ')' at character {position} closes no '(': "
                                            f"{_pointed(text, position)}"))
            opened.pop()
    if opened:
        raise FormulaError(_problem(f"the '(' at character {opened[-1]} is never closed: "
                                    f"{_pointed(text, opened[-1])}"))


def _pointed(text: str, position: int) -> str:
    """The formula with the character at `position` (1-based) marked, e.g. 'y ~ x + (1 | g>>)<<)'."""
    return repr(text[:position - 1] + ">>" + text[position - 1] + "<<" + text[position:])


def _unread(text: str, raw_tokens: list, first_unread: int) -> Problem:
    """The text after what the parser took (formulae stops at the first token its grammar has no place for):
    named by position, since the rest of the formula would otherwise be dropped without a word."""
    rest = "".join(t.lexeme for t in raw_tokens[first_unread:] if t.kind != "EOF")
    count = len(re.sub(r"\s", "", rest))  # the unread tokens' characters, from the end of the text
    position = len(text)
    while count and position:
        position -= 1
        count -= not text[position].isspace()
    left = text[position:].strip()
    hint = (" — a grouping term is written in parentheses: (x | g)" if left.startswith("|")
            else " — terms are joined with +" if left[:1].isalnum() or left[:1] in "`(" else "")
    return _problem(f"the text from character {position + 1} on is not part of the formula: {left!r}{hint}")


def read(text: str) -> tuple[ParsedFormula, list[Problem]]:
    """Read an lme4 formula as far as stangen can take it, and the problems with the rest (a formula that does
    not parse at all raises FormulaError)."""
    from formulae import expr as fx
    from formulae.parser import ParseError, Parser
    from formulae.resolver import Resolver, ResolverError
    from formulae.scanner import ScanError, Scanner
    from formulae.terms.call_resolver import CallResolverError

    if not isinstance(text, str) or "~" not in text:
        raise FormulaError(_problem(f"an lme4 formula is 'outcome ~ terms', got {text!r}"))
    _check_size(text)
    try:
        raw_tokens = Scanner(text).scan()
        tokens, uncorrelated, kept = _double_bars(raw_tokens)
        parser = Parser(tokens)
        tree = parser.parse()
        if not parser.at_end():
            raise FormulaError(_unread(text, raw_tokens, kept[parser.current]))
        bars_written = _bar_nodes(tree, fx)
        model = Resolver(tree).resolve()
        bar_models = [_as_model(Resolver(node).resolve()) for node in bars_written]
    # formulae's own errors, and what its resolver raises on trees its grammar lets through (`1(x)`)
    except (ScanError, ParseError, ResolverError, CallResolverError, ValueError, AttributeError, TypeError,
            IndexError, KeyError) as exc:
        # a construct formulae cannot even read (R's x^2 inside I()): say what to write instead
        called = [name for name in re.findall(r"([A-Za-z_][\w.]*)\s*\(", text) if name in UNSUPPORTED_CALLS]
        advice = "; ".join(f"{name}(): {UNSUPPORTED_CALLS[name]}" for name in dict.fromkeys(called))
        raise FormulaError(_problem(f"cannot read {text!r}: {exc}" + (f" — {advice}" if advice else ""))) from None
    except RecursionError:  # many terms in a row: the parser recurses on each
        raise FormulaError(_problem("the formula has too many terms to read; write it as a long-form spec")) from None
    problems: list[Problem] = []
    outcome, trials = _response(getattr(model, "response", None), problems)
    intercept, terms, offsets = False, [], []
    for term in model.common_terms:
        if type(term).__name__ == "Intercept":
            intercept = True
            continue
        if len(term.components) == 1 and _is_offset(term.components[0]):
            column = _offset_column(term.components[0], problems)
            offsets += [column] if column else []
            continue
        components = tuple(_component(c, problems) for c in term.components)
        if None in components:
            continue
        if any(c.mean_by for c in components) and len(components) > 1:
            problems.append(_problem(f"'{_term_text(components)}': an interaction with a group mean is not "
                                     f"supported; add the group mean as a column of the data and use its name"))
            continue
        terms.append(components)
    bars = []
    for i, (node, bar_model) in enumerate(zip(bars_written, bar_models)):
        written = _written(node, i not in uncorrelated)
        checked = _check_grouping(node.expression.right, written, fx, problems)
        if not checked:
            continue
        by_grouping: dict[tuple[str, ...], list] = {}
        for gterm in bar_model.group_terms:
            grouping = tuple(v.name for v in gterm.factor.components)
            by_grouping.setdefault(grouping, []).append(gterm.expr)
        for grouping, exprs in by_grouping.items():
            has_intercept, slopes = False, []
            for e in exprs:
                if type(e).__name__ == "Intercept":
                    has_intercept = True
                    continue
                parts = [_component(c, problems) for c in e.components]
                if None in parts:
                    continue
                if any(p.categorical or p.mean_by for p in parts):
                    problems.append(_problem(f"{written}: varying {_term_text(parts)} is not supported; write "
                                             f"the plain column name (a categorical slope varies as its column)"))
                    continue
                slopes.append(":".join(p.column for p in parts))
            bars.append(Bar(written, has_intercept, tuple(slopes), grouping, i not in uncorrelated))
    if len(offsets) > 1:
        problems.append(_problem(f"offsets {', '.join(f'offset({o})' for o in offsets)}: a model takes one offset "
                                 "column; add their sum to the data as a column and write offset() of it"))
    return (ParsedFormula(text.strip(), outcome, trials, intercept, tuple(terms), tuple(bars),
                          offsets[0] if offsets else None), problems)


def _is_offset(comp) -> bool:
    call = getattr(comp, "call", None)
    return type(comp).__name__ != "Variable" and call is not None and call.callee == "offset"


def _offset_column(comp, problems: list[Problem]) -> str | None:
    """The column of offset(column); offset of anything else is a problem, named here (None)."""
    args = list(comp.call.args)
    if len(args) == 1 and type(args[0]).__name__ == "LazyVariable" and not comp.call.kwargs:
        return args[0].name
    inner = comp.name[comp.name.index("(") + 1:-1] if "(" in comp.name else comp.name
    problems.append(_problem(f"'{comp.name}': an offset names one column: add {inner} to the data as a column "
                             f"(e.g. log_exposure = log(exposure)) and write offset(log_exposure)"))
    return None


def _as_model(resolved):
    from formulae.terms.terms import Model
    return resolved if isinstance(resolved, Model) else Model(resolved)


def _double_bars(tokens):
    """lme4's `||` (formulae reads it as two pipes): one pipe; the numbers (in order) of those bars; and where
    each token kept was in the scanner's list."""
    out, uncorrelated, bar, kept = [], set(), -1, []
    for index, token in enumerate(tokens):
        if token.kind == "PIPE":
            if out and out[-1].kind == "PIPE":
                uncorrelated.add(bar)
                continue
            bar += 1
        out.append(token)
        kept.append(index)
    return out, uncorrelated, kept


def _bar_nodes(node, fx) -> list:
    """The `(… | …)` groupings of a parsed formula, left to right (the order the scanner met their pipes)."""
    found = []

    def walk(n):
        if isinstance(n, fx.Grouping):
            inner = n.expression
            if isinstance(inner, fx.Binary) and inner.operator.kind == "PIPE":
                found.append(n)
                return
            walk(inner)
        elif isinstance(n, fx.Binary):
            walk(n.left)
            walk(n.right)
        elif isinstance(n, fx.Unary):
            walk(n.right)

    walk(node)
    return found


def _written(node, correlated: bool) -> str:
    """A bar as the user would write it: '(1 + x | g)', '(x || g)'."""
    bar = "|" if correlated else "||"
    return f"({_expr_text(node.expression.left)} {bar} {_expr_text(node.expression.right)})"


def _expr_text(node) -> str:
    name = type(node).__name__
    if name == "Binary":
        op = node.operator.lexeme
        sep = op if op in (":", "/", "^") else f" {op} "
        return f"{_expr_text(node.left)}{sep}{_expr_text(node.right)}"
    if name == "Variable":
        return node.name.lexeme if hasattr(node.name, "lexeme") else str(node.name)
    if name == "QuotedName":
        return node.expression.lexeme  # with its backticks, as written
    if name == "Literal":
        return str(node.value)
    if name == "Grouping":
        return f"({_expr_text(node.expression)})"
    return str(node).strip()


def _check_grouping(node, written: str, fx, problems: list[Problem]) -> bool:
    """The right side of `|` names grouping columns: g, a:b, a/b (a/b/c …)."""
    def ok(n) -> bool:
        if isinstance(n, fx.Variable):
            return True
        if isinstance(n, fx.QuotedName):
            return True
        return isinstance(n, fx.Binary) and n.operator.lexeme in (":", "/") and ok(n.left) and ok(n.right)

    if ok(node):
        return True
    right = _expr_text(node)
    advice = ("; for crossed levels write one bar each: " + " + ".join(f"(… | {v.strip()})" for v in right.split("+"))
                        if "+" in right else "")
    problems.append(_problem(f"{written}: the right side of | must name the grouping: a column (g), nested "
                             f"groups (a/b) or a combination (a:b); got '{right}'{advice}"))
    return False


def _response(response, problems: list[Problem]) -> tuple[str | None, str | None]:
    if response is None:
        problems.append(_problem("no outcome: write 'outcome ~ terms'"))
        return None, None
    components = response.term.components
    comp = components[0]
    if type(comp).__name__ == "Variable":
        return comp.name, None
    call = comp.call
    args = call.args
    if call.callee == "cbind" and len(args) == 2 and type(args[0]).__name__ == "LazyVariable":
        second = args[1]
        if (type(second).__name__ == "LazyOperator" and second.symbol == "-"
                and [type(a).__name__ for a in second.args] == ["LazyVariable", "LazyVariable"]
                and second.args[1].name == args[0].name):
            return args[0].name, second.args[0].name
    if call.callee == "cbind":
        problems.append(_problem(f"outcome '{comp.name}': a binomial outcome is written cbind(successes, "
                                 f"trials - successes), with trials a column of the data"))
    else:
        problems.append(_problem(f"outcome '{comp.name}': the outcome is a column name; "
                                 f"{UNSUPPORTED_CALLS.get(call.callee, TRANSFORM_ADVICE)}"))
    return None, None


def _component(comp, problems: list[Problem]) -> Component | None:
    kind = type(comp).__name__
    if kind == "Variable":
        return Component(comp.name)
    call = comp.call
    name, args, kwargs = call.callee, list(call.args), dict(call.kwargs)
    columns = [a.name for a in args if type(a).__name__ == "LazyVariable"]
    if name in FACTOR_CALLS and len(args) == 1 and columns:
        return Component(columns[0], categorical=True)
    if name in REFERENCE_CALLS and args and type(args[0]).__name__ == "LazyVariable":
        if name == "C" and len(args) == 1 and not kwargs:
            return Component(columns[0], categorical=True)
        reference = _reference(name, args[1:], kwargs)
        if reference is not None:
            return Component(columns[0], categorical=True, reference=reference)
        example = 'relevel(f, "b")' if name == "relevel" else 'C(f, Treatment("b"))'
        problems.append(_problem(f"'{comp.name}': write the reference category as {example}"))
        return None
    if name == MEAN_CALL and len(args) == 2 and len(columns) == 2 and not kwargs:
        return Component(columns[0], mean_by=columns[1])
    if name == MEAN_CALL:
        problems.append(_problem(f"'{comp.name}': a group mean is written ave(column, grouping column)"))
        return None
    problems.append(_problem(f"'{comp.name}': {UNSUPPORTED_CALLS.get(name, TRANSFORM_ADVICE)}"))
    return None


def _reference(callee: str, args: list, kwargs: dict) -> str | None:
    """The reference category of relevel(f, "b"), relevel(f, ref = "b"), C(f, Treatment("b")),
    C(f, Treatment(reference = "b"))."""
    def value(v):
        return None if type(v).__name__ != "LazyValue" else _label(v.value)

    if callee == "relevel":
        given = args[0] if args else kwargs.get("ref")
        return value(given) if given is not None else None
    if len(args) == 1 and type(args[0]).__name__ == "LazyCall" and args[0].callee == "Treatment":
        inner = args[0]
        given = inner.args[0] if inner.args else inner.kwargs.get("reference")
        return value(given) if given is not None else None
    return None


def _label(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _term_text(components) -> str:
    return ":".join(c.text for c in components)


# -- the long form ---------------------------------------------------------------------------------------------
def to_long_form(parsed: ParsedFormula, frame=None, family: str | None = None,
                 problems: list[Problem] | None = None) -> LongForm:
    """The spec keys of a parsed formula. With the data (`frame`), columns are checked ("did you mean") and
    predictors constant within a level's groups are placed at that level. `problems`: the parser's, reported
    with these in one error."""
    problems = list(problems or [])
    notes: list[str] = []
    comments: dict[str, str] = {}
    keys: dict = {"outcome": parsed.outcome}
    if parsed.trials:
        # cbind(s, n - s): successes of trials, the family that takes trials unless another is given
        takers = [name for name, f in FAMILIES.items() if f.takes_trials]
        written = f"cbind({parsed.outcome}, {parsed.trials} - {parsed.outcome})"
        keys["trials"] = parsed.trials
        if family is not None and family in FAMILIES and not FAMILIES[family].takes_trials:
            problems.append(_problem(f"{written} is successes of trials, for family {' or '.join(takers)}; "
                                     f"family {family} takes no trials"))
        keys["family"] = family or takers[0]
        comments["trials"] = f"{written}: successes of trials"
    if parsed.offset:
        keys["offset"] = parsed.offset
        comments["offset"] = f"offset({parsed.offset}): added to the linear predictor with coefficient 1"

    if frame is not None:
        _check_columns(parsed, frame, problems)

    term_names = {frozenset(c.column for c in t): _term_text(t) for t in parsed.terms if not t[0].mean_by}
    levels, level_of_grouping = _levels(parsed, term_names, problems, comments)

    # where each column goes: a group-level predictor of the level (fewest groups first) where it is constant
    slopes_at = {name: {c for c in lv["varying"] if c != INTERCEPT} for name, lv in levels.items()}
    varying_anywhere = {v for s in slopes_at.values() for c in s for v in c.split(":")}
    groupings = {name: g for g, name in level_of_grouping.items()}
    constant = _constant_within(parsed, frame, groupings, varying_anywhere) if frame is not None else {}

    predictors: list[str] = []
    categorical: list[str] = []
    reference: dict[str, str] = {}
    for term in parsed.terms:
        text = _term_text(term)
        for comp in term:
            if comp.categorical and comp.column not in categorical and (
                    frame is None or _reads_as_numbers(frame, comp.column)):
                categorical.append(comp.column)
            if comp.reference is not None:
                reference[comp.column] = comp.reference
        if term[0].mean_by:
            comp = term[0]
            name = comp.mean_by
            if name not in levels or INTERCEPT not in levels[name]["varying"]:
                problems.append(_problem(f"'{comp.text}': {comp.mean_by} is not a level with a varying intercept "
                                         f"in this formula; add (1 | {comp.mean_by})"))
                continue
            levels[name].setdefault("means", []).append(comp.column)
            notes.append(f"{comp.text}: the {name} mean of {comp.column}, a {name}-level predictor")
            comments[f"levels.{name}.means"] = f"{comp.text}: the {name} mean of {comp.column}"
            continue
        placed = _place(term, levels, slopes_at, constant)
        if placed is None:
            predictors.append(text)
            continue
        name, coefficient, column = placed
        varying = levels[name]["varying"]
        varying[coefficient].append(column)
        if coefficient == INTERCEPT:
            notes.append(f"{column} is constant within {name}: used as a {name}-level predictor")
            comment = f"{column}: constant within {name}, a {name}-level predictor"
        else:
            notes.append(f"{text}: {column} is a {name}-level predictor and {coefficient} varies by {name}: "
                         "a cross-level interaction")
            comment = f"{text}: cross-level interaction"
        path = f"levels.{name}.varying.{coefficient}"
        comments[path] = "; ".join(filter(None, [comments.get(path), comment]))

    for name, lv in levels.items():
        for coefficient in lv["varying"]:
            if coefficient != INTERCEPT and coefficient not in {*term_names.values()} and \
                    frozenset(coefficient.split(":")) not in term_names:
                problems.append(_problem(
                    f"'{coefficient}' varies by {name} but is not a population term: stangen's varying "
                    f"coefficients vary around a population coefficient; add it, e.g. "
                    f"'{parsed.outcome} ~ {coefficient} + …'"))
    if not parsed.intercept:
        keys["intercept"] = False
    keys["predictors"] = predictors
    if predictors:
        comments["predictors"] = "level-1 terms (lme4's fixed effects)"
    keys["levels"] = {name: _lean_level(lv) for name, lv in levels.items()}
    if categorical:
        keys["categorical"] = categorical
    if reference:
        keys["reference"] = reference
    if problems:
        raise FormulaError(problems)
    return LongForm(keys, tuple(notes), comments)


def _levels(parsed: ParsedFormula, term_names, problems, comments) -> tuple[dict, dict]:
    """Levels from the bars: one per grouping; a grouping a:b is level b within level a."""
    blocks: dict[tuple[str, ...], list[Bar]] = {}
    for bar in parsed.bars:
        blocks.setdefault(bar.grouping, []).append(bar)
    levels: dict[str, dict] = {}
    level_of: dict[tuple[str, ...], str] = {}
    for grouping, bars in blocks.items():
        name = grouping[-1]
        written = " + ".join(dict.fromkeys(b.text for b in bars))
        if name in levels:
            problems.append(_problem(f"{written}: '{name}' is already a level (grouping "
                                     f"{':'.join(next(g for g, n in level_of.items() if n == name))}); a column "
                                     "names one level"))
            continue
        within = None
        if len(grouping) > 1:
            parent = grouping[:-1]
            if parent not in blocks:
                problems.append(_problem(
                    f"{written}: stangen's levels nest within a level of the model: write "
                    f"(1 | {'/'.join(grouping)}) to add {':'.join(parent)}'s effects too, or add a column "
                    f"holding the {':'.join(grouping)} combination and group by it"))
                continue
            within = parent[-1]
        coefficients: list[str] = []
        for bar in bars:
            for coef in bar.coefficients:
                if coef in coefficients:
                    problems.append(_problem(f"{written}: {coef} varies by {':'.join(grouping)} twice"))
                    continue
                coefficients.append(coef)
        big = [b for b in bars if len(b.coefficients) > 1 and b.correlated]
        if big and len(bars) > 1 and len(coefficients) > 1:
            problems.append(_problem(
                f"{written}: a level's varying coefficients are all correlated or all independent; write "
                f"({' + '.join(_lme4_names(coefficients))} | {':'.join(grouping)}) or "
                f"({' + '.join(_lme4_names(coefficients))} || {':'.join(grouping)})"))
            continue
        ordered = ([INTERCEPT] if INTERCEPT in coefficients else []) + [
            _canonical(c, term_names) for c in coefficients if c != INTERCEPT]
        level = {"within": within, "varying": {c: [] for c in ordered}}
        if not big and len(ordered) > 1:
            level["correlated"] = False
        levels[name] = level
        level_of[grouping] = name
        what = " and ".join(["intercept" if c == INTERCEPT else f"{c} slope" for c in ordered])
        comments[f"levels.{name}"] = f"{written}: {what}" + (f", nested within {within}" if within else "") + (
            ", uncorrelated" if level.get("correlated") is False else "")
    return levels, level_of


def _lme4_names(coefficients) -> list[str]:
    return ["1" if c == INTERCEPT else c for c in coefficients]


def _canonical(coefficient: str, term_names: dict) -> str:
    """A varying slope named as its population term ('z:x' in a bar, 'x:z' in the population part)."""
    return term_names.get(frozenset(coefficient.split(":")), coefficient)


def _place(term, levels, slopes_at, constant) -> tuple[str, str, str] | None:
    """(level, coefficient, column) when a term is a group-level predictor: `w` with w constant within a level
    that varies its intercept; `x:w` (either order) with w constant within a level where x varies."""
    columns = [c.column for c in term]
    if len(term) == 1:
        options = [lv for lv in constant.get(columns[0], []) if INTERCEPT in levels[lv]["varying"]]
        return (options[0], INTERCEPT, columns[0]) if options else None
    if len(term) == 2:
        for slope, column in (columns, columns[::-1]):
            if slope in constant:
                continue  # a group-level variable varies no slope
            options = [lv for lv in constant.get(column, []) if slope in slopes_at[lv]]
            if options:
                return options[0], slope, column
    return None


def _constant_within(parsed: ParsedFormula, frame, groupings: dict[str, tuple], varying) -> dict[str, list[str]]:
    """column → the levels (fewest groups first) within whose groups it takes one value (missing values
    aside), for every population column that is not a varying slope anywhere."""
    columns = {c.column for t in parsed.terms for c in t if not c.mean_by} - set(varying)
    out: dict[str, list[str]] = {}
    sizes = {}
    for name, grouping in groupings.items():
        if not all(g in frame.columns for g in grouping):
            continue
        grouped = frame.groupby(list(grouping), dropna=True, sort=False)
        sizes[name] = grouped.ngroups
        if grouped.size().max() < 2:  # one row per group: everything is constant, nothing is learnt
            continue
        for column in columns:
            if column in frame.columns and column not in grouping and grouped[column].nunique(dropna=True).max() <= 1:
                out.setdefault(column, []).append(name)
    return {c: sorted(levels, key=lambda n: sizes[n]) for c, levels in out.items()}


def _check_columns(parsed: ParsedFormula, frame, problems: list[Problem]) -> None:
    columns = list(frame.columns)
    named = [parsed.outcome, parsed.trials, parsed.offset] + [c.column for t in parsed.terms for c in t] + \
            [c.mean_by for t in parsed.terms for c in t] + [g for b in parsed.bars for g in b.grouping] + \
            [v for b in parsed.bars for s in b.slopes for v in s.split(":")]
    for name in dict.fromkeys(n for n in named if n):
        if name not in frame.columns:
            hint = suggest(name, columns) or f" (columns: {', '.join(map(str, columns[:20]))})"
            problems.append(_problem(f"'{name}' is not a column of the data{hint}"))


def _numeric_column(frame, column: str) -> bool:
    return column in frame.columns and is_numeric(frame[column])


def _reads_as_numbers(frame, column: str) -> bool:
    """Numbers, or text that is mostly numbers (livch: 0, 1, 2, 3+): factor() of it must say `categorical:`,
    else the data's check reads it as a numeric column with typos. Plain text is categorical anyway."""
    return column in frame.columns and (is_numeric(frame[column]) or mostly_numbers(frame[column]))


def _lean_level(level: dict) -> dict:
    """A level as the long form writes it: varying as a list unless it has group-level predictors."""
    out = {k: v for k, v in level.items() if v is not None}
    varying = out["varying"]
    out["varying"] = varying if any(varying.values()) else list(varying)
    if out["varying"] == [INTERCEPT]:
        del out["varying"]
    return out


# -- into a spec ---------------------------------------------------------------------------------------------
LONG_FORM_KEYS = ("outcome", "trials", "offset", "predictors", "levels", "intercept")


def sub_model_formulas(raw: Mapping) -> dict:
    """A raw spec whose `parameters:` entries may be one-sided formulas (`zi: "~ mined"`, `sigma: "~ Days +
    (1 | Subject)"`, as glmmTMB's ziformula/dispformula and brms's `sigma ~ …`) with each such entry in long
    form (predictors, levels); the other entries as they are. Problems are reported at the entry."""
    parameters = raw.get("parameters")
    if not isinstance(parameters, Mapping) or not any(isinstance(v, str) for v in parameters.values()):
        return dict(raw)
    out, problems = {}, []
    for name, value in parameters.items():
        if not isinstance(value, str):
            out[name] = value
            continue
        path = f"parameters.{name}"
        rhs = value.strip()
        if not rhs.startswith("~"):
            problems.append(Problem(path, f"a sub-model's formula is one-sided, e.g. '~ x + (1 | g)', got {value!r}"))
            continue
        try:
            parsed, found = read(f"sub_model_outcome__ {rhs}")
            long_form = to_long_form(parsed, None, None, found)
        except FormulaError as err:
            problems += [Problem(path, p.message) for p in err.problems]
            continue
        keys = long_form.keys
        if keys.get("intercept") is False:
            problems.append(Problem(path, "a sub-model always has its intercept: leave out 0 / -1"))
        entry = {"predictors": keys.get("predictors", [])}
        if keys.get("levels"):
            entry["levels"] = {level: {k: v for k, v in lv.items() if k in ("varying", "correlated")}
                               for level, lv in keys["levels"].items()}
        out[name] = entry
    if problems:
        raise FormulaError(problems)
    return {**raw, "parameters": out}


def expand(raw: Mapping, frame=None, lines: Mapping[str, int] | None = None) -> tuple[dict, LongForm]:
    """A raw spec with `formula:` → the same spec in long form. Problems are reported at `formula`."""
    line = (lines or {}).get("formula")
    text = raw.get("formula")
    clash = [k for k in LONG_FORM_KEYS if k in raw]
    problems = []
    if clash:
        problems.append(Problem("formula", f"is given with {', '.join(f'`{k}:`' for k in clash)}: a spec states its "
                                           "model either as a formula or in long form (outcome, predictors, "
                                           "levels), not both", line))
    if not isinstance(text, str) or not text.strip():
        problems.append(Problem("formula", f"must be an lme4 formula such as 'y ~ x + (x | g)', got {text!r}", line))
    if problems:
        raise FormulaError(problems)
    family = raw.get("family")
    try:
        parsed, problems = read(text)
        long_form = to_long_form(parsed, frame, family if isinstance(family, str) else None, problems)
    except FormulaError as err:
        raise FormulaError([Problem(p.path, p.message, line) for p in err.problems]) from None
    out = {k: v for k, v in raw.items() if k != "formula"}
    for key, value in long_form.keys.items():
        if key == "family" and "family" in raw:
            continue
        if key in ("categorical", "reference") and key in raw:
            merged = raw[key]
            value = (list(dict.fromkeys([*value, *merged])) if key == "categorical" else {**value, **merged}) \
                if isinstance(merged, (list, Mapping)) else merged
        out[key] = value
    return out, long_form


def commented_yaml(yaml_text: str, comments: Mapping[str, str], header: list[str]) -> str:
    """The YAML a spec writes, with a comment after each line whose key path has one."""
    key_line = re.compile(r"^(\s*)([^\s:#][^:]*?):(\s|$)")
    stack: list[tuple[int, str]] = []
    # user text (the formula, column names) on one comment line each: a line break in it would start a YAML key
    out = [f"# {printable(line)}" if line else "#" for line in header]
    for line in yaml_text.splitlines():
        match = key_line.match(line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group(2).strip()))
            path = ".".join(k for _, k in stack)
            if path in comments:
                line = f"{line}  # {printable(comments[path])}"
        out.append(line)
    return "\n".join(out) + "\n"
