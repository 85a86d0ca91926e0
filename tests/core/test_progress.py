"""Progress bars: drawn often on a terminal, seldom into a log file, never when turned off."""

from __future__ import annotations

import io

import pytest
import tqdm.std

from alexnet.core.progress import bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def draws(stream: io.StringIO, seconds: int, monkeypatch) -> int:
    """How many times a bar on `stream` is drawn over `seconds` of one step a second (a
    clock of our own: no test waits)."""
    clock = [1000.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])
    progress = bar(seconds, "test", "step", file=stream)
    for _ in range(seconds):
        clock[0] += 1.0
        progress.update(1)
    drawn = stream.getvalue().count("\r")
    progress.close()
    return drawn


def test_a_terminal_sees_every_step_and_a_log_file_one_line_in_thirty_seconds(monkeypatch):
    monkeypatch.delenv("ALEXNET_PROGRESS", raising=False)
    assert draws(Terminal(), 120, monkeypatch) >= 120  # the first draw and one a step
    # a log file: the first draw, then one each 30 s of the 120
    assert 2 <= draws(io.StringIO(), 120, monkeypatch) <= 6


@pytest.mark.parametrize("env, show", [("0", True), (None, False)])
def test_turned_off_writes_nothing(env, show, monkeypatch):
    if env is None:
        monkeypatch.delenv("ALEXNET_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("ALEXNET_PROGRESS", env)
    stream = Terminal()
    progress = bar(10, "test", "step", show=show, file=stream)
    progress.update(10)
    progress.close()
    assert stream.getvalue() == ""


def test_a_postfix_set_each_step_does_not_draw_the_bar_in_a_log_file(monkeypatch):
    monkeypatch.delenv("ALEXNET_PROGRESS", raising=False)
    monkeypatch.setattr(tqdm.std, "time", lambda: 1000.0)  # no time passes
    stream = io.StringIO()
    progress = bar(100, "test", "step", file=stream)
    for step in range(100):
        progress.set_postfix(loss=f"{1 / (step + 1):.3f}")
        progress.update(1)
    assert stream.getvalue().count("\r") <= 2  # the first draw, not one a step
    progress.close()
    assert "loss=0.010" in stream.getvalue()  # the last postfix shows in the closing draw
