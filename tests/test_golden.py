"""Every spec in specs/ renders to its pinned program (tests/golden/) and passes Stan's compiler front end.

After a deliberate change to the generated code, read the diff, then refresh the pins with
    python -m pytest tests/test_golden.py --update-golden     (or STANGEN_UPDATE_GOLDEN=1)
"""
import os

import pytest

from stangen.compiler.program import build
from stangen.run.stanc import check

from conftest import GOLDEN, SPECS

SPEC_FILES = sorted(SPECS.glob("*.yaml"))


@pytest.mark.parametrize("spec_file", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_program_matches_golden_file(spec_file):
    program = build(spec_file)
    golden = GOLDEN / f"{spec_file.stem}.stan"
    update = os.environ.get("STANGEN_UPDATE_GOLDEN") == "1"
    if update or not golden.exists():
        golden.write_text(program.code)
        if not update:
            pytest.fail(f"no golden file for {spec_file.stem}: wrote {golden}; read it, then rerun")
    assert program.code == golden.read_text(), f"{spec_file.stem}: program differs from {golden}"


@pytest.mark.stanc
@pytest.mark.parametrize("spec_file", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_program_passes_stanc(spec_file):
    check(build(spec_file).code)


def test_every_required_example_has_a_spec():
    names = {p.stem for p in SPEC_FILES}
    assert {"sleepstudy", "penicillin", "pastes", "cbpp", "language", "exam", "turnout"} <= names


def test_stanc_rejects_a_broken_program():
    """The stanc check is not a no-op."""
    with pytest.raises(ValueError, match="(?i)syntax|error"):
        check("parameters { real x } model { x ~ normal(0, 1); }")
