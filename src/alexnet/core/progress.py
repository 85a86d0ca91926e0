"""Progress bars: one place decides whether a bar shows and how often it is drawn.

A bar shows unless its caller turns it off or the environment says ALEXNET_PROGRESS=0. On
a terminal it is redrawn up to ten times a second (tqdm's default); when its stream is a
file (`nohup alexnet train ... >> run.out`), at most every LOG_INTERVAL_S seconds, so that
a day's run leaves a log of a few thousand lines rather than a million carriage returns.
"""

from __future__ import annotations

import functools
import os
import sys

LOG_INTERVAL_S = 30.0


def bar(total: int, desc: str, unit: str, show: bool = True, file=None, **options):
    """A tqdm bar over `total` `unit`s (tqdm.auto's: a widget in a notebook). `options` go
    to tqdm (initial, leave, smoothing, ...). Its set_postfix does not draw: the postfix
    shows with the next update's draw, so set it before that update."""
    from tqdm.auto import tqdm

    stream = sys.stderr if file is None else file
    notebook = any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__)
    terminal = notebook or (hasattr(stream, "isatty") and stream.isatty())
    if not terminal:
        # maxinterval too: tqdm's monitor thread redraws a bar left alone that long (10 s)
        options = {"mininterval": LOG_INTERVAL_S, "maxinterval": LOG_INTERVAL_S, **options}
    quiet = not show or os.environ.get("ALEXNET_PROGRESS") == "0"
    progress = tqdm(total=total, desc=desc, unit=unit, disable=quiet, file=stream, **options)
    # a postfix shows at the bar's next draw: tqdm's set_postfix draws at once by default,
    # which for a postfix set each step would be a line a step in a log file
    progress.set_postfix = functools.partial(progress.set_postfix, refresh=False)
    return progress
