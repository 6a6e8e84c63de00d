"""The mutation suite: the explorer must catch at least mutate.REQUIRED of the deliberately wrong
runbooks and decisions in tests/mutants/*.yaml, and every survivor must be named as equivalent
or as a known hole of the explorer.
The score is printed at the end of the pytest run (conftest's terminal summary)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mutate  # noqa: E402

pytestmark = pytest.mark.mutants
SCORE_LINES: list[str] = []


def test_every_mutant_still_applies_to_the_code() -> None:
    mutants = mutate.load_mutants()
    assert len(mutants) >= 30, f"only {len(mutants)} mutants"
    assert len({m.runbook for m in mutants}) >= 9, sorted({m.runbook for m in mutants})
    for mutant in mutants:
        with tempfile.TemporaryDirectory() as tmp:
            mutate.copy_tree(Path(tmp))
            mutate.apply(mutant, Path(tmp))  # raises MutantError when its text moved


@pytest.mark.timeout(2400)  # 62 mutants, two at a time: about 8 minutes here, the survivors the longest
def test_the_explorer_kills_the_required_share_of_the_mutants() -> None:
    outcomes = list(mutate.run_all(mutate.load_mutants()))
    SCORE_LINES[:] = [o.line() for o in outcomes] + [mutate.summary(outcomes)]
    report = "\n".join(SCORE_LINES)
    assert not [o for o in outcomes if o.error], report
    assert mutate.score(outcomes)[2] >= mutate.REQUIRED, report
    # A survivor is named: equivalent (no run can tell it from the shipped code) or a known hole.
    assert not [o for o in outcomes if not o.killed and not (o.mutant.equivalent or o.mutant.open)], report
    assert not [o for o in outcomes if o.killed and (o.mutant.equivalent or o.mutant.open)], \
        "said to survive, yet killed (remove its equivalent:/open:):\n" + report
