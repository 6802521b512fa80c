"""The row a configuration starts as: its subject and setting, this process's
environment, status ``error`` until a measurement says otherwise. Imports nothing heavy:
the command process makes these rows too (a skipped or failed configuration's), and it
plans without importing torch."""

from __future__ import annotations

import datetime as dt
import os

from mobattn.environment import environment

from .config import BenchConfig
from .row import Row


def base_row(config: BenchConfig) -> Row:
    return Row(
        **config.subject_fields(),
        status="error",
        pid=os.getpid(),
        timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        environment=environment(),
        grid_h=config.hw[0] if config.hw else None,
        grid_w=config.hw[1] if config.hw else None,
        height=config.resolution[0] if config.resolution else None,
        width=config.resolution[1] if config.resolution else None,
    )
