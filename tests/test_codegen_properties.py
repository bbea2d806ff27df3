"""Property: every valid spec renders a program that Stan's compiler front end accepts."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stangen import Level, Spec
from stangen.compiler.codegen import render
from stangen.core.families import get_family
from stangen.compiler.model import describe
from stangen.run.stanc import check

PRIORS = {"coefficients": ["normal(0, 1)", "student_t(3, 0, 2)", "cauchy(0, 1)"],
          "sd": ["exponential(1)", "normal(0, 2)", "student_t(4, 0, 1)"],
          "sigma": ["exponential(2)", "cauchy(0, 5)"], "correlation": ["lkj(1)", "lkj(4)"]}


@st.composite
def specs(draw):
    numeric = draw(st.lists(st.sampled_from(["x1", "x2", "x 3", "2x"]), unique=True, max_size=3))
    categorical = draw(st.lists(st.sampled_from(["sex", "region"]), unique=True, max_size=2))
    terms = numeric + categorical
    if len(terms) >= 2 and draw(st.booleans()):
        terms.append(f"{terms[0]}:{terms[1]}")
    family = draw(st.sampled_from(["gaussian", "bernoulli", "binomial", "poisson"]))
    intercept = draw(st.booleans())
    names = draw(st.lists(st.sampled_from(["school", "class", "state", "county", "year"]), unique=True,
                          max_size=3))
    levels = {}
    slope_candidates = [t for t in terms if not any(v in categorical for v in t.split(":"))]
    for k, name in enumerate(names):
        within = names[k - 1] if k and draw(st.booleans()) else None
        coefs = (["intercept"] if draw(st.booleans()) or not slope_candidates else []) + draw(
            st.lists(st.sampled_from(slope_candidates), unique=True, max_size=2)) if slope_candidates else ["intercept"]
        coefs = coefs or ["intercept"]
        varying = {c: draw(st.lists(st.sampled_from(["w_num", "w_cat"]), unique=True, max_size=2)) for c in coefs}
        means = draw(st.lists(st.sampled_from(numeric), unique=True, max_size=1)) if numeric and \
            "intercept" in coefs else []
        levels[name] = Level(within=within, varying=varying, means=means, correlated=draw(st.booleans()),
                               parameterization=draw(st.sampled_from(["centered", "noncentered"])))
    if not intercept and not terms and not levels:
        intercept = True
    aux = {a.name for a in get_family(family).aux}  # a family's own parameters only (sigma: gaussian)
    priors = {k: draw(st.sampled_from(v)) for k, v in PRIORS.items()
              if (k not in ("sigma",) or k in aux) and draw(st.booleans())}
    spec = Spec(outcome="y", family=family, trials="n" if family == "binomial" else None, predictors=terms,
                categorical=categorical + (["w_cat"] if any("w_cat" in p for lv in levels.values()
                                                            for p in lv.varying.values()) else []),
                intercept=intercept, levels=levels, priors=priors, name="random")
    return spec


@pytest.mark.stanc
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_random_valid_specs_render_and_pass_stanc(spec):
    program = render(describe(spec, set(spec.categorical)))
    check(program)
    assert render(describe(spec, set(spec.categorical))) == program  # deterministic
