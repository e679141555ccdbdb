"""Actor identities: ``host:pid:random``, for workers and masters alike."""

from __future__ import annotations

import os
import secrets
import socket


def new_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def is_local_and_dead(identity: str, me: str) -> bool:
    """True when ``identity`` names a process on this host that no longer exists.

    Lets a restarted master take over its dead predecessor's run at once instead
    of waiting for the heartbeat to go stale. In a container every master is pid 1
    of the same hostname after a restart: another identity with our own pid is a
    process that is gone, since the pid is ours now.
    """
    parts = identity.split(":")
    if identity == me or len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
