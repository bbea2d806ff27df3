"""Stage 2: Spec (+ which columns are categorical) → ModelDescription.

The description is everything the Stan program depends on: terms, levels, which
coefficients vary, group-level predictors, prior families, and every Stan name,
decided once here. It holds no data values, so equal descriptions mean equal
programs — the property the compile cache relies on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

from ..core.censoring import Censoring
from ..core.truncation import Truncation
from ..core.errors import Problem, SpecError
from ..core.families import AuxParameter, Family, get_family
from ..core.names import NameRegistry, sanitize
from ..core.residuals import INDEPENDENT, Residuals, spec_series_level
from ..spec import Prior, Spec, parse_prior
from ..spec.priors import FAMILIES
from ..spec.validate import INTERCEPT, marginal_level_name, term_variables

LevelKind = Literal["intercept", "independent", "correlated"]
# the forms whose groups' coefficients (some or all of them) are parameters drawn around their predictions
CENTERED_FORMS = ("centered", "mixed", "partial")

@dataclass(frozen=True)
class PriorChoice:
    """A prior in the program: its family is structure; its numbers come from the data block."""

    family: str
    given: Prior | None  # None: a default scaled to the data (see priors.py)
    source: str  # the spec key it came from, or "default"

    @property
    def arg_names(self) -> tuple[str, ...]:
        return FAMILIES[self.family][0]


@dataclass(frozen=True)
class Term:
    """A level-1 term with a pooled coefficient: 'iq_verb', 'sex' or an interaction 'iq_verb:sex'."""

    name: str
    variables: tuple[str, ...]
    categorical: bool  # True → several columns, a vector coefficient
    stan: str  # stem of Stan names: beta_<stan>, x_<stan>
    prior: PriorChoice
    centered_slope: bool = False  # has group-level predictors → sampled at their means
    # the pooled coefficient is the mean of a centered level's slopes (it enters the likelihood through
    # that level's group coefficients, not through the design matrix X)
    absorbed: bool = False
    owner: str = ""  # the family parameter whose sub-model the term is in ("" for the model's own)

    @property
    def columns_key(self) -> str:
        """The key of its design columns' names (Encoded.columns, PreparedData.columns): the term's name, or
        '<parameter>.<name>' in a sub-model."""
        return f"{self.owner}.{self.name}" if self.owner else self.name

    @property
    def param(self) -> str:
        return f"beta_{self.stan}_centered" if self.centered_slope else f"beta_{self.stan}"

    @property
    def size(self) -> str:
        return f"K_{self.stan}"

    @property
    def values_key(self) -> str:
        """Stan data: the term's values (a numeric term's slope column)."""
        return f"x_{self.stan}"


@dataclass(frozen=True)
class GroupPredictor:
    """A predictor measured on groups: a column constant within groups, or a group mean of a level-1 column."""

    name: str  # as in the spec: 'school_ses' or 'mean_iq_verb'
    column: str  # the data column (for a mean: the level-1 column averaged)
    is_mean: bool
    categorical: bool
    data: str  # Stan data name of its (centered) values

    @property
    def size(self) -> str:
        return f"K_{self.data}"

    @property
    def center_key(self) -> str:
        """Stan data: the value taken out of the predictor (its data are centered)."""
        return f"{self.data}_center"


@dataclass(frozen=True)
class GroupEffect:
    """The effect of one group-level predictor on one varying coefficient (a cross-level interaction for slopes)."""

    predictor: GroupPredictor
    name: str  # the reported Stan name (original scale)
    prior: PriorChoice
    # sampled at the means of the level's varying slope predictors (see LevelDescription.at_means);
    # the reported value is derived in generated quantities
    at_mean: bool = False

    @property
    def param(self) -> str:
        return f"{self.name}_at_mean" if self.at_mean else self.name


@dataclass(frozen=True)
class VaryingCoefficient:
    name: str  # 'intercept' or a term name
    column: int  # 1-based position in the level's coefficient matrix
    term: Term | None  # None for the intercept
    effects: tuple[GroupEffect, ...]
    # centered levels: what the mean of each group's coefficient includes besides the group-level predictors
    mean_from_population: bool = False  # the pooled coefficient (Intercept or beta)
    parent_column: int | None = None  # the parent group's coefficient (its column in the parent's matrix)
    absorbed: bool = False  # a nested centered level takes this level's value as its mean
    x: str | None = None  # Stan name of the values a slope multiplies (None for the intercept)

    @property
    def has_group_mean(self) -> bool:
        """A centered level's groups are drawn around something other than 0."""
        return self.mean_from_population or self.parent_column is not None or bool(self.effects)


@dataclass(frozen=True)
class LevelDescription:
    name: str
    stan: str
    id_column: str
    parent: str | None
    ancestors: tuple[str, ...]  # outermost first
    unique_labels: bool
    coefficients: tuple[VaryingCoefficient, ...]
    predictors: tuple[GroupPredictor, ...]
    kind: LevelKind
    sd_prior: PriorChoice
    correlation_prior: PriorChoice | None
    # centered: each group's coefficients are parameters, drawn around their predicted mean;
    # noncentered: standardized effects z are, scaled by the sds (and correlation)
    centered: bool = False
    # integrated: an intercept-only parent whose only child is a centered intercept-only level; its effects
    # are integrated out (the children's intercepts are then jointly normal, compound-symmetric within each
    # parent group) and drawn in generated quantities; the sampler sees only its sd
    integrated: bool = False
    # correlated intercept and slopes: the slope predictors are centered at their means for sampling, so
    # the varying intercept is the group's value at the mean, not at 0 (far from the data when the mean is
    # far from 0); sds and correlation are transformed back to the original scale
    at_means: bool = False
    # mixed (intercept-only levels; centered is then true too): each group centered or noncentered by its own
    # data — data-rich groups' intercepts are parameters, data-poor groups' are standardized effects; which
    # group is which is data (centered_<level>, noncentered_<level>), so one program serves any split
    mixed: bool = False
    # partial (levels varying several coefficients; centered is then true too): the first
    # `centered_coefficients` coefficients are sampled centered (data-rich: a varying intercept, say), the rest
    # noncentered, standardized given the centered ones through the Cholesky factor; 0: not partial
    centered_coefficients: int = 0
    parent_stan: str | None = None  # Stan name of the parent level (nested)
    parent_value: str | None = None  # what the parent adds per group (its LevelDescription.value)
    parent_is_vector: bool = False  # the parent varies only its intercept (its values are a vector)
    parent_integrated: bool = False  # the parent level's effects are integrated out (see `integrated`)
    # marginal (centered is then true too): the level whose groups are the series of correlated gaussian errors;
    # its effects are integrated out of the likelihood (each series is jointly normal, with the effects'
    # covariance added to the errors') and drawn in generated quantities given the data; its b_<level> is
    # set to the groups' predicted coefficients m_<level> in the model block, so the linear predictor is the
    # series' mean. The spec calls it `integrated` too
    marginal: bool = False
    owner: str = ""  # the family parameter whose sub-model the level's effects are in ("" for the model's own)

    @property
    def n_coef(self) -> int:
        return len(self.coefficients)

    @property
    def partial(self) -> bool:
        return self.centered_coefficients > 0

    @property
    def parameterization(self) -> str:
        return "integrated" if self.marginal else "mixed" if self.mixed else "partial" if self.partial \
            else "centered" if self.centered else "integrated" if self.integrated else "noncentered"

    def _scaled(self, stem: str) -> str:
        return f"{stem}_{self.stan}_at_mean" if self.at_means else f"{stem}_{self.stan}"

    # the level's Stan data (written by stangen.compiler.standata; read through these names everywhere)
    @property
    def groups_key(self) -> str:
        """How many groups (J_<level>)."""
        return f"J_{self.stan}"

    @property
    def index_key(self) -> str:
        """Each observation's group, 1-based (idx_<level>)."""
        return f"idx_{self.stan}"

    @property
    def parent_key(self) -> str:
        """Each group's parent group, 1-based, for a level nested under a sampled parent."""
        return f"parent_{self.stan}"

    @property
    def centered_groups_key(self) -> str:
        """A mixed level's groups sampled centered (1-based); noncentered_groups_key: the others."""
        return f"centered_{self.stan}"

    @property
    def noncentered_groups_key(self) -> str:
        return f"noncentered_{self.stan}"

    @property
    def centered_count_key(self) -> str:
        return f"J_{self.stan}_centered"

    @property
    def sd(self) -> str:
        """The sampler's sd parameter (at the slope predictors' means when at_means)."""
        return self._scaled("sd")

    @property
    def covariance_cholesky(self) -> str:
        """A Cholesky factor of the group effects' covariance (sampler scale), in Stan."""
        if self.kind == "intercept":
            return f"rep_matrix({self.sd}, 1, 1)"
        return f"diag_pre_multiply({self.sd}, {self.L})" if self.kind == "correlated" else f"diag_matrix({self.sd})"

    @property
    def predicted(self) -> str:
        """Each group's predicted coefficients (a centered level's m_<level>, or zeros), in Stan."""
        if self.has_group_means:
            return f"m_{self.stan}"
        size = self.groups_key
        return f"rep_vector(0, {size})" if self.kind == "intercept" else f"rep_matrix(0, {size}, {self.n_coef})"

    @property
    def design(self) -> str:
        """The level's design for all observations (a column per varying coefficient: 1 or the slope's
        values, N × n_coef), in Stan."""
        columns = ["rep_vector(1, N)" if c.term is None else c.x for c in self.coefficients]
        out = columns[0]
        for column in columns[1:]:
            out = f"append_col({out}, {column})"
        return out if len(columns) > 1 else f"to_matrix({out})"

    @property
    def parent_sd(self) -> str:
        """The parent level's sd parameter (an intercept-only parent, so not at any means)."""
        return f"sd_{self.parent_stan}"

    @property
    def L(self) -> str:
        return self._scaled("L")

    @property
    def u(self) -> str:
        """The sampler-scale group deviations."""
        return self._scaled("u")

    @property
    def value(self) -> str:
        """What the linear predictor adds per group: coefficients (centered) or deviations + predictors."""
        if self.centered:
            return f"b_{self.stan}"
        return f"r_{self.stan}" if self.has_effects else self.u

    @property
    def has_group_means(self) -> bool:
        return any(c.has_group_mean for c in self.coefficients)

    @property
    def uses_parent(self) -> bool:
        """Each group's mean includes its parent group's value, or the parent is integrated out over it:
        either way the program needs the parent group of each group."""
        return self.parent_integrated or any(c.parent_column is not None for c in self.coefficients)

    @property
    def has_effects(self) -> bool:
        return any(c.effects for c in self.coefficients)


@dataclass(frozen=True)
class DesignBlock:
    """Columns of C, the full design of a gaussian model whose likelihood is written with C's cross-products
    (ModelDescription.cross_products): C * theta is the linear predictor, theta stacking each block's
    coefficients `value` (a Stan vector of length `size`). `columns`: "groups", a column per group of `level`
    (on the group's rows: 1 for an intercept, else the slope's values, at their mean where the level centers
    them); "ones" (the pooled intercept); "X" (the pooled coefficients' centered design matrix)."""

    value: str
    size: str
    columns: Literal["groups", "ones", "X"]
    level: "LevelDescription | None" = None
    coefficient: VaryingCoefficient | None = None

    @property
    def slope_key(self) -> str | None:
        """The Stan data of the slope values a group block's columns hold (None: ones)."""
        term = self.coefficient.term if self.coefficient else None
        return term.values_key if term is not None else None


@dataclass(frozen=True)
class SubModel:
    """A linear predictor in place of one of the family's parameters (`parameters: {sigma: …}`): on the
    parameter's link scale (log for a positive parameter, logit for a probability), an intercept (sampled at
    the means of the sub-model's predictors), pooled coefficients of its own design matrix X_<parameter>, and
    group effects at levels of the model (their own sds; an intercept-only level centered where its groups
    are data-rich, else noncentered). The program computes the parameter for every observation; every Stan
    name of its pieces carries the parameter's name."""

    aux: AuxParameter
    intercept_prior: PriorChoice
    terms: tuple[Term, ...]
    levels: tuple[LevelDescription, ...]  # Stan names <parameter>_<level>; their groups are the model's level's
    # the centered level whose groups' values are drawn around the sub-model's intercept (it then enters the
    # linear predictor through them, as a model's centered level takes the pooled intercept); None: none is
    intercept_level: str | None = None

    @property
    def stan(self) -> str:
        return self.aux.name

    @property
    def link(self) -> str:
        return self.aux.link

    @property
    def intercept_centered(self) -> bool:
        return bool(self.terms)

    @property
    def intercept_param(self) -> str:
        return f"Intercept_{self.stan}_centered" if self.intercept_centered else f"Intercept_{self.stan}"

    @property
    def intercept_name(self) -> str:
        """The reported intercept (where the sub-model's predictors are 0)."""
        return f"Intercept_{self.stan}"

    @property
    def size_key(self) -> str:
        return f"K_{self.stan}"

    @property
    def design_key(self) -> str:
        return f"X_{self.stan}"

    @property
    def means_key(self) -> str:
        return f"X_{self.stan}_means"

    @property
    def beta(self) -> str:
        return f"beta_{self.stan}"

    @property
    def slope_terms(self) -> tuple[Term, ...]:
        varying = {c.term.name for lv in self.levels for c in lv.coefficients if c.term is not None}
        return tuple(t for t in self.terms if t.name in varying)

    def inverse_link(self, expr: str) -> str:
        return f"exp({expr})" if self.link == "log" else f"inv_logit({expr})"

    def level_of(self, name: str) -> LevelDescription:
        return next(lv for lv in self.levels if lv.name == name)


@dataclass(frozen=True)
class ModelDescription:
    name: str
    family: Family
    outcome: str
    trials: str | None
    intercept: bool
    intercept_prior: PriorChoice | None
    # the family's auxiliary parameters (sigma, …) with their priors, in the family's order
    aux_priors: tuple[tuple[AuxParameter, PriorChoice], ...]
    terms: tuple[Term, ...]
    levels: tuple[LevelDescription, ...]
    categorical: frozenset[str]
    reference: tuple[tuple[str, str], ...]
    # optional generated quantities (structure: each choice is its own program), in GENERATED order
    generated: tuple[str, ...] = ()
    # the data columns the model uses, with the spec path naming each (Spec.columns); not in the program
    columns: tuple[tuple[str, str], ...] = ()
    # the level-1 errors' structure (None: independent, one sd)
    residuals: Residuals = INDEPENDENT  # the level-1 errors' structure
    # an ordinal family's categories, lowest first, as the spec's `order:` lists them (None: the integers seen)
    order: tuple | None = None
    # the likelihood summed by reduce_sum over slices of the rows, for threads within a chain (a second
    # program of the same model: sampler `threads_per_chain` > 1 on CmdStan; the slice size is data)
    threads: bool = False
    # linear predictors in place of some of the family's parameters (`parameters:`), in the family's order
    submodels: tuple[SubModel, ...] = ()
    # a column added to the linear predictor with coefficient 1 (`offset:`, lme4's offset()), else None
    offset: str | None = None
    # likelihood weights (`weights:`): each row's log density times its weight, else None
    weights: str | None = None
    # censored outcomes (`censoring:`, stangen/core/censoring.py), else None
    censoring: Censoring | None = None
    # a truncated outcome (`truncation:`, stangen/core/truncation.py), else None
    truncation: Truncation | None = None

    @property
    def has_eta(self) -> bool:
        """The program builds the linear predictor as a vector (group effects or an offset to add), rather
        than passing the pooled intercept to the likelihood as it is."""
        return bool(self.levels) or self.offset is not None

    @property
    def all_levels(self) -> tuple[LevelDescription, ...]:
        """The model's levels, then each sub-model's (the program declares, samples and reports each the same
        way; only the model's own enter its linear predictor)."""
        return self.levels + tuple(lv for sub in self.submodels for lv in sub.levels)

    def submodel(self, aux: AuxParameter) -> SubModel | None:
        return next((s for s in self.submodels if s.aux.name == aux.name), None)

    @property
    def scalar_aux(self) -> tuple[AuxParameter, ...]:
        """The family's parameters that are parameters of the program (one number each, or a vector), not
        computed from a sub-model."""
        return tuple(a for a in self.family.aux if self.submodel(a) is None)

    @property
    def pooled_terms(self) -> tuple[Term, ...]:
        """Terms in the design matrix X (the others enter through a centered level's slopes)."""
        return tuple(t for t in self.terms if not t.absorbed)

    @property
    def intercept_absorbed(self) -> bool:
        return any(c.mean_from_population and c.term is None for lv in self.levels for c in lv.coefficients)

    @property
    def at_mean_terms(self) -> tuple[Term, ...]:
        """Slope terms some level centers at their mean for sampling."""
        names = {c.term.name for lv in self.levels if lv.at_means for c in lv.coefficients if c.term is not None}
        return tuple(t for t in self.terms if t.name in names)

    @property
    def marginal_level(self) -> LevelDescription | None:
        """The level integrated out of a correlated-errors likelihood (LevelDescription.marginal), if any."""
        return next((lv for lv in self.levels if lv.marginal), None)

    @property
    def cross_products(self) -> bool:
        """The likelihood is written with the cross-products of the full design C (C'C, C'y and y'y, data made
        once) instead of a pass over the rows: each gradient then costs about the number of distinct
        (group, group, …) cells, not the number of rows (benchmarks/RESULTS.md, "The gaussian likelihood from
        cross-products"). For a family whose log density is a quadratic in the linear predictor (gaussian),
        with independent errors of one sd, in a multilevel model; not with threads (those slice the rows)."""
        return self.family.cross_products and self.residuals.is_default and bool(self.levels) and not self.threads \
            and not self.submodels and self.offset is None and self.weights is None and self.censoring is None \
            and self.truncation is None

    @property
    def design_blocks(self) -> tuple[DesignBlock, ...]:
        """C's blocks in column order: each level's varying coefficients (those a nested level does not take as
        its mean), then the pooled intercept unless a level took it, then X. The one order of the linear
        predictor's terms: codegen.eta_terms sums them in it too."""
        blocks = []
        for lv in self.levels:
            for c in lv.coefficients:
                if c.absorbed:
                    continue
                value = lv.value if lv.kind == "intercept" else f"{lv.value}[:, {c.column}]"
                blocks.append(DesignBlock(value, lv.groups_key, "groups", lv, c))
        if self.intercept and not self.intercept_absorbed:
            blocks.append(DesignBlock(self.intercept_param, "1", "ones"))
        if self.pooled_terms:
            blocks.append(DesignBlock("beta", "K", "X"))
        return tuple(blocks)

    @property
    def levels_in_order(self) -> tuple[LevelDescription, ...]:
        """Levels with every parent before its children (a centered child's mean uses its parent's value)."""
        return tuple(sorted(self.levels, key=lambda lv: len(lv.ancestors)))

    @property
    def all_levels_in_order(self) -> tuple[LevelDescription, ...]:
        """levels_in_order, then the sub-models' levels (top-level each)."""
        return self.levels_in_order + self.all_levels[len(self.levels):]

    @property
    def all_slope_terms(self) -> tuple[Term, ...]:
        """Terms whose values the program reads for varying slopes: the model's, then the sub-models'."""
        return self.slope_terms + tuple(t for sub in self.submodels for t in sub.slope_terms)

    @property
    def slope_terms(self) -> tuple[Term, ...]:
        """Terms that vary at some level (their raw values are passed as x_<term>)."""
        varying = {c.term.name for lv in self.levels for c in lv.coefficients if c.term is not None}
        return tuple(t for t in self.terms if t.name in varying)

    @property
    def spans_intercept(self) -> bool:
        """A population intercept, or what takes its place (an ordinal family's cutpoints), absorbs a constant
        shift: so predictors are centered for sampling, and a factor is coded against a reference category."""
        return self.intercept or self.family.ordinal

    @property
    def _centering_moves_location(self) -> bool:
        return bool(self.terms) or any(c.effects for lv in self.levels for c in lv.coefficients if c.name == INTERCEPT)

    @property
    def intercept_centered(self) -> bool:
        """The sampler's intercept is at the predictor means; the original-scale one is derived."""
        return self.intercept and self._centering_moves_location

    def aux_stan(self, aux: AuxParameter) -> str:
        """The sampler's name of an auxiliary parameter: <name>_centered for a location (cutpoints) sampled
        at the predictors' means, whose value at 0 generated quantities derive."""
        return f"{aux.name}_centered" if aux.moves_with_centering and self._centering_moves_location else aux.name

    @property
    def centered_aux(self) -> tuple[AuxParameter, ...]:
        """Auxiliary parameters sampled at the predictors' means (generated quantities derive them at 0)."""
        return tuple(a for a in self.family.aux if self.aux_stan(a) != a.name)

    def aux_exprs(self, index: str | None = None) -> "AuxExpressions":
        """Each auxiliary parameter's Stan expression in the model block and generated quantities: the
        residual sd of every observation or of observation `index` (sd_of), a location's centered name, a
        sub-model's vector of every observation (or its element `index`). `.at(rows)` gives them at the
        observations of an index array (a likelihood split as data)."""
        return AuxExpressions(self, index)

    @property
    def intercept_param(self) -> str:
        return "Intercept_centered" if self.intercept_centered else "Intercept"

    def level(self, name: str) -> LevelDescription:
        return next(lv for lv in self.levels if lv.name == name)

    def sd_of(self, index: str | None = None) -> str:
        """The Stan expression of the residual sd: of every observation (an N-vector with `residuals: sd_by`)
        or of observation `index`; plain `sigma` otherwise."""
        return self.residuals.sigma_expr if index is None else self.residuals.sd_of(index)


class AuxExpressions(dict):
    """ModelDescription.aux_exprs: parameter name → Stan expression, with `at(rows)` for the same at the
    observations `rows` (an index array's name)."""

    def __init__(self, desc: ModelDescription, index: str | None):
        self._desc = desc
        # the parameters with a value per observation from a sub-model (a GLM function may take only a number)
        self.per_row = frozenset(a.name for a in desc.family.aux if desc.submodel(a) is not None)
        super().__init__(self._exprs(index))

    def _exprs(self, index: str | None) -> dict[str, str]:
        d = self._desc
        out = {}
        for a in d.family.aux:
            if d.submodel(a) is not None:
                out[a.name] = a.name if index is None else f"{a.name}[{index}]"
            else:
                out[a.name] = d.residuals.aux_expr(a, index) or d.aux_stan(a)
        return out

    def at(self, rows: str) -> dict[str, str]:
        """The expressions at the observations `rows`: a per-observation one indexed by them."""
        return self._exprs(rows)


# Optional generated quantities: posterior (or, with prior_only, prior) predictive draws of the outcome,
# and the pointwise log-likelihood (for PSIS-LOO). Off by default: they cost an N-vector per draw.
GENERATED = ("y_rep", "log_lik")


def generated_quantities(generated: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalize a choice of generated quantities: 'y_rep,log_lik', or any iterable of names; canonical order,
    no repeats, so equal choices give equal programs. Raises SpecError on an unknown name."""
    if generated is None:
        return ()
    if isinstance(generated, str):
        generated = [g for g in (part.strip() for part in generated.split(",")) if g]
    chosen = set(generated)
    unknown = sorted(str(g) for g in chosen - set(GENERATED))
    if unknown:
        raise SpecError([Problem("generated", f"unknown generated quantity '{g}' (allowed: {', '.join(GENERATED)})")
                         for g in unknown])
    return tuple(g for g in GENERATED if g in chosen)


_DEFAULTS = {"coefficient": "normal", "scale": "exponential", "correlation": "lkj"}


def _prior(spec: Spec, keys: list[str], prior_class: str, default: str | None = None,
           priors: Mapping[str, str] | None = None, path: str = "priors") -> PriorChoice:
    """The prior of the first of `keys` the spec's `priors:` (or a sub-model's `priors`, at `path`) gives,
    else the default."""
    given = spec.priors if priors is None else priors
    for key in keys:
        if key in given:
            prior, _ = parse_prior(given[key], prior_class)
            return PriorChoice(prior.family, prior, f"{path}.{key}")
    return PriorChoice(default or _DEFAULTS[prior_class], None, "default")


def _submodels(spec: Spec, family: Family, categorical: frozenset[str], names: NameRegistry,
               level_names: NameRegistry, levels: list[LevelDescription],
               centered: Iterable[tuple[str, str]] = ()) -> tuple[SubModel, ...]:
    """The sub-models of `parameters:`, in the family's order of its parameters: each term and level with
    Stan names of its own (beta_<parameter>_<term>, sd_<parameter>_<level>, …). `centered`: the (parameter,
    level) pairs sampled centered (intercept-only levels; stangen.compiler.parameterization decides `auto`);
    the first of a sub-model's takes its intercept as its groups' mean. The others are noncentered."""
    centered = set(centered)
    out = []
    for aux in family.aux:
        sub = spec.parameters.get(aux.name)
        if sub is None:
            continue
        path = f"parameters.{aux.name}.priors"
        terms = []
        for term in sub.predictors:
            variables = tuple(term_variables(term))
            terms.append(Term(name=term, variables=variables, categorical=any(v in categorical for v in variables),
                              stan=names.claim(sanitize(f"{aux.name}_{term}")), owner=aux.name,
                              prior=_prior(spec, [term, "coefficients"], "coefficient", priors=sub.priors, path=path)))
        by_name = {t.name: t for t in terms}
        sub_levels = []
        for name, level in sub.levels.items():
            main = next(lv for lv in levels if lv.name == name)
            stan = level_names.claim(sanitize(f"{aux.name}_{main.stan}"))
            coefficients = tuple(
                VaryingCoefficient(coef, i, None if coef == INTERCEPT else by_name[coef], (),
                                   x=None if coef == INTERCEPT else by_name[coef].values_key)
                for i, coef in enumerate(level.coefficients, start=1))
            n = len(coefficients)
            kind: LevelKind = "intercept" if n == 1 and coefficients[0].name == INTERCEPT else (
                "correlated" if level.correlated and n > 1 else "independent")
            sub_levels.append(LevelDescription(
                centered=kind == "intercept" and (aux.name, name) in centered,
                name=name, stan=stan, id_column=main.id_column, parent=None, ancestors=(), owner=aux.name,
                unique_labels=main.unique_labels, coefficients=coefficients, predictors=(), kind=kind,
                sd_prior=_prior(spec, [f"sd_{name}", "sd"], "scale", priors=sub.priors, path=path),
                correlation_prior=_prior(spec, [f"correlation_{name}", "correlation"], "correlation",
                                         priors=sub.priors, path=path) if kind == "correlated" else None))
        out.append(SubModel(aux=aux, intercept_prior=_prior(spec, ["intercept"], "coefficient", priors=sub.priors,
                                                            path=path),
                            terms=tuple(terms), levels=tuple(sub_levels),
                            intercept_level=next((lv.name for lv in sub_levels if lv.centered), None)))
    return tuple(out)


def describe(spec: Spec, categorical: set[str] | frozenset[str] = frozenset(),
             generated: str | Iterable[str] | None = (),
             parameterization: Mapping[str, str] | None = None,
             pooled_order: Iterable[str] | None = None,
             nested: Mapping[str, str] | None = None,
             partial: Mapping[str, int] | None = None,
             sub_centered: Iterable[tuple[str, str]] = ()) -> ModelDescription:
    """Build the model description. `categorical`: columns the data showed to be non-numeric.
    `generated`: optional generated quantities, a subset of GENERATED ('y_rep', 'log_lik').
    `parameterization`: level → 'centered' | 'noncentered' | 'mixed' | 'integrated' for levels whose spec says `auto` (decided from
    the data by stangen.compiler.parameterization); a level missing there is noncentered.
    `pooled_order`: levels in the order they are offered the pooled coefficients as their groups' mean
    (see _link_levels); default: the spec's order, parents first.
    `partial`: level → how many of its first coefficients are centered, for levels whose parameterization is
    'partial' (decided from the data; a partial level missing there centers its first coefficient).
    `nested`: level → the level its groups lie within in the data, for levels the spec crosses (the same
    model, sampled as nested: see stangen.compiler.parameterization.implied_nesting).
    `sub_centered`: the (parameter, level) pairs of sub-models sampled centered (see _submodels)."""
    generated = generated_quantities(generated)
    family = get_family(spec.family)
    categorical = frozenset(categorical) | frozenset(spec.categorical)
    problems: list[Problem] = []
    names = NameRegistry()
    slopes_with_effects = {c for lv in spec.levels.values() for c in lv.coefficients
                           if c != INTERCEPT and lv.predictors_of(c)}
    terms = []
    for term in spec.predictors:
        variables = tuple(term_variables(term))
        terms.append(Term(
            name=term, variables=variables, categorical=any(v in categorical for v in variables),
            stan=names.claim(sanitize(term)), prior=_prior(spec, [term, "coefficients"], "coefficient"),
            centered_slope=term in slopes_with_effects))
    by_name = {t.name: t for t in terms}

    levels = []
    level_names = NameRegistry()
    # the level whose series of correlated gaussian errors its effects can be integrated out of (`integrated`)
    series_level = marginal_level_name(spec_series_level(spec.residuals),
                                       {n: lv.within for n, lv in spec.levels.items()})
    nested = dict(nested or {})
    parent_of = {name: nested.get(name, level.within) for name, level in spec.levels.items()}
    for name, level in spec.levels.items():
        stan = level_names.claim(sanitize(name))
        ancestors: list[str] = []
        parent = parent_of[name]
        while parent is not None and parent not in ancestors:
            ancestors.insert(0, parent)
            parent = parent_of[parent]
        predictors: dict[str, GroupPredictor] = {}
        stems: dict[str, str] = {}  # group-level predictor → the stem of its Stan names, unique in the level
        predictor_names = NameRegistry()
        for coef in level.coefficients:
            for pname in level.predictors_of(coef):
                if pname not in predictors:
                    stems[pname] = predictor_names.claim(sanitize(pname))
                    predictors[pname] = _group_predictor(pname, pname, False, stan, stems[pname], categorical)
        for var in level.means:
            pname = f"mean_{var}"
            if var in categorical:
                problems.append(Problem(f"levels.{name}.means", f"'{var}' is categorical; a group mean needs a numeric column"))
            if pname not in predictors:
                stems[pname] = predictor_names.claim(sanitize(pname))
                predictors[pname] = _group_predictor(pname, var, True, stan, stems[pname], categorical)
        coefficients = []
        for i, coef in enumerate(level.coefficients, start=1):
            term = None if coef == INTERCEPT else by_name[coef]
            if term is not None and term.categorical:
                problems.append(Problem(
                    f"levels.{name}.varying", f"'{coef}' is categorical; varying slopes of categorical predictors "
                    "are not supported yet (vary a numeric 0/1 indicator column instead)"))
            pnames = list(level.predictors_of(coef)) + ([f"mean_{v}" for v in level.means] if coef == INTERCEPT else [])
            coef_stan = "intercept" if term is None else term.stan
            effects = tuple(GroupEffect(
                predictor=predictors[p], name=f"gamma_{stan}_{coef_stan}_{stems[p]}",
                prior=_prior(spec, [p, "coefficients"], "coefficient")) for p in pnames)
            coefficients.append(VaryingCoefficient(coef, i, term, effects))
        n = len(coefficients)
        kind: LevelKind = "intercept" if n == 1 and coefficients[0].name == INTERCEPT else (
            "correlated" if level.correlated and n > 1 else "independent")
        choice = level.parameterization
        if choice == "auto":  # undecided yet: noncentered, or centered under a level the spec integrates out
            under_integrated = parent_of[name] in spec.levels and \
                spec.levels[parent_of[name]].parameterization == "integrated"
            choice = (parameterization or {}).get(name, "centered" if under_integrated else "noncentered")
        marginal = choice == "integrated" and name == series_level  # the integrated level of correlated errors
        levels.append(LevelDescription(
            name=name, stan=stan, id_column=level.id or name, parent=parent_of[name], ancestors=tuple(ancestors),
            unique_labels=level.unique_labels or name in nested, coefficients=tuple(coefficients),
            predictors=tuple(predictors.values()), kind=kind,
            sd_prior=_prior(spec, [f"sd_{name}", "sd"], "scale"),
            correlation_prior=_prior(spec, [f"correlation_{name}", "correlation"], "correlation")
            if kind == "correlated" else None,
            centered=choice in CENTERED_FORMS or marginal, integrated=choice == "integrated" and not marginal,
            marginal=marginal,
            mixed=choice == "mixed", centered_coefficients=(partial or {}).get(name, 1) if choice == "partial" else 0,
            at_means=_at_means(kind, coefficients)))
    levels = _parents_first(levels)
    for lv in levels:  # stangen.compiler.parameterization and the spec validation only integrate such a level out
        child = integrable_child(lv, levels)
        if lv.integrated and (child is None or not child.centered):
            raise ValueError(f"level {lv.name} cannot be integrated out (stangen bug)")
    if not problems:
        terms, levels = _link_levels(spec, terms, levels, list(pooled_order or ()))
    if not spec.intercept and not terms and not levels:
        problems.append(Problem("", "the model has no intercept, no predictors and no levels: nothing to estimate"))
    if problems:
        raise SpecError(problems)
    submodels = _submodels(spec, family, categorical, names, level_names, levels, sub_centered)
    return ModelDescription(
        name=sanitize(spec.name or "model"), family=family, outcome=spec.outcome, trials=spec.trials,
        intercept=spec.intercept,
        intercept_prior=_prior(spec, ["intercept"], "coefficient") if spec.intercept else None,
        aux_priors=tuple((aux, _prior(spec, [aux.name], aux.prior_class, aux.default_prior[0] if aux.default_prior
                                      else None)) for aux in family.aux if aux.name not in spec.parameters),
        terms=tuple(terms), levels=tuple(levels), categorical=categorical,
        reference=tuple(sorted(spec.reference.items())), generated=generated, columns=tuple(spec.columns.items()),
        residuals=Residuals.from_spec(spec.residuals), order=tuple(spec.order) if spec.order else None,
        submodels=submodels, offset=spec.offset, weights=spec.weights,
        censoring=Censoring.from_spec(spec.censoring), truncation=Truncation.from_spec(spec.truncation))


def _parents_first(levels: list[LevelDescription]) -> list[LevelDescription]:
    """The levels in the spec's order, except that a nested level comes after its parent (the program
    declares a parent's size before a child's index into it): each step takes the first level whose parent
    is placed, so an order that already has parents first is kept as it is."""
    out: list[LevelDescription] = []
    pending = list(levels)
    while pending:
        placed = {lv.name for lv in out}
        lv = next(lv for lv in pending if lv.parent is None or lv.parent in placed)
        out.append(lv)
        pending.remove(lv)
    return out


def integrable_child(level: LevelDescription, levels) -> LevelDescription | None:
    """The one nested level that could carry `level`'s effects if they were integrated out (it must also be
    centered), or None: `level` is top-level, varies only its intercept, has no group-level predictors, and
    exactly one level sits below it, directly, varying only its intercept. (The spec's `integrated` is
    checked against the same structure in stangen.spec.validate, on the raw spec.)"""
    below = [o for o in levels if level.name in o.ancestors]
    if level.parent is not None or level.kind != "intercept" or level.has_effects or len(below) != 1:
        return None
    child = below[0]
    return child if child.parent == level.name and child.kind == "intercept" else None


def _at_means(kind: LevelKind, coefficients: list[VaryingCoefficient]) -> bool:
    """Sample a correlated intercept and slopes at the slope predictors' means? Only when that is a mere
    reparameterization: every group-level predictor of a slope also predicts the intercept (otherwise
    moving the intercept to the mean would change which intercepts the predictor explains). Independent
    levels are left alone: independence at the mean is not independence at 0."""
    if kind != "correlated" or coefficients[0].name != INTERCEPT:
        return False
    on_intercept = {e.predictor.name for e in coefficients[0].effects}
    slopes = [c for c in coefficients[1:] if c.term is not None and not c.term.categorical]
    return bool(slopes) and len(slopes) == len(coefficients) - 1 and all(
        {e.predictor.name for e in c.effects} <= on_intercept for c in slopes)


def _link_levels(spec: Spec, terms: list[Term], levels: list[LevelDescription], pooled_order: list[str]):
    """Decide what each centered level's group means include, and so what the linear predictor adds.

    A centered level's groups are drawn around their predicted coefficients: the pooled coefficient (the
    first centered level, parents first, takes it) or, nested, the parent group's coefficient; plus the
    group-level predictors. What a level takes as its mean is no longer added to the linear predictor
    separately. Slopes are taken only between levels that multiply the same values (both at the mean or
    both raw), and a pooled slope only by a level that centers its predictor like X does.

    Which centered level takes a pooled coefficient matters for crossed levels: the others are drawn around
    0, and the sampler then moves the pooled coefficient against their mean. That ridge is mild when the
    taker is the level whose group mean is least certain (largest τ²/J), so `pooled_order` (from
    stangen.compiler.parameterization) puts that level first."""
    from dataclasses import replace
    by_name = {lv.name: lv for lv in levels}
    absorbed: dict[str, set[str]] = {lv.name: set() for lv in levels}  # level → its coefficients taken by a child
    rank = {name: i for i, name in enumerate(pooled_order)}
    takers: dict[str, str] = {}  # coefficient name → the level whose groups' mean includes its pooled value

    def offered(lv: LevelDescription) -> tuple[int, int]:
        """Parents first; a level under an integrated parent stands in its parent's place (it carries the
        parent's effects: InstEval's lecturers under their integrated departments take the intercept, not
        the crossed students, or the intercept trades off against the department sd)."""
        stand_in = by_name[lv.parent] if lv.parent and by_name[lv.parent].integrated else lv
        return len(stand_in.ancestors), rank.get(stand_in.name, len(rank))

    for lv in sorted(levels, key=offered):
        for c in lv.coefficients:
            if lv.centered and spec.intercept and c.name not in takers and (c.term is None or lv.at_means):
                takers[c.name] = lv.name
    linked: dict[str, LevelDescription] = {}
    for lv in sorted(levels, key=lambda lv: len(lv.ancestors)):
        parent = by_name.get(lv.parent) if lv.parent else None
        coefficients = []
        for c in lv.coefficients:
            x = None if c.term is None else (f"x_{c.term.stan}_at_mean" if lv.at_means else f"x_{c.term.stan}")
            parent_column = None
            if lv.centered and parent is not None and parent.integrated:
                absorbed[parent.name].add(c.name)  # it enters through this level's joint density, not eta
            elif lv.centered:
                pc = next((p for p in parent.coefficients if p.name == c.name), None) if parent else None
                if pc is not None and (c.term is None or parent.at_means == lv.at_means) \
                        and c.name not in absorbed[parent.name]:
                    parent_column = pc.column
                    absorbed[parent.name].add(c.name)
            coefficients.append(replace(c, x=x, mean_from_population=takers.get(c.name) == lv.name,
                                        parent_column=parent_column,
                                        effects=tuple(replace(e, at_mean=lv.at_means and c.term is None and any(
                                            o.predictor.name == e.predictor.name
                                            for s in lv.coefficients[1:] for o in s.effects)) for e in c.effects)))
        linked[lv.name] = replace(lv, coefficients=tuple(coefficients), parent_stan=parent.stan if parent else None,
                                  parent_value=linked[parent.name].value if parent else None,
                                  parent_is_vector=parent is not None and parent.kind == "intercept",
                                  parent_integrated=parent is not None and parent.integrated)
    out = []
    for lv in levels:
        lv = linked[lv.name]
        out.append(replace(lv, coefficients=tuple(replace(c, absorbed=c.name in absorbed[lv.name])
                                                  for c in lv.coefficients)))
    terms = [replace(t, absorbed=t.name in takers) for t in terms]
    return terms, out


def _group_predictor(name: str, column: str, is_mean: bool, level_stan: str, stem: str,
                     categorical) -> GroupPredictor:
    return GroupPredictor(name=name, column=column, is_mean=is_mean,
                          categorical=(not is_mean) and column in categorical,
                          data=f"W_{level_stan}_{stem}")


@dataclass(frozen=True)
class PriorTarget:
    """One prior statement: `<param> ~ family(prior_<key>_<arg>, ...)`."""

    key: str  # stem of its data names: prior_<key>_<arg>
    param: str  # the Stan parameter it applies to
    choice: PriorChoice
    role: str  # intercept | term | aux | sd | correlation | effect
    level: LevelDescription | None = None
    coefficient: VaryingCoefficient | None = None
    term: Term | None = None
    effect: GroupEffect | None = None
    aux: AuxParameter | None = None
    vector: bool = False  # its numbers are vectors (one per element of the parameter)
    submodel: SubModel | None = None  # a sub-model's intercept, coefficient, sd or correlation

    def data_name(self, arg: str) -> str:
        return f"prior_{self.key}_{arg}"


def prior_targets(desc: ModelDescription) -> list[PriorTarget]:
    """Every prior in the program, in program order. Codegen writes them; data.py fills their numbers."""
    out: list[PriorTarget] = []
    if desc.intercept:
        out.append(PriorTarget("Intercept", desc.intercept_param, desc.intercept_prior, "intercept"))
    for term in desc.terms:
        out.append(PriorTarget(f"beta_{term.stan}", term.param, term.prior, "term", term=term,
                               vector=term.categorical))
    for level in desc.levels:
        for coef in level.coefficients:
            for effect in coef.effects:
                out.append(PriorTarget(effect.name, effect.param, effect.prior, "effect", level=level,
                                       coefficient=coef, effect=effect, vector=effect.predictor.categorical))
    for aux, choice in desc.aux_priors:
        out.append(PriorTarget(aux.name, desc.aux_stan(aux), choice, "aux", aux=aux, vector=bool(aux.size)))
    for level in desc.levels:
        out.append(PriorTarget(f"sd_{level.stan}", level.sd, level.sd_prior, "sd", level=level,
                               vector=level.n_coef > 1))
        if level.correlation_prior is not None:
            out.append(PriorTarget(f"L_{level.stan}", level.L, level.correlation_prior, "correlation",
                                   level=level))
    for sub in desc.submodels:
        out.append(PriorTarget(sub.intercept_name, sub.intercept_param, sub.intercept_prior, "intercept",
                               submodel=sub))
        for term in sub.terms:
            out.append(PriorTarget(f"beta_{term.stan}", term.param, term.prior, "term", term=term,
                                   vector=term.categorical, submodel=sub))
        for level in sub.levels:
            out.append(PriorTarget(f"sd_{level.stan}", level.sd, level.sd_prior, "sd", level=level,
                                   vector=level.n_coef > 1, submodel=sub))
            if level.correlation_prior is not None:
                out.append(PriorTarget(f"L_{level.stan}", level.L, level.correlation_prior, "correlation",
                                       level=level, submodel=sub))
    return out
