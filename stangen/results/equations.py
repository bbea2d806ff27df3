"""The model as level-1 and level-2 equations, in the notation of the multilevel literature.

For specs/language.yaml (pupils i in schools j):

    y_ij = β0j + β1j·iq_verb_ij + ε_ij              ε_ij ~ N(0, σ²)
    β0j = γ00 + γ01·mean_iq_verb_j + u0j
    β1j = γ10 + u1j                                 (u0j, u1j) ~ N(0, Σ_school)

Conventions (Raudenbush & Bryk; Snijders & Bosker; Hox):
  * i indexes observations; the grouping levels get j, k, l, … innermost first along each nesting chain,
    so precincts i in counties j in states k give y_ijk, and a county's effects carry both its letters
    (u0jk: county labels are read within their state);
  * crossed levels get separate indices with the observation's cell in parentheses: y_i(jk);
  * every level-1 coefficient β_p has one equation: its population value γ_p0, the effects γ_pq of
    group-level predictors (q = 1, 2, … across levels) and one deviation per level where it varies
    (u at the first level, v at the second, …). A pooled coefficient reads β1j = γ10;
  * non-gaussian families show the link: logit(p_ij) = …, log(λ_ij) = ….

`equations(desc, columns, group_columns)` builds it from a ModelDescription (`from_fit(fit)` passes the
column names of categorical predictors); `.text()` is plain text with `_` for subscripts, `.html()` uses
<sub>/<sup>.
"""
from __future__ import annotations

import html as _html
import re
from dataclasses import dataclass, field
from typing import Any, Union

from ..compiler.model import LevelDescription, ModelDescription

INDEX_LETTERS = "jklmnpqrst"
DEVIATION_LETTERS = "uvwrsabcdh"
_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclass(frozen=True)
class Sym:
    """A symbol with optional subscript and superscript: β0j, y_ij, τ²_school, iq_verb_ij."""

    base: str
    sub: str = ""
    sup: str = ""
    name: bool = False  # a name from the spec (a column), not a math symbol
    sub_is_name: bool = False  # the subscript is a name (Σ_school), written upright; else indices (β0j)

    def text(self) -> str:
        out = self.base + self.sup.translate(_SUPERSCRIPTS)
        if self.sub:
            joined = len(self.base) == 1 and not self.sup and self.sub[0].isdigit()
            out += self.sub if joined else f"_{self.sub}"
        return out

    def html(self) -> str:
        cls = "nm" if self.name else "sy"
        out = f'<span class="{cls}">{_html.escape(self.base)}</span>'
        sub = ""
        if self.sub:
            if self.sub_is_name:
                sub = f'<sub class="nm-sub">{_html.escape(self.sub)}</sub>'
            else:  # index letters italic, digits upright, as in typeset math
                sub = "<sub>" + re.sub(r"([A-Za-z]+)", r"<i>\1</i>", _html.escape(self.sub)) + "</sub>"
        sup = f"<sup>{_html.escape(self.sup)}</sup>" if self.sup else ""
        if sub and sup:  # stacked, τ with ² over its subscript
            return f'<span class="sym">{out}<span class="subsup">{sup}{sub}</span></span>'
        return f'<span class="sym">{out}{sub}{sup}</span>'


Piece = Union[Sym, str]


@dataclass(frozen=True)
class Equation:
    pieces: tuple[Piece, ...]

    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text() for p in self.pieces)

    def html(self) -> str:
        return "".join(_html.escape(p) if isinstance(p, str) else p.html() for p in self.pieces)


@dataclass
class Section:
    title: str
    equations: list[Equation] = field(default_factory=list)


@dataclass
class ModelEquations:
    sections: list[Section]
    where: list[str]  # plain-text explanations of the symbols
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Every equation as plain text, in order."""
        return [eq.text() for s in self.sections for eq in s.equations]

    def text(self) -> str:
        out = []
        for s in self.sections:
            out.append(f"{s.title}:")
            out += [f"    {eq.text()}" for eq in s.equations]
        if self.where:
            out.append("where")
            out += [f"    {w}" for w in self.where]
        out += self.notes
        return "\n".join(out)

    def html(self) -> str:
        out = ['<div class="equations">']
        for s in self.sections:
            out.append(f'<div class="eq-section"><div class="eq-title">{_html.escape(s.title)}</div>')
            out += [f'<div class="eq">{eq.html()}</div>' for eq in s.equations]
            out.append("</div>")
        if self.where:
            out.append('<div class="eq-where"><div class="eq-title">where</div><ul>')
            out += [f"<li>{_html.escape(w)}</li>" for w in self.where]
            out.append("</ul></div>")
        out += [f'<p class="eq-note">{_html.escape(n)}</p>' for n in self.notes]
        out.append("</div>")
        return "\n".join(out)

    def markdown(self) -> str:
        """Plain-text equations in a code block (Markdown has no portable math)."""
        return "```\n" + self.text() + "\n```"


# -- indices ----------------------------------------------------------------------------------

@dataclass
class _Indices:
    letter: dict[str, str]  # level name → its index letter
    group_sub: dict[str, str]  # level name → subscript of its groups: 'jk' for a county in state k
    deviation: dict[str, str]  # level name → letter of its deviations: u, v, …
    obs: str  # subscript of an observation: 'ij', 'ijk', 'i(jk)'
    cell: str  # subscript of level-1 coefficients: 'j', 'jk'
    trees: list[list[LevelDescription]]  # levels grouped by their outermost ancestor, innermost first
    crossed: bool


def _indices(desc: ModelDescription) -> _Indices:
    by_name = {lv.name: lv for lv in desc.levels}
    roots = [lv for lv in desc.levels if lv.parent is None or lv.parent not in by_name]

    def depth(lv: LevelDescription) -> int:
        return len(lv.ancestors)

    trees = []
    for root in roots:
        members = [lv for lv in desc.levels if lv is root or (lv.ancestors and lv.ancestors[0] == root.name)]
        order = {lv.name: i for i, lv in enumerate(desc.levels)}
        trees.append(sorted(members, key=lambda lv: (-depth(lv), order[lv.name])))
    ordered = [lv for tree in trees for lv in tree]
    letter = {lv.name: _nth(INDEX_LETTERS, i) for i, lv in enumerate(ordered)}
    deviation = {lv.name: _nth(DEVIATION_LETTERS, i) for i, lv in enumerate(ordered)}
    group_sub = {lv.name: letter[lv.name] + "".join(letter[a] for a in reversed(lv.ancestors) if a in letter)
                 for lv in ordered}
    chain = len(trees) == 1 and len({depth(lv) for lv in trees[0]}) == len(trees[0])
    letters = "".join(letter[lv.name] for lv in ordered)
    crossed = bool(ordered) and not chain
    obs = f"i({letters})" if crossed else "i" + letters
    return _Indices(letter, group_sub, deviation, obs, letters, trees, crossed)


def _nth(letters: str, i: int) -> str:
    return letters[i] if i < len(letters) else f"{letters[-1]}{i - len(letters) + 2}"


def _pair(p: int, q: int) -> str:
    return f"{p}{q}" if p < 10 and q < 10 else f"{p},{q}"


# -- building ---------------------------------------------------------------------------------

@dataclass
class _Coefficient:
    p: int
    label: str  # 'intercept' or the column shown, e.g. 'iq_verb', 'period2'
    varying_name: str | None  # name used in level.coefficients ('intercept' or the term), if it can vary
    pooled: bool  # has a population value γ_p0


def _shown(name: str) -> str:
    return name.replace(":", "×")


def equations(desc: ModelDescription, columns: dict[str, list[str]] | None = None,
              group_columns: dict[tuple[str, str], list[str]] | None = None) -> ModelEquations:
    """The equations of a model. `columns`: term → design columns (expands categorical predictors);
    `group_columns`: (level, group predictor) → columns. Both come from the prepared data and are optional."""
    columns = columns or {}
    group_columns = group_columns or {}
    ix = _indices(desc)
    notes: list[str] = []
    where: list[str] = []

    # level-1 coefficients: β0 (intercept), then one per design column
    varies_somewhere = {c.name for lv in desc.levels for c in lv.coefficients}
    coefs: list[_Coefficient] = []
    if desc.intercept or "intercept" in varies_somewhere:
        coefs.append(_Coefficient(0, "intercept", "intercept", desc.intercept))
    p = 1
    for term in desc.terms:
        names = columns.get(term.name)
        if term.categorical and not names:
            notes.append(f"{term.name} is categorical: its coefficient stands for one coefficient per category "
                         "other than the reference.")
        for col in names or [term.name]:
            coefs.append(_Coefficient(p, col, term.name if not term.categorical else None, True))
            p += 1

    beta = {c.p: Sym("β", f"{c.p}{ix.cell}" if c.p < 10 or not ix.cell else f"{c.p},{ix.cell}") for c in coefs}
    linear: list[Piece] = []
    for c in coefs:
        if linear:
            linear.append(" + ")
        linear.append(beta[c.p])
        if c.label != "intercept":
            linear += ["·", Sym(_shown(c.label), ix.obs, name=True)]
    if desc.offset is not None:  # coefficient 1: no β of its own
        linear += [" + " if linear else "", Sym(_shown(desc.offset), ix.obs, name=True)]
    if not linear:
        linear = ["0"]

    y = Sym("y", ix.obs)
    level1 = Section(_level1_title(desc, ix))
    family = desc.family
    if family.additive_errors:
        eps = Sym("ε", ix.obs)
        level1.equations.append(Equation((y, " = ", *linear, " + ", eps)))
        modelled = family.residual_sd is not None and desc.submodel(family.residual_sd) is not None
        sigma = Sym("σ", ix.obs if modelled else desc.residuals.sigma_subscript(ix.obs))  # (per row: a sub-model)
        process = desc.residuals.error_process()
        if process is not None:  # the error process, as nlme writes it
            level, label, t = process
            level1.equations.append(Equation((eps, " = ", sigma, "·a", ",  a: within each ", level, ", a ",
                                              label, " process in ", t, " with variance 1")))
            level1.equations.append(Equation(("corr(a(", t, "), a(", t, "′)) = φ^|", t, " − ", t, "′|")))
        else:
            level1.equations.append(Equation((eps, " ~ N(0, ", Sym("σ", sigma.sub, "2"), ")")))
    else:  # y ~ distribution(mean), link(mean) = linear predictor
        mean = Sym(family.mean_symbol, ix.obs)
        given = [Sym(desc.trials or "n", ix.obs, name=True), ", "] if family.takes_trials else []
        aux = "".join(f", {a.name}" for a in family.aux)
        level1.equations.append(Equation((y, f" ~ {family.distribution}(", *given, mean, f"{aux})")))
        link = family.mean_link or family.link
        if link == "identity":
            level1.equations.append(Equation((mean, " = ", *linear)))
        else:
            level1.equations.append(Equation((f"{link}(", mean, ") = ", *linear)))
    sections = [level1]

    # level-2 (and higher) equations: one per level-1 coefficient
    gamma_meaning: list[str] = []
    if desc.levels:
        group = Section(_group_title(desc, ix))
        ordered = [lv for tree in ix.trees for lv in tree]
        for c in coefs:
            rhs: list[Piece] = []
            if c.pooled:
                rhs.append(Sym("γ", _pair(c.p, 0)))
                gamma_meaning.append(f"γ{_pair(c.p, 0)}: "
                                     + ("the intercept" if c.label == "intercept" else f"coefficient of {c.label}"))
            q = 1
            for lv in ordered:
                coef = next((vc for vc in lv.coefficients if vc.name == c.varying_name), None)
                if coef is None:
                    continue
                for effect in coef.effects:
                    pred = effect.predictor
                    cols = group_columns.get((lv.name, pred.name)) or [pred.name]
                    if pred.categorical and len(cols) == 1 and cols[0] == pred.name:
                        notes.append(f"{pred.name} ({lv.name}) is categorical: its coefficient stands for one "
                                     "coefficient per category other than the reference.")
                    for col in cols:
                        rhs += [" + " if rhs else "", Sym("γ", _pair(c.p, q)), "·",
                                Sym(_shown(col), ix.group_sub[lv.name], name=True)]
                        target = "intercept" if c.label == "intercept" else f"{c.label} slope"
                        what = f"mean of {pred.column} per {lv.name}" if pred.is_mean else col
                        gamma_meaning.append(f"γ{_pair(c.p, q)}: effect of {what} on the {lv.name} {target}")
                        q += 1
            for lv in ordered:
                if any(vc.name == c.varying_name for vc in lv.coefficients):
                    rhs += [" + " if rhs else "", _deviation(ix, lv, c.p)]
            group.equations.append(Equation((beta[c.p], " = ", *(rhs or ["0"]))))
        for lv in ordered:
            group.equations.append(_distribution(ix, lv, coefs))
        sections.append(group)

    for sub in desc.submodels:  # each sub-model's own equations: link(parameter_i) = δ0 + δ1·x_i + its deviations
        sections.append(_submodel_section(desc, sub, ix, columns, where))

    where.append(f"y: {desc.outcome}" + (f" (successes out of {desc.trials} trials)" if desc.trials else ""))
    if desc.offset is not None:
        where.append(f"{desc.offset}: the offset, added to the linear predictor with coefficient 1")
    if desc.censoring is not None:
        where.append(desc.censoring.where_line("y"))
    if desc.truncation is not None:
        where.append(desc.truncation.where_line("y"))
    where.append(_index_meaning(desc, ix))
    where += gamma_meaning
    if desc.family.additive_errors and desc.residuals.where_sigma():
        where.append(desc.residuals.where_sigma())
    elif desc.family.additive_errors:
        where.append("σ: sigma, the residual sd")
    where += [f"{a.name}: the {a.meaning}" + (" (its sub-model below)" if desc.submodel(a) else "")
              for a in desc.family.aux if not desc.family.additive_errors]
    where += desc.residuals.where_own()
    for lv in [lv for tree in ix.trees for lv in tree]:
        dev = ix.deviation[lv.name]
        if lv.kind == "intercept":
            where.append(f"{dev}: deviations of the {lv.name} groups; τ_{lv.name}: sd({lv.name}: intercept)")
        elif lv.kind == "correlated":
            where.append(f"{dev}: deviations of the {lv.name} groups; Σ_{lv.name}: their covariance, with sds "
                         f"sd({lv.name}: …) and correlations cor({lv.name}: …)")
        else:
            where.append(f"{dev}: deviations of the {lv.name} groups, independent; τ_{lv.name},p: sd({lv.name}: …)")
    return ModelEquations(sections, where, list(dict.fromkeys(notes)))


def _submodel_section(desc: ModelDescription, sub, ix: _Indices, columns, where: list[str]) -> Section:
    """A sub-model (`parameters:`) at the observations: link(θ_i) = δ0 + δ1·x_i + … + its group deviations
    (w at each of its levels, independent of the model's own), each level's deviations normal."""
    symbol = {"sigma": "σ", "phi": "φ", "shape": "k"}.get(sub.stan, sub.stan)
    section = Section(f"Sub-model for {sub.stan} ({sub.link} link; each observation i its own {sub.stan})")
    rhs: list[Piece] = [Sym("δ", "0")]
    q = 1
    for term in sub.terms:
        for col in (columns or {}).get(term.columns_key, [term.name]):
            rhs += [" + ", Sym("δ", str(q)), "·", Sym(_shown(col), ix.obs, name=True)]
            where.append(f"δ{q}: coefficient of {col} in {sub.stan}'s sub-model")
            q += 1
    for lv in sub.levels:
        for k, c in enumerate(lv.coefficients):
            w = Sym("w", f"{k}{ix.group_sub[lv.name]}")
            rhs += [" + ", w] if c.term is None else [" + ", w, "·", Sym(_shown(c.term.name), ix.obs, name=True)]
    section.equations.append(Equation((f"{sub.link}(", Sym(symbol, ix.obs), ") = ", *rhs)))
    for lv in sub.levels:
        ws = ", ".join(f"w{k}{ix.group_sub[lv.name]}" for k in range(lv.n_coef))
        spread = f"N(0, τ²_{sub.stan},{lv.name})" if lv.kind == "intercept" else \
            f"N(0, Σ_{sub.stan},{lv.name})" if lv.kind == "correlated" else "independent normals"
        section.equations.append(Equation((f"({ws}) ~ " if lv.n_coef > 1 else f"{ws} ~ ", spread)))
        where.append(f"w: deviations of the {lv.name} groups in {sub.stan}'s sub-model, independent of the model's "
                     f"own; sd({lv.name}: {sub.stan}_…)")
    where.append(f"δ0: {sub.stan}'s intercept ({sub.stan}_Intercept)")
    return section


def _deviation(ix: _Indices, lv: LevelDescription, p: int) -> Sym:
    sub = ix.group_sub[lv.name]
    return Sym(ix.deviation[lv.name], f"{p}{sub}" if p < 10 else f"{p},{sub}")


def _distribution(ix: _Indices, lv: LevelDescription, coefs: list[_Coefficient]) -> Equation:
    ps = [next(c.p for c in coefs if c.varying_name == vc.name) for vc in lv.coefficients]
    if lv.kind == "intercept" or len(ps) == 1:
        return Equation((_deviation(ix, lv, ps[0]), " ~ N(0, ", Sym("τ", lv.name, "2", sub_is_name=True), ")"))
    if lv.kind == "correlated":
        pieces: list[Piece] = ["("]
        for n, p in enumerate(ps):
            pieces += [", " if n else "", _deviation(ix, lv, p)]
        return Equation((*pieces, ") ~ N(0, ", Sym("Σ", lv.name, sub_is_name=True), ")"))
    pieces = []
    for n, p in enumerate(ps):
        tau = Sym("τ", f"{lv.name},{p}", "2", sub_is_name=True)
        pieces += ["; " if n else "", _deviation(ix, lv, p), " ~ N(0, ", tau, ")"]
    return Equation((*pieces, ", independent"))


def _level1_title(desc: ModelDescription, ix: _Indices) -> str:
    return "Level 1 (observations i)" if desc.levels else "Model (observations i)"


def _tree_phrase(tree: list[LevelDescription], ix: _Indices) -> str:
    depths = [len(lv.ancestors) for lv in tree]
    if len(set(depths)) == len(tree):  # a chain: county j within state k
        return " within ".join(f"{lv.name} {ix.letter[lv.name]}" for lv in tree)
    return ", ".join(f"{lv.name} {ix.letter[lv.name]}" + (f" (within {lv.parent})" if lv.parent else "")
                     for lv in tree)


def _group_title(desc: ModelDescription, ix: _Indices) -> str:
    n = len(desc.levels)
    phrases = [_tree_phrase(tree, ix) for tree in ix.trees]
    if n == 1:
        return f"Level 2 ({phrases[0]})"
    if not ix.crossed:
        return f"Levels 2–{n + 1} ({phrases[0]})"
    return f"Group levels ({'; '.join(phrases)}; crossed)"


def _index_meaning(desc: ModelDescription, ix: _Indices) -> str:
    if not desc.levels:
        return "i: observation"
    phrases = []
    for tree in ix.trees:
        depths = [len(lv.ancestors) for lv in tree]
        if len(set(depths)) == len(tree):
            phrases.append(" in ".join(f"{lv.name} {ix.letter[lv.name]}" for lv in tree))
        else:
            phrases.append(" and ".join(f"{lv.name} {ix.letter[lv.name]}" for lv in tree))
    return f"i: observation in {' and '.join(phrases)}"


def from_fit(fit: Any) -> ModelEquations:
    """The equations of a fitted model, with the design columns of categorical predictors spelled out."""
    data = getattr(fit.program, "data", None)
    return equations(fit.description, getattr(data, "columns", None), getattr(data, "group_columns", None))
