"""The fault-injection harness's planner (tests/support/chaos/plan.py): a trial's plan
is a pure function of (session seed, index, lead kind), every kind leads once per
round of the deck, a session narrowed with --kinds draws nothing else, and the
scenarios that would have caught a defect are shaped as they need (no extra that burns
attempts in store_rejects, a free next night for the nightly ones)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import pytest

from tests.support.chaos import KINDS, lead_deck, plan_trial
from tests.support.chaos.plan import (
    BASE_DAY,
    NIGHTLY,
    NIGHTLY_COMPATIBLE,
    PHASES,
    SCENARIOS,
    SEGMENTS,
    STORE_REJECTS_COMPATIBLE,
)


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
        want = {"poison": "poison_daily", **dict.fromkeys(SEGMENTS, "paced_daily")}
        assert plan.job == want.get(lead, "merchant_daily")


def test_a_short_session_leads_with_every_new_kind() -> None:
    # Given the short session's deck (tests/faults: 20 trials, then make-ups)
    deck = lead_deck(5, len(KINDS))
    # Then one round deals each kind that would have caught a defect once
    for kind in ("rerun_changed_raw", "store_rejects", *NIGHTLY):
        assert deck.count(kind) == 1


@pytest.mark.parametrize("seed", range(10))
def test_a_store_rejects_trial_draws_nothing_that_burns_attempts(seed: int) -> None:
    plan = plan_trial(seed, 4, "store_rejects", rows=(2000, 6000))
    assert plan.scenario == "store_rejects" and plan.max_attempts in (2, 3)
    (lead,) = [f for f in plan.faults if f.kind == "store_rejects"]
    assert lead.variant in ("summary", "partials")
    assert {f.kind for f in plan.faults} - {"store_rejects"} <= STORE_REJECTS_COMPATIBLE


@pytest.mark.parametrize("seed", range(10))
def test_a_rerun_changed_raw_trial_is_shaped_not_timed(seed: int) -> None:
    plan = plan_trial(seed, 2, "rerun_changed_raw", rows=(2000, 6000))
    # the rerun is the trial's last step, not a moment of the run
    assert "rerun_changed_raw" not in {f.kind for f in plan.faults}
    assert plan.rerun_kill in ("", "master", "worker")
    assert plan.day == BASE_DAY + dt.timedelta(days=2)


@pytest.mark.parametrize("lead", NIGHTLY)
def test_a_nightly_trials_next_night_is_no_other_trials_day(lead: str) -> None:
    # Given nightly trials 0..49 and normal trials 0..49
    nightly = [plan_trial(3, i, lead, rows=(2000, 6000)) for i in range(50)]
    days = {plan_trial(3, i, "worker_kill", rows=(2000, 6000)).day for i in range(50)}
    days |= {p.day for p in nightly}
    for plan in nightly:
        # Then the next night's "yesterday" (day + 1) is no trial's day, and the
        # stranded day is within the default resume lookback (7 days)
        yesterday = plan.next_night - dt.timedelta(days=1)
        assert yesterday == plan.day + dt.timedelta(days=1)
        assert yesterday not in days
        assert {f.kind for f in plan.faults} - {lead} <= NIGHTLY_COMPATIBLE


@pytest.mark.parametrize("lead", SEGMENTS)
def test_a_segments_trial_runs_a_paced_map_in_few_large_chunks(lead: str) -> None:
    for i in range(10):
        plan = plan_trial(11, i, lead, rows=(2000, 6000))
        assert plan.scenario == lead and plan.job == "paced_daily"
        assert plan.chunk_rows >= 2000 // 8 and plan.salt_buckets in (2, 4)
        (fault,) = [f for f in plan.faults if f.kind == lead]
        assert fault.window == ("map", "map") and fault.frac <= 0.4


def test_every_trial_checkpoints_inside_its_chunks() -> None:
    from tests.support.chaos import splits

    plan = plan_trial(11, 0, "kill_after_checkpoint", rows=(2000, 6000))
    env = splits.env(plan.chunk_rows)
    assert int(env["NIGHTFOLD_CHECKPOINT_ROWS"]) < plan.chunk_rows
    assert int(env["NIGHTFOLD_SCAN_BATCH"]) < int(env["NIGHTFOLD_CHECKPOINT_ROWS"])
