"""Subcommands that work on studies: demo, sweep, status, report, predict."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    """Register the study subcommands on the ``segtune`` parser."""
    del sub
