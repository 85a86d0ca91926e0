"""`alexnet summary` and the command line, against the paper's numbers (section 3.5) by hand."""

import json
import subprocess
import sys

import pytest

from alexnet.cli import main
from alexnet.models.summary import PAPER_NEURONS, summarize


def test_summary_of_the_paper_network():
    summary = summarize("alexnet2012")
    rows = {r.name: r for r in summary.rows}
    assert summary.params == 60_965_224
    # neurons: the paper's counts, except conv1's known error
    for name, paper in PAPER_NEURONS.items():
        assert rows[name].neurons == (290_400 if name == "conv1" else paper), name
    # multiply-adds by hand: outputs x (kernel area x input maps per kernel)
    assert rows["conv1"].macs == 55 * 55 * 96 * (11 * 11 * 3)
    assert rows["conv2"].macs == 27 * 27 * 256 * (5 * 5 * 48)
    assert rows["conv3"].macs == 13 * 13 * 384 * (3 * 3 * 256)
    assert rows["fc6"].macs == 9216 * 4096
    assert summary.macs == 724_406_816
    assert [r.name for r in summary.rows][:4] == ["input", "conv1", "norm1", "pool1"]


def test_summary_explains_the_papers_conv1_neuron_count():
    text = summarize("alexnet2012").table()
    assert "253,440" in text and "290,400" in text and "55 x 48 x 96" in text
    assert 55 * 48 * 96 == 253_440 and 55 * 55 * 96 == 290_400


def test_summary_follows_the_variant():
    caffenet = summarize("caffenet")
    assert caffenet.input_shape == (3, 227, 227)
    assert [r.name for r in caffenet.rows][2:4] == ["pool1", "norm1"]  # pool, then LRN
    assert summarize("alexnet_owt").params == 61_100_840  # torchvision's alexnet
    assert summarize("alexnet2012", input_size=227).rows[1].shape == (96, 55, 55)
    no_conv3 = summarize("alexnet2012", remove_layer="conv3")
    assert "conv3" not in [r.name for r in no_conv3.rows]
    assert no_conv3.params == 60_965_224 - 885_120 - (663_936 - (9 * 128 * 384 + 384))


def test_cli_summary_json(capsys):
    assert main(["summary", "alexnet2012", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["params"] == 60_965_224
    assert data["layers"][1] | {"operation": None} == {
        "name": "conv1",
        "operation": None,
        "shape": [96, 55, 55],
        "neurons": 290_400,
        "params": 34_944,
        "macs": 105_415_200,
    }


def test_cli_summary_takes_config_options(capsys):
    assert main(["summary", "-o", "towers=1", "-o", "widths=(48,128,192,192,256)"]) == 0
    assert "59,798,312" in capsys.readouterr().out  # the one-GPU net


@pytest.mark.parametrize(
    "argv, message",
    [
        (["summary", "alexnet"], "unknown model 'alexnet'; available: alexnet2012"),
        (["summary", "--input-size", "300"], "224 to 255 pixels"),
        (["summary", "-o", "activation=gelu"], "activation must be one of relu, tanh"),
    ],
)
def test_cli_user_errors_are_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_cli_models_lists_every_variant(capsys):
    assert main(["models", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)) == [
        "alexnet2012",
        "alexnet2012_1gpu",
        "alexnet2012_6conv",
        "alexnet2012_released",
        "alexnet_owt",
        "caffenet",
        "cifar4",
        "cifar_local",
    ]


def test_python_dash_m_runs_the_command():
    out = subprocess.run(
        [sys.executable, "-m", "alexnet", "summary"], capture_output=True, text=True, check=True
    ).stdout
    assert "60,965,224" in out
