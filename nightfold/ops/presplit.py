"""Creating a raw table pre-split into regions, as tables are on a cluster.

Why: the planner cuts the day at region boundaries, and a table of one region
hides exactly what matters at scale. HBase's Thrift1 gateway cannot create a
table with split keys, so for HBase this runs ``CreateSplitTable.java`` (next to
this file) with Java's source-file launcher against the HBase client jars,
talking to ZooKeeper and the master like the HBase shell's ``create … SPLITS``.
Where the pieces come from (each overridable):

- ``NIGHTFOLD_HBASE_LIB``: the jars; else the newest complete
  ``$NIGHTFOLD_CACHE/hbase-*/lib`` that ``deploy/local/services`` fetched
  (``NIGHTFOLD_CACHE`` defaults to ``~/.cache/nightfold``);
- ``NIGHTFOLD_HBASE_ZOOKEEPER``: ``host:port`` of ZooKeeper; else the Thrift
  gateway's host, port 2181;
- ``NIGHTFOLD_JAVA``: the ``java`` of a JDK 11+; else ``java`` on the PATH.

The embedded store emulates regions (``LocalStore.create_presplit``).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from nightfold.common.errors import ConfigError, StoreRejected
from nightfold.common.store.base import Store

TOOL = Path(__file__).with_name("CreateSplitTable.java")
TOOL_TIMEOUT_S = 300
EXISTS = 3


def hbase_lib() -> Path:
    """The HBase client jars' directory (module docstring)."""
    configured = os.environ.get("NIGHTFOLD_HBASE_LIB")
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("NIGHTFOLD_CACHE") or Path.home() / ".cache" / "nightfold")
    found = sorted(
        (p.parent / "lib" for p in cache.glob("hbase-*/.complete") if (p.parent / "lib").is_dir()),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        raise ConfigError(
            f"no HBase jars to pre-split with: set NIGHTFOLD_HBASE_LIB, or fetch them into "
            f"{cache} with deploy/local/services up"
        )
    return found[-1]


def java() -> str:
    configured = os.environ.get("NIGHTFOLD_JAVA") or shutil.which("java")
    if not configured:
        raise ConfigError("no java to pre-split with: install a JDK 11+ or set NIGHTFOLD_JAVA")
    return configured


def create_presplit(
    store: Store, table: str, families: Sequence[str], split_keys: Sequence[bytes]
) -> bool:
    """Create ``table`` with a region starting at each of ``split_keys``; False (and
    nothing changed) when it exists. Raises ConfigError when HBase's tooling is
    missing and StoreRejected when HBase refused."""
    from nightfold.common.store.local import LocalStore

    keys = sorted(set(split_keys))
    if isinstance(store, LocalStore):
        return store.create_presplit(table, families, keys)
    from nightfold.common.store.hbase import HBaseStore

    if not isinstance(store, HBaseStore):
        raise ConfigError(f"cannot pre-split a table of {store!r}")
    if table.encode() in store.connection.tables():  # no JVM for a table that exists
        return False
    prefix = store.table_prefix
    name = f"{prefix}_{table}" if prefix else table
    zookeeper = os.environ.get("NIGHTFOLD_HBASE_ZOOKEEPER") or f"{store.host}:2181"
    argv = [java(), "-cp", f"{hbase_lib()}/*", str(TOOL), zookeeper, name, ",".join(families)]
    argv += [base64.b64encode(k).decode() for k in keys]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StoreRejected("hbase", f"pre-splitting {name}: {exc}") from None
    if done.returncode == EXISTS:
        return False
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "Exception" in line]
        reason = (errors or done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise StoreRejected("hbase", f"pre-splitting {name} via {zookeeper}: {reason}")
    return True
