"""The fault-injection harness: randomized trials of the real pipeline on the real
MariaDB, RabbitMQ and HBase, with processes killed, services restarted and the
queue polluted while a run is under way.

One **trial** is one day's run, isolated from every other trial: a MariaDB
database of its own, a private work queue (and dead-letter queue), and a day of
its own in a table prefix shared by the session (summaries are keyed by day, so a
day per trial keeps one trial's rows from masking another's losses). The trial
seeds a small day (2k-6k rows, ``seed_day`` with the trial's seed), starts two
workers and a master (``python -m nightfold``, configured only through
``NIGHTFOLD_*``), with short leases and small chunks, and injects its faults when
their moment comes. A moment is a condition on the database (the run's phase, how
many map chunks are done, which worker holds a claim, whether a queued chunk's
hint is unpublished), polled every few milliseconds, plus a random fraction drawn
from the trial's RNG. Then it waits for the masters to exit and checks:

- the outcome: succeeded (``verify`` passes), or for a poison chunk failed with
  that reason and then a ``--rerun`` after the fix succeeds, or cancelled, or (a
  database outage longer than the deadline) the master gives up with one clear
  line, exit 3, and a restarted master finishes the run;
- a store that answers every write of a stage with an error (``store_rejects``: the
  table replaced by one without its family): the run ends failed within a bounded
  time naming the HBase error, each dead chunk at ``max_attempts``, no chunk claimed
  more often (no claim/release loop); after the table is restored ``--rerun``
  succeeds;
- a master nobody restarts (``master_never_restarted``: the workers finish their
  chunks, the run stays mapping, ``status --json`` says stalled naming the dead
  master within a bound; ``reboot_loses_wrapper``: master, its restarter and workers
  all gone, fresh workers): the next night's plain ``master run --day yesterday``
  (``NIGHTFOLD_TODAY`` = the day after next) resumes the stranded day, which
  succeeds, and then runs its own day;
- rows lost / counted twice: every group's ``orders + malformed`` in the stored
  summaries against the oracle's (``nightfold.ops.verify``), whose total must
  equal the rows seeded (after ``rerun_changed_raw``: the rows as changed);
- no stale cells (``rerun_changed_raw``: after a run, one merchant's raw rows are
  deleted, another's made malformed, maybe rows added, then ``--rerun``, sometimes
  with a master or worker SIGKILLed in its reduce): the day's whole summary table,
  read straight from HBase, equals the oracle's cell for cell -- no row or column
  stored that the new rows do not produce (``stale_rows``/``stale_cells``, 0 to pass);
- run_events: no chunk has two ``done`` events; the run's row counter equals the
  rows seeded; garbage messages all end in the dead-letter queue and nothing else
  does; SIGTERMed workers exit 0 holding no claim; a second master refuses with
  exit 5 and one line.

Everything random comes from ``NIGHTFOLD_CHAOS_SEED`` (printed): trial ``i`` of a
session is a pure function of (seed, i, lead kind), so its plan can be replayed
with ``python -m tests.support.chaos --seed S --trial I --lead KIND`` (timing on
a real machine is never replayable exactly; the plan and the moments are).

``python -m tests.support.chaos --trials 200 --report bench/results/chaos.json``
is ``make chaos``; ``tests/faults`` runs a short session in ``make test``.
"""

# The package, one concern a module:
#   kinds.py     the fault kinds, their extra weights and scenario compatibilities
#   plan.py      TrialPlan, lead_deck, plan_trial (pure functions of the seed)
#   procs.py     a started master/worker, tracebacks in its log, deploy/local/services
#   quiet.py     waiting for other people's tests before restarting a shared service
#   observe.py   snapshots of a trial's run through its database
#   result.py    TrialResult: what one trial found
#   rig.py       one trial's state and plumbing (processes, database handle, log, clock)
#   trial.py     running one trial: database, seed, drive the faults, then the checks
#   faults.py    injecting each fault kind; messages.py: polluting the queue
#   rejects.py   store_rejects; rerun.py: rerun_changed_raw; nightly.py: the masters
#                nobody restarts and the next night
#   checks.py    checking a trial's outcome (outcomes.py: what each scenario expects;
#                stale.py: no stale cells); recovery.py: restart-to-progress times
#   session.py   run_session, SessionConfig; report.py: the JSON report
#   __main__.py  the CLI

from tests.support.chaos.plan import KINDS, Fault, TrialPlan, lead_deck, plan_trial
from tests.support.chaos.result import TrialResult
from tests.support.chaos.session import SessionConfig, SessionReport, resolve_seed, run_session

__all__ = [
    "KINDS",
    "Fault",
    "SessionConfig",
    "SessionReport",
    "TrialPlan",
    "TrialResult",
    "lead_deck",
    "plan_trial",
    "resolve_seed",
    "run_session",
]
