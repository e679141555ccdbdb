"""What a trial injects and when: a trial's plan (its day, sizes and faults with their
moments) and the deck of lead kinds (the kinds themselves: ``kinds``, re-exported).
Pure functions of the session seed, the trial's index and its lead kind, so a trial's
plan can be replayed."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from tests.support.chaos.kinds import (  # noqa: F401  (re-exported)
    CANCEL_COMPATIBLE,
    COMPATIBLE,
    DEADLINE_COMPATIBLE,
    EXTRA_WEIGHTS,
    KINDS,
    MASTER_KILLS,
    MESSAGES,
    NIGHTLY,
    NIGHTLY_COMPATIBLE,
    POISON_COMPATIBLE,
    RESTARTS,
    SCENARIOS,
    SEGMENTS,
    SERVICE_OF,
    STORE_REJECTS_COMPATIBLE,
    WORKER_FAULTS,
)

# The run's phases, in order, as the database shows them.
PHASES = ("start", "planning", "map", "switch", "reduce", "finishing", "terminal")
TERMINAL = ("succeeded", "failed", "cancelled")

BASE_DAY = dt.date(2031, 1, 1)
NIGHTLY_BASE_DAY = dt.date(2041, 1, 1)
"""Days of the nightly scenarios are ``NIGHTLY_BASE_DAY + 2 * index``: the day after
one (the next night's ``yesterday``) is never another trial's day."""


@dataclass
class Fault:
    """One fault of a trial: when it may fire, and what happened when it did."""

    kind: str
    window: tuple[str, str]
    """First and last phase in which it may fire; past the last one it is missed."""
    frac: float = 0.0
    """Share of the map chunks done before it fires (when its window starts in map)."""
    stage: str = "map"
    variant: str = ""
    delay: float = 0.0
    """Pause before the follow-up (a killed process's restart, a stopped service's start)."""
    fired: bool = False
    missed: bool = False
    observed: str = ""
    """The kind as observed when it fired (a master kill counts by the phase it hit)."""
    note: str = ""

    def describe(self) -> str:
        extra = f" {self.variant}" if self.variant else ""
        where = f"{self.window[0]}..{self.window[1]}" + (f"@{self.frac:.2f}" if self.frac else "")
        return f"{self.kind}{extra} [{where}]"


@dataclass
class TrialPlan:
    index: int
    session_seed: int
    lead: str
    seed: int
    day: dt.date
    rows: int
    salt_buckets: int
    chunk_rows: int
    reduce_buckets: int
    max_in_flight: int
    lease_seconds: int
    max_attempts: int
    scenario: str
    """normal, or the scenario kind that leads the trial (SCENARIOS)"""
    faults: list[Fault]
    deadline_seconds: int = 4
    rerun_kill: str = ""
    """rerun_changed_raw: kill the "master" or a "worker" during the rerun's reduce."""

    @property
    def next_night(self) -> dt.date:
        """The ``today`` of the night after ``day`` + 1: its ``yesterday`` is day + 1."""
        return self.day + dt.timedelta(days=2)

    @property
    def job(self) -> str:
        if self.scenario == "poison":
            return "poison_daily"
        return "paced_daily" if self.scenario in SEGMENTS else "merchant_daily"

    def replay(self) -> str:
        return (
            f"python -m tests.support.chaos --seed {self.session_seed} --trial {self.index} "
            f"--lead {self.lead}"
        )

    def describe(self) -> str:
        faults = ", ".join(f.describe() for f in self.faults) or "-"
        return (
            f"trial {self.index} seed={self.session_seed}/{self.seed} day={self.day} "
            f"rows={self.rows} salt={self.salt_buckets} chunk_rows={self.chunk_rows} "
            f"reduce={self.reduce_buckets} in_flight={self.max_in_flight} "
            f"lease={self.lease_seconds}s attempts={self.max_attempts} "
            f"scenario={self.scenario}"
            + (f" rerun_kill={self.rerun_kill}" if self.rerun_kill else "")
            + f": {faults}"
        )


def lead_deck(session_seed: int, count: int, kinds: tuple[str, ...] = KINDS) -> list[str]:
    """The lead kind of trials 0..count-1: every kind once per shuffled round."""
    rng = random.Random(f"nightfold-chaos-deck:{session_seed}")
    deck: list[str] = []
    while len(deck) < count:
        round_ = list(kinds)
        rng.shuffle(round_)
        deck += round_
    return deck[:count]


def _compatible(kind: str, chosen: list[str], scenario: str) -> bool:
    if kind in chosen or kind in SCENARIOS:
        return False
    if scenario in COMPATIBLE and kind not in COMPATIBLE[scenario]:
        return False
    # one service restart per trial
    return not (kind in RESTARTS and any(k in RESTARTS for k in chosen))


def _fault(kind: str, rng: random.Random) -> Fault:
    """A fault of ``kind`` with its moment drawn from ``rng``."""
    frac = round(rng.uniform(0.05, 0.7), 2)
    if kind == "master_kill_planning":
        return Fault(kind, ("planning", "planning"), delay=rng.uniform(0, 1.0))
    if kind == "master_kill_publish":
        return Fault(kind, ("map", "finishing"), delay=rng.uniform(0, 1.0))
    if kind == "master_kill_map":
        return Fault(kind, ("map", "map"), frac=frac, delay=rng.uniform(0, 1.5))
    if kind == "master_kill_stage_switch":
        return Fault(kind, ("switch", "switch"), delay=rng.uniform(0, 1.0))
    if kind == "master_kill_finishing":
        return Fault(kind, ("finishing", "terminal"), delay=rng.uniform(0, 1.0))
    if kind in WORKER_FAULTS:
        stage = "map" if rng.random() < 0.8 else "reduce"
        window = ("map", "map") if stage == "map" else ("switch", "reduce")
        return Fault(
            kind,
            window,
            frac=frac if stage == "map" else 0.0,
            stage=stage,
            variant="all" if rng.random() < 0.3 else "one",
            delay=rng.uniform(0, 1.0),
        )
    if kind in RESTARTS:
        if rng.random() < 0.75:
            return Fault(kind, ("map", "map"), frac=frac, variant="mid-map")
        return Fault(kind, ("switch", "reduce"), variant="mid-reduce")
    if kind == "msg_reordered":
        return Fault(kind, ("map", "map"), frac=round(rng.uniform(0.0, 0.3), 2))
    if kind in MESSAGES:
        if rng.random() < 0.7:
            return Fault(kind, ("map", "map"), frac=frac, variant="map")
        return Fault(kind, ("switch", "reduce"), variant="reduce")
    if kind == "two_masters":
        if rng.random() < 0.4:
            return Fault(kind, ("start", "start"), variant="at-start")
        return Fault(kind, ("map", "reduce"), frac=frac, variant="mid-run")
    if kind == "cancel":
        if rng.random() < 0.8:
            return Fault(kind, ("map", "map"), frac=frac, variant="mid-map")
        return Fault(kind, ("switch", "reduce"), variant="mid-reduce")
    if kind == "outage_past_deadline":
        return Fault(kind, ("map", "map"), frac=frac, variant="mariadb")
    if kind == "store_rejects":  # the table the stage writes is disabled under it
        if rng.random() < 0.7:
            return Fault(kind, ("switch", "reduce"), variant="summary")
        return Fault(kind, ("map", "map"), frac=frac, variant="partials")
    if kind == "master_never_restarted":
        return Fault(kind, ("map", "map"), frac=frac)
    if kind in SEGMENTS:  # early enough in the map that chunks are still running
        return Fault(kind, ("map", "map"), frac=round(rng.uniform(0.0, 0.4), 2), delay=0.2)
    if kind == "reboot_loses_wrapper":
        if rng.random() < 0.6:
            return Fault(kind, ("map", "map"), frac=frac, variant="mid-map")
        return Fault(kind, ("switch", "reduce"), variant="mid-reduce")
    raise ValueError(f"unknown fault kind {kind!r}")


def plan_trial(
    session_seed: int,
    index: int,
    lead: str,
    *,
    rows: tuple[int, int],
    kinds: tuple[str, ...] = KINDS,
) -> TrialPlan:
    """Trial ``index`` of a session: a pure function of its arguments (``kinds``: the
    kinds extras may be drawn from)."""
    if lead not in KINDS:
        raise ValueError(f"unknown fault kind {lead!r}; kinds: {', '.join(KINDS)}")
    rng = random.Random(f"nightfold-chaos:{session_seed}:{index}:{lead}")
    scenario = lead if lead in SCENARIOS else "normal"
    chosen = [lead]
    extras = rng.choices((0, 1, 2), weights=(0.3, 0.45, 0.25))[0]
    for _ in range(extras):
        options = [k for k in EXTRA_WEIGHTS if k in kinds and _compatible(k, chosen, scenario)]
        if not options:
            break
        chosen.append(rng.choices(options, weights=[EXTRA_WEIGHTS[k] for k in options])[0])
    # poison and rerun_changed_raw are no moment of the run: they shape the trial
    faults = [_fault(k, rng) for k in chosen if k not in ("poison", "rerun_changed_raw")]
    faults.sort(key=lambda f: (PHASES.index(f.window[0]), f.frac))
    n_rows = rng.randint(*rows)
    # a segments trial's chunks must live for seconds: few salt ranges (no chunk
    # straddles one), so the chunks are large
    salt = rng.choice((2, 4)) if scenario in SEGMENTS else rng.choice((4, 8, 16))
    # a segments trial's chunks are fewer and larger: they must live for seconds
    map_chunks = rng.randint(4, 8) if scenario in SEGMENTS else rng.randint(12, 28)
    rerun_kill = ""
    if scenario == "rerun_changed_raw":
        rerun_kill = rng.choice(("", "", "master", "worker"))
    nightly = scenario in NIGHTLY
    return TrialPlan(
        index=index,
        session_seed=session_seed,
        lead=lead,
        seed=rng.randrange(1, 2**31),
        day=(NIGHTLY_BASE_DAY + dt.timedelta(days=2 * index))
        if nightly
        else BASE_DAY + dt.timedelta(days=index),
        rows=n_rows,
        salt_buckets=salt,
        chunk_rows=max(20, n_rows // map_chunks),
        reduce_buckets=rng.randint(2, 6),
        max_in_flight=rng.choice((2, 4, 8, 16)),
        lease_seconds=rng.choice((2, 3)),
        max_attempts=rng.choice((2, 3)) if scenario in ("poison", "store_rejects") else 8,
        scenario=scenario,
        faults=faults,
        rerun_kill=rerun_kill,
    )
