"""The way back (stangen.compiler.peers, `stangen render --as lme4|brms`): each example spec's model as R code for lme4
(or its family's peer) and brms. (The code was run once in R 4.2 with lme4, ordinal and brms 2.18 for cbpp,
sleepstudy, language, soup and pastes: every call fitted, and brms accepted every prior line; R is never
called here.)"""
from __future__ import annotations

import re

import pytest

from stangen.cli import main
from stangen.compiler.peers import brms_code, formula, lme4_code, submodel_formula
from stangen.compiler.program import build

from conftest import SPECS

SPEC_FILES = sorted(SPECS.glob("*.yaml"))


@pytest.mark.parametrize("spec_file", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_every_example_as_lme4_and_brms(spec_file, capsys):
    program = build(spec_file)
    lme4 = lme4_code(program)
    rhs = formula(program.description, code=True).partition(" ~ ")[2]
    assert rhs in lme4 or "has no" in lme4
    brms = brms_code(program)
    subs = "".join(f", {sub.stan} {submodel_formula(program.description, sub, code=True)}"
                   for sub in program.description.submodels)
    assert f"~ {rhs}{subs}), data = d, family = {program.description.family.brms}" in brms
    # at least one prior line per prior of the program (a vector's elements each, unless all equal)
    assert brms.count("prior(") >= len(program.data.priors)
    for var in program.data.categories:
        assert f'd${var} <- relevel(factor(d${var}), ref = "{program.data.categories[var][0]}")' in brms
    assert main(["render", "--as", "brms", str(spec_file)]) == 0
    assert "brms::brm(" in capsys.readouterr().out


def test_formulas_name_the_data_columns():
    assert "(1 | batch) + (1 | batch:cask)" in lme4_code(build(SPECS / "pastes.yaml"))
    assert "ave(iq_verb, school)" in lme4_code(build(SPECS / "language.yaml"))
    soup = lme4_code(build(SPECS / "soup.yaml"))
    assert "ordinal::clmm(factor(SURENESS, ordered = TRUE) ~ PROD + GENDER + (1 | RESP)" in soup
    assert "lme4::glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = d, family = binomial)" \
        in lme4_code(build(SPECS / "cbpp.yaml"))
    assert "lme4 has no student family" in lme4_code(build(SPECS / "sleepstudy_student.yaml"))
    assert "a formula cannot say this" in lme4_code(build(SPECS / "blackmore_car1.yaml"))


def test_brms_priors_are_the_programs():
    brms = brms_code(build(SPECS / "soup.yaml"))
    assert "prior(student_t(3, 0, 2.5), class = Intercept)" in brms  # the cutpoints
    assert re.search(r'prior\(normal\(0, [0-9.]+\), class = b, coef = "PRODTest"\)', brms)
    assert "class = sd, group = RESP, coef = Intercept" in brms
    assert "class = shape" in brms_code(build(SPECS / "epilepsy.yaml"))  # NB2's phi is brms's shape
