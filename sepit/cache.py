"""Where sepit keeps what it can rebuild (identity searches, the tiny models): $SEPIT_CACHE or ~/.cache/sepit."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("SEPIT_CACHE") or Path.home() / ".cache" / "sepit")
