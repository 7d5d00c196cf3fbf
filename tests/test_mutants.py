"""The mutation self-test's fast subset (tests/mutant_list.py: FAST): each mutant, applied to a
copy of the tree, is killed by its tests. The whole list: `python -m tests.mutants`."""

from __future__ import annotations

import pytest
from mutant_list import FAST, MUTANTS
from mutants import apply, run_mutant, tree_files

BY_NAME = {m.name: m for m in MUTANTS}


def test_mutant_list_is_well_formed():
    """Unique names, at least 30 mutants, every old text found exactly once in this tree, and
    every equivalent one explained (not run)."""
    assert len(BY_NAME) == len(MUTANTS) >= 30
    for m in MUTANTS:
        assert m.old != m.new, m.name
        assert (m.equivalent != "") == (m.tests == ()), m.name
    assert set(FAST) <= set(BY_NAME)


def test_an_edit_that_is_not_found_exactly_once_is_an_error(tmp_path):
    """A stale mutant (its old text gone after a refactor) must never pass silently."""
    m = MUTANTS[0]
    (tmp_path / m.file).parent.mkdir(parents=True)
    (tmp_path / m.file).write_text("nothing to mutate here\n")
    with pytest.raises(ValueError, match="found 0 times"):
        apply(m, tmp_path)
    (tmp_path / m.file).write_text(m.old + "\n" + m.old)
    with pytest.raises(ValueError, match="found 2 times"):
        apply(m, tmp_path)


@pytest.mark.slow  # ~5 s per mutant: a copy of the tree and a pytest run each
@pytest.mark.parametrize("name", FAST)
def test_fast_mutants_are_killed(name):
    outcome = run_mutant(BY_NAME[name], tree_files())
    assert outcome.status == "killed", outcome
