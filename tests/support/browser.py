"""Where Debian's chromium is and how it must start here (no sandbox as root; no
background networking, which this machine's closed network refuses), for the
console's browser tests and its benchmark."""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("NIGHTFOLD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
