"""What every `alexnet` command shares: a stopped command (Ctrl-C, or SIGTERM, which the
trainer turns into KeyboardInterrupt after saving) ends in one line and exit status 130,
never a traceback, and those whose work goes on say how."""

from __future__ import annotations

import pytest

from alexnet.cli import main

from fixtures import DEBUG, ROOT


def _stopped(*args, **kwargs):
    raise KeyboardInterrupt  # what Ctrl-C, or SIGTERM inside a training run, becomes


# (the command, the function its work is stopped in, the line it must end with)
STOPS = {
    "train": (["train", "--config", str(DEBUG), "--out", "{tmp}/run"],
              "alexnet.cli.train.run_from_args",
              "interrupted: continue with `alexnet train --resume {tmp}/run`"),
    "train --auto-resume": (["train", "--config", str(DEBUG), "--out", "{tmp}/run",
                             "--auto-resume"], "alexnet.cli.train.run_from_args",
                            "interrupted: continue with `alexnet train --resume {tmp}/run`"),
    "data prepare": (["data", "prepare", "--source", "fashion-mnist", "--out", "{tmp}/store"],
                     "alexnet.data.prepare.prepare",
                     "interrupted: the work done so far is kept in {tmp}/store; run the same "
                     "command again to continue"),
    "transfer": (["transfer", "--recipe", str(ROOT / "configs" / "tiny-imagenet-b.yaml"),
                  "--methods", "scratch", "--out", "{tmp}/study"],
                 "alexnet.studies.transfer.run_transfer",
                 "interrupted: the finished cells and the stopped one's checkpoint are kept in "
                 "{tmp}/study; run the same command again to continue"),
    "ablate": (["ablate", "lrn", "--data", "{tmp}/store", "--out", "{tmp}/study"],
               "alexnet.studies.ablate.run_study",
               "interrupted: the finished runs and the stopped one's checkpoint are kept in "
               "{tmp}/study; run the same command again to continue"),
    "ablate, default folder": (["ablate", "lrn", "--data", "{tmp}/store"],
                               "alexnet.studies.ablate.run_study",
                               "interrupted: the finished runs and the stopped one's checkpoint "
                               "are kept in runs/ablate-lrn; run the same command again to "
                               "continue"),
    "summary (nothing to continue)": (["summary", "alexnet2012"],
                                      "alexnet.models.summary.summarize", "interrupted"),
}  # fmt: skip


@pytest.mark.parametrize("name", STOPS)
def test_a_stopped_command_says_how_to_go_on_in_one_line(name, tmp_path, monkeypatch, capsys):
    argv, where, line = STOPS[name]
    monkeypatch.setattr(where, _stopped)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == line.replace("{tmp}", str(tmp_path))
    assert "Traceback" not in err
    assert not (tmp_path / "study").exists() and not (tmp_path / "run").exists()


def test_a_users_mistake_is_one_line_and_a_bug_shows_its_traceback(tmp_path, monkeypatch, capsys):
    # a mistake: a path with nothing there, a recipe key that does not exist
    for argv, said in (
        (["eval", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(tmp_path)], "no "),
        (["train", "--config", str(DEBUG), "--set", "optim.lrate=1"], "unknown key optim.lrate"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and said in err
        # --debug shows where it was raised, and still ends in the same line
        assert main(["--debug", *argv]) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and said in err.strip().splitlines()[-1]

    # a bug: a ValueError from inside a library, not a message of ours
    def broken(*args, **kwargs):
        return int("not a number")  # ValueError, as numpy, json or torch raise them

    monkeypatch.setattr("alexnet.cli.train.run_from_args", broken)
    assert main(["train", "--config", str(DEBUG), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "invalid literal for int()" in err
    assert "a bug in alexnet" in err.strip().splitlines()[-1]
