"""The fault-injection harness's planner (tests/support/chaos/plan.py): a trial's plan
is a pure function of (session seed, index, lead kind), every kind leads once per
round of the deck, and a session narrowed with --kinds draws nothing else."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from tests.support.chaos import KINDS, lead_deck, plan_trial
from tests.support.chaos.plan import PHASES, SCENARIOS


def test_a_trial_plan_is_a_pure_function_of_seed_index_and_lead() -> None:
    # Given the same arguments twice
    a = plan_trial(42, 3, "master_kill_map", rows=(2000, 6000))
    b = plan_trial(42, 3, "master_kill_map", rows=(2000, 6000))
    # Then the plans are equal, and the replay command names them
    assert asdict(a) == asdict(b)
    assert a.replay() == "python -m tests.support.chaos --seed 42 --trial 3 --lead master_kill_map"
    assert "master_kill_map" in {f.kind for f in a.faults}


def test_an_unknown_lead_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        plan_trial(42, 0, "meteor_strike", rows=(2000, 6000))


def test_every_kind_leads_once_per_round_of_the_deck() -> None:
    deck = lead_deck(7, len(KINDS) * 2)
    assert sorted(deck[: len(KINDS)]) == sorted(KINDS)
    assert sorted(deck[len(KINDS) :]) == sorted(KINDS)


@pytest.mark.parametrize("seed", range(20))
def test_a_narrowed_session_plans_only_its_kinds(seed: int) -> None:
    kinds = ("restart_mariadb", "master_kill_map", "worker_kill")
    for i, lead in enumerate(lead_deck(seed, 12, kinds)):
        plan = plan_trial(seed, i, lead, rows=(2000, 6000), kinds=kinds)
        assert {f.kind for f in plan.faults} <= set(kinds)
        assert plan.scenario == "normal"
        # faults are ordered by the phase their window opens in
        opens = [PHASES.index(f.window[0]) for f in plan.faults]
        assert opens == sorted(opens)


def test_a_scenario_lead_sets_the_scenario() -> None:
    for lead in SCENARIOS:
        plan = plan_trial(1, 0, lead, rows=(2000, 6000))
        assert plan.scenario == lead
        assert plan.job == ("poison_daily" if lead == "poison" else "merchant_daily")
