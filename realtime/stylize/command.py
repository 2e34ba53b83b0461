"""`realtime stylize`: a stream URL on either side goes to url.py (newest frame wins, reconnects), else file.py."""

from __future__ import annotations

import argparse

from realtime.stylize.file import run_file
from realtime.stylize.url import is_stream, run_stream


def run_stylize(args: argparse.Namespace) -> int:
    """The `stylize` command; 0, or 2 after one error line."""
    if is_stream(args.input) or is_stream(args.output):
        return run_stream(args)  # live input or output: newest-frame loop, audio copied, reconnects
    return run_file(args)
