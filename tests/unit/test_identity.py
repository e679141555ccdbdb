"""Who may take over a run at once: a dead master of this host, never a live one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from nightfold.common.identity import is_local_and_dead, new_identity

HOST = socket.gethostname()


def test_a_live_process_or_ourselves_is_not_dead() -> None:
    me = new_identity()
    assert not is_local_and_dead(me, me)
    assert not is_local_and_dead(f"{HOST}:{os.getppid()}:abcdef", me)


def test_an_exited_process_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert is_local_and_dead(f"{HOST}:{child.pid}:abcdef", new_identity())


def test_our_own_pid_under_another_identity_is_a_restarted_container() -> None:
    # A container's master is pid 1 again after a restart, with the same hostname:
    # the previous owner, with our pid but another token, cannot be alive.
    assert is_local_and_dead(f"{HOST}:{os.getpid()}:0ld0ne", new_identity())


def test_other_hosts_and_garbage_are_never_judged() -> None:
    me = new_identity()
    assert not is_local_and_dead(f"elsewhere-{HOST}:{os.getpid()}:abcdef", me)
    assert not is_local_and_dead(f"{HOST}:notapid:abcdef", me)
    assert not is_local_and_dead("garbage", me)
