"""The fault kinds a chaos session injects: their families, how often each is drawn
as an extra, and which extras each scenario allows."""

from __future__ import annotations

MASTER_KILLS = (
    "master_kill_planning",
    "master_kill_publish",
    "master_kill_map",
    "master_kill_stage_switch",
    "master_kill_finishing",
)
WORKER_FAULTS = ("worker_kill", "worker_term")
RESTARTS = ("restart_mariadb", "restart_rabbitmq", "restart_hbase_thrift")
MESSAGES = ("msg_duplicate", "msg_stale", "msg_reordered", "msg_garbage")
NIGHTLY = ("master_never_restarted", "reboot_loses_wrapper")
"""A master that nobody restarts: the next night's plain ``--day yesterday`` heals it."""
SEGMENTS = ("kill_in_split", "kill_after_checkpoint", "split_vs_takeover")
"""A map chunk's segments and splits (``splits.py``): their trials run a paced map with
small checkpoints, so chunks live for seconds and hold several segments."""
SCENARIOS = (
    "poison",
    "cancel",
    "outage_past_deadline",
    "store_rejects",
    "rerun_changed_raw",
    *NIGHTLY,
    *SEGMENTS,
)
KINDS = (*MASTER_KILLS, *WORKER_FAULTS, *RESTARTS, *MESSAGES, *SCENARIOS, "two_masters")
"""Every kind a session must inject (each one at least once in the short version)."""

SERVICE_OF = {
    "restart_mariadb": "mariadb",
    "restart_rabbitmq": "rabbitmq",
    "restart_hbase_thrift": "hbase-thrift",
}
# How often a kind is added to a trial as an extra (restarts cost seconds each).
EXTRA_WEIGHTS = {
    **dict.fromkeys(MASTER_KILLS, 3.0),
    "worker_kill": 4.0,
    "worker_term": 3.0,
    "restart_mariadb": 1.5,
    "restart_rabbitmq": 0.6,
    "restart_hbase_thrift": 1.0,
    **dict.fromkeys(MESSAGES, 2.0),
    "two_masters": 2.0,
}
# A poison trial must fail for the poison row alone: no fault that burns attempts.
POISON_COMPATIBLE = {
    "master_kill_planning",
    "master_kill_publish",
    "master_kill_map",
    *MESSAGES,
    "two_masters",
}
CANCEL_COMPATIBLE = {"master_kill_planning", "master_kill_publish", *MESSAGES, "two_masters"}
DEADLINE_COMPATIBLE = {"master_kill_planning", *MESSAGES, "worker_kill"}
# A store that rejects writes must fail the run for that alone: nothing that burns attempts.
STORE_REJECTS_COMPATIBLE = {"master_kill_planning", "master_kill_publish", *MESSAGES}
NIGHTLY_COMPATIBLE = {"master_kill_planning", *MESSAGES}
COMPATIBLE = {
    "poison": POISON_COMPATIBLE,
    "cancel": CANCEL_COMPATIBLE,
    "outage_past_deadline": DEADLINE_COMPATIBLE,
    "store_rejects": STORE_REJECTS_COMPATIBLE,
    **dict.fromkeys(NIGHTLY, NIGHTLY_COMPATIBLE),
}
"""Extras a scenario allows (a scenario not named here allows every extra)."""
