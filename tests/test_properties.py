"""Property-based tests (Hypothesis) of what reads the user's input (issue 25): the formula reader, the spec
loader (YAML text and parsed mappings), the CSV reader, and a spec checked against data. Whatever the input,
the answer is a result or a user error (SpecError, DataError: exit 1 with the place named), never another
exception. The number of examples is bounded so the suite stays a few seconds long; in CI (CI set) the
examples are the same on every run."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stangen import Spec, StangenError
from stangen.compiler.program import build
from stangen.core.frames import read_csv
from stangen.spec.formula import ParsedFormula, parse

BOUNDED = settings(max_examples=int(os.environ.get("STANGEN_PROPERTY_EXAMPLES", "150")), deadline=None,
                   database=None, derandomize=bool(os.environ.get("CI")),
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# -- formulas ---------------------------------------------------------------------------------------------------

FORMULA_PIECES = ["y", "x", "z", "g", "h", "~", " ~ ", "+", " + ", "-", "*", ":", "/", "|", "||", "(", ")", "1", "0",
                  "(1 | g)", "(x || g)", "factor(", "relevel(", "ave(", "cbind(", "I(", "offset(", ", ", '"b"', "`a b`",
                  "^2", "%in%", ".", "\n", "#", "=", "!", "{", "[", "\\", "é", "\x00"]


@BOUNDED
@given(st.lists(st.sampled_from(FORMULA_PIECES), max_size=14).map("".join) | st.text(max_size=80))
@example("y(1 | g)~y")  # found by this test: formulae's call resolver raised its own error
@example("y ~ 1(x)")    # and here an AttributeError
def test_any_formula_text_is_read_or_refused_with_a_spec_error(text):
    try:
        assert isinstance(parse(text), ParsedFormula)
    except StangenError:
        pass


# -- specs: YAML text, and mappings ----------------------------------------------------------------------------

YAML_PIECES = ["outcome: y\n", "predictors: [x, z]\n", "levels:\n", "  g:\n", "    varying: [intercept, x]\n",
               "    within: h\n", "    predictors: [w]\n", "family: poisson\n", "priors: {sd: exponential(1)}\n",
               "sampler: {adapt_delta: .nan}\n", "formula: y ~ x + (1 | g)\n", "&a [1, 2]\n", "*a\n", "- ", ": ",
               "{", "}", "[", "]", "'", '"', "!!python/object:os.system\n", "key: &k {x: *k}\n", "\t", "%YAML 1.1\n",
               "---\n", "...\n", "? ", "|\n  text\n", "data: ../../etc/passwd\n", "name: /abs/path\n", "levels: []\n"]


@BOUNDED
@given(st.lists(st.sampled_from(YAML_PIECES), max_size=10).map("".join) | st.text(max_size=200))
def test_any_spec_file_is_read_or_refused_with_a_spec_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("spec") / "model.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        assert isinstance(Spec.from_yaml(path), Spec)
    except StangenError:
        pass


NAMES = st.sampled_from(["y", "x", "z", "g", "h", "w", "count", "intercept", "nope", "", "a b", "x:z", "1", "y.1"])
NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, -1, 0.5, 1e300, 2**63]))
SCALARS = st.one_of(NAMES, NUMBERS, st.booleans(), st.none(), st.text(max_size=8))
ANY = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
                   max_leaves=8)


def mostly(valid):
    """Mostly what a spec means (so that many examples get as far as the data), now and then anything."""
    return st.integers(0, 11).flatmap(lambda k: ANY if k == 0 else valid)


PREDICTORS = st.lists(st.sampled_from(["x", "z", "w", "count", "x:z", "nope"]), max_size=3, unique=True)
LEVEL = st.fixed_dictionaries({}, optional={
    "varying": mostly(st.lists(st.sampled_from(["intercept", "x", "z", "nope"]), max_size=2, unique=True)),
    "predictors": mostly(st.lists(st.sampled_from(["w", "x", "nope"]), max_size=1)),
    "within": mostly(st.sampled_from(["g", "h"])), "id": NAMES})
SPEC_MAPPING = st.fixed_dictionaries({"outcome": mostly(st.sampled_from(["y", "count", "x", "z", "nope"]))}, optional={
    "predictors": mostly(PREDICTORS),
    "levels": mostly(st.dictionaries(st.sampled_from(["g", "h", "nope"]), LEVEL, max_size=2)),
    "family": mostly(st.sampled_from(["gaussian", "poisson", "binomial", "bernoulli", "negbinomial", "cumulative",
                                      "student", "gamma", "lognormal", "beta", "gausian"])),
    "categorical": mostly(st.lists(st.sampled_from(["z", "count", "g"]), max_size=1)),
    "priors": mostly(st.dictionaries(st.sampled_from(["sd", "sigma", "b", "Intercept", "cor", "x", "nope"]),
                                     st.sampled_from(["normal(0, 1)", "exponential(1)", "student_t(3, 0, 2.5)",
                                                      "lkj(2)", "normal(0, -1)", "normal(", "flat", "cauchy(0,inf)"]),
                                     max_size=2)),
    "sampler": mostly(st.dictionaries(st.sampled_from(["chains", "draws", "warmup", "adapt_delta", "init", "seed",
                                                       "max_treedepth", "parallel_chains", "threads_per_chain"]),
                                      NUMBERS, max_size=2)),
    "missing": mostly(st.sampled_from(["error", "drop", "maybe"]))})
# keys that only some specs take: now and then one of them, with anything as its value
RARE_KEYS = st.dictionaries(st.sampled_from(["residuals", "order", "name", "formula", "trials"]), ANY, max_size=1)
SPEC_MAPPING = st.builds(lambda keys, rare, junk: {**keys, **(rare if junk else {})}, SPEC_MAPPING, RARE_KEYS,
                         st.integers(0, 4).map(lambda k: k == 0))


def school_frame(seed: int, spoil: list[tuple[int, str, object]]) -> pd.DataFrame:
    """Pupils in schools (g) in districts (h), with values a careless file may hold dropped in."""
    rng = np.random.default_rng(seed)
    n = 48
    frame = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "z": rng.choice(list("abc"), size=n),
                          "g": np.repeat([f"s{k}" for k in range(8)], n // 8), "h": np.repeat(list("PQ"), n // 2),
                          "w": np.repeat(rng.normal(size=8), n // 8), "count": rng.poisson(3, size=n)})
    for row, column, value in spoil:
        frame[column] = frame[column].astype(object)
        frame.loc[row % n, column] = value
    return frame


SPOIL = st.lists(st.tuples(st.integers(0, 47), st.sampled_from(["y", "x", "z", "g", "h", "w", "count"]),
                           st.sampled_from([np.nan, np.inf, -np.inf, 1e308, "", "n/a", "3", -1, 0, 2.5, None, True])),
                 max_size=3)


@BOUNDED
@given(SPEC_MAPPING, st.integers(0, 3), SPOIL)
def test_any_spec_mapping_against_data_is_built_or_refused_with_a_user_error(raw, seed, spoil):
    frame = school_frame(seed, spoil)
    try:
        spec = Spec.from_dict(raw)
    except StangenError:
        return
    try:
        program = build(spec, frame)
    except StangenError:
        return
    assert program.code.startswith("//") or "model {" in program.code
    data = program.stan_data
    assert all(np.isfinite(np.asarray(v, dtype=float)).all() for v in data.values()
               if isinstance(v, (int, float, np.ndarray, list)) and np.asarray(v).dtype.kind in "fiub")


# -- CSV files -------------------------------------------------------------------------------------------------

CSV_PIECES = ["y,x,g\n", "1,2,a\n", "1.5,,b\n", "inf,-inf,nan\n", '"a,b",1\n', ";", "\t", ",", "\n", "\r\n",
              "\ufeff", "é", "\x00", '"', "1e400", "NA", "#comment\n", "y,y,y\n"]


@BOUNDED
@given(st.one_of(st.binary(max_size=300),
                 st.lists(st.sampled_from(CSV_PIECES), max_size=20).map(lambda p: "".join(p).encode("utf-8")),
                 st.text(max_size=200).map(lambda t: t.encode("utf-8", errors="surrogatepass"))))
def test_any_csv_file_is_read_or_refused_with_a_data_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("csv") / "data.csv"
    path.write_bytes(content)
    try:
        assert isinstance(read_csv(path), pd.DataFrame)
    except StangenError:
        pass


def test_the_properties_would_see_a_failure():
    """The pattern above lets only user errors through: any other exception fails the test."""
    @settings(max_examples=5, database=None)
    @given(st.just("boom"))
    def raising(text):
        try:
            raise ValueError(text)
        except StangenError:
            pass
    with pytest.raises(ValueError):
        raising()
