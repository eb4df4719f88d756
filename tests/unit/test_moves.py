"""The declared moves of orchestrator/transitions.py against the state table of orchestrator/states.py."""

from __future__ import annotations

import pytest

from orchestrator.states import ACTIONS, JobStatus, can_move
from orchestrator.transitions import ACT, MIRROR, MOVES, Lost, Move


@pytest.mark.parametrize("move", [m for m in MOVES if m not in (ACT, MIRROR)], ids=lambda m: m.name)
def test_every_step_a_named_move_may_take_is_one_the_table_allows(move: Move) -> None:
    for source in move.sources:
        for target in move.targets:
            assert can_move(source, target), f"{move.name}: {source} -> {target}"
    if move.via is not None:
        start, through = move.via
        assert can_move(start, through) and through in move.sources


def test_every_action_of_a_person_is_an_act_move() -> None:
    for sources, target in ACTIONS.values():
        assert sources <= ACT.sources and target in ACT.targets


def test_moves_have_one_name_each_and_only_finish_keeps_columns() -> None:
    assert len({m.name for m in MOVES}) == len(MOVES)
    assert [m.name for m in MOVES if m.lost is Lost.KEEP or m.keeps] == ["finish"]


def test_a_run_of_an_other_tool_is_mirrored_from_and_to_any_status() -> None:
    assert MIRROR.sources == MIRROR.targets == frozenset(JobStatus) and not MIRROR.checked
