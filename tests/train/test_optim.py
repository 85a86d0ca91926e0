"""The paper's update rule and the learning-rate schedules, against hand-computed tables."""

import copy

import pytest
import torch
from torch import nn

from alexnet.models.registry import create_model
from alexnet.train.config import OptimConfig, ScheduleConfig
from alexnet.train.optim import PaperSGD, make_optimizer, parameter_groups, set_lr
from alexnet.train.schedule import Milestones, Plateau, make_schedule


def _steps(optimizer, w, lrs):
    """Step with a gradient of 1 at each rate; the weight after each step."""
    out = []
    for lr in lrs:
        set_lr(optimizer, lr)
        w.grad = torch.ones_like(w)
        optimizer.step()
        out.append(w.item())
    return out


def test_paper_update_rule_matches_a_hand_computed_sequence_across_an_lr_drop():
    # v <- 0.9 v - wd lr w - lr g; w <- w + v, with w0 = 1, g = 1, wd = 0.1 (large, to see it):
    # step 1 (lr 0.1):  v = -0.01 - 0.1 = -0.11;                         w = 0.89
    # step 2 (lr 0.1):  v = -0.099 - 0.0089 - 0.1 = -0.2079;             w = 0.6821
    # step 3 (lr 0.01): v = -0.18711 - 0.0006821 - 0.01 = -0.1977921;    w = 0.4843079
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    optimizer = PaperSGD([{"params": [w]}], lr=0.1, momentum=0.9, weight_decay=0.1)
    assert _steps(optimizer, w, [0.1, 0.1, 0.01]) == pytest.approx(
        [0.89, 0.6821, 0.4843079], abs=1e-12
    )


def test_torch_sgd_agrees_until_the_lr_drop_then_differs():
    # torch: b <- 0.9 b + g + wd w; w <- w - lr b
    # b1 = 1.1, w = 0.89; b2 = 0.99 + 1.089 = 2.079, w = 0.6821;
    # b3 = 1.8711 + 1.06821 = 2.93931, w = 0.6821 - 0.0293931 = 0.6527069
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    optimizer = torch.optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.1)
    assert _steps(optimizer, w, [0.1, 0.1, 0.01]) == pytest.approx(
        [0.89, 0.6821, 0.6527069], abs=1e-12
    )


def test_released_bias_settings_double_the_rate_and_skip_decay():
    layer = nn.Linear(1, 1).double()
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.fill_(1.0)
    optim = OptimConfig(lr=0.1, momentum=0.9, weight_decay=0.1, bias_lr_mult=2.0,
                        bias_weight_decay=False)  # fmt: skip
    optimizer = make_optimizer(layer, optim)
    layer.weight.grad = torch.ones_like(layer.weight)
    layer.bias.grad = torch.ones_like(layer.bias)
    optimizer.step()
    assert layer.weight.item() == pytest.approx(1 - 0.01 - 0.1)  # lr 0.1, with decay
    assert layer.bias.item() == pytest.approx(1 - 0.2)  # lr 0.2, no decay
    set_lr(optimizer, 0.01)
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.02]


def test_parameter_groups_pick_layers_by_type_and_miss_nothing():
    model = create_model("alexnet2012", num_classes=10)
    groups = parameter_groups(model)
    assert [g["name"] for g in groups] == ["weights", "biases"]
    assert len(groups[0]["params"]) == len(groups[1]["params"]) == 8
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters()
    )


def test_layer_weight_decay_gives_named_layers_their_own_decay():
    model = create_model("cifar4", num_classes=10).double()
    groups = parameter_groups(model, 2.0, False, {"fc10": 1.0, "conv1": 0.0})
    assert [g["name"] for g in groups] == ["weights", "biases", "fc10", "conv1"]
    assert groups[2]["params"][0] is model.fc10.weight and groups[2]["weight_decay"] == 1.0
    assert any(p is model.fc10.bias for p in groups[1]["params"])  # as bias_weight_decay says
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters()
    )
    # one step from zero gradients: each weight moves by -lr * its layer's decay * w
    optim = OptimConfig(lr=0.1, momentum=0.9, weight_decay=0.004, bias_lr_mult=2.0,
                        bias_weight_decay=False, layer_weight_decay={"fc10": 1.0})  # fmt: skip
    optimizer = make_optimizer(model, optim)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    torch.testing.assert_close(model.fc10.weight, before["fc10.weight"] * (1 - 0.1 * 1.0))
    torch.testing.assert_close(model.conv2.weight, before["conv2.weight"] * (1 - 0.1 * 0.004))
    torch.testing.assert_close(model.fc10.bias, before["fc10.bias"])
    with pytest.raises(ValueError, match=r"'fc8', which is not a learned layer.*conv1, conv2"):
        parameter_groups(model, layer_weight_decay={"fc8": 0.0})


def test_paper_optimizer_state_round_trips_and_continues_step_for_step():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    opt_a = make_optimizer(a, OptimConfig(lr=0.1, momentum=0.9, weight_decay=5e-4))
    for _ in range(3):
        a(torch.randn(2, 4)).square().sum().backward()
        opt_a.step()
        opt_a.zero_grad()
    b.load_state_dict(a.state_dict())
    opt_b = make_optimizer(b, OptimConfig(lr=0.1, momentum=0.9, weight_decay=5e-4))
    # a copy, as a checkpoint would be: loading keeps same-device tensors by reference
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    x = torch.randn(2, 4)
    for model, opt in ((a, opt_a), (b, opt_b)):
        model(x).square().sum().backward()
        opt.step()
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_plateau_divides_by_ten_after_patience_epochs_three_times_at_most():
    schedule = Plateau(0.01, factor=0.1, patience=2, max_drops=3)
    errors = [0.5, 0.4, 0.41, 0.42, 0.39, 0.39, 0.39, 0.38, 0.38, 0.38, 0.38, 0.38, 0.38]
    expected = [
        1e-2, 1e-2, 1e-2, 1e-3,  # 0.41, 0.42: two epochs without improvement
        1e-3, 1e-3, 1e-4,  # equal is not better
        1e-4, 1e-4, 1e-5,  # third drop
        1e-5, 1e-5, 1e-5,  # no fourth
    ]  # fmt: skip
    got = [schedule.step(epoch, e) for epoch, e in enumerate(errors)]
    assert got == pytest.approx(expected, rel=1e-12)
    assert schedule.drops == 3


def test_plateau_state_round_trips():
    a = Plateau(0.01, patience=2)
    for epoch, e in enumerate([0.5, 0.6]):
        a.step(epoch, e)
    b = Plateau(0.01, patience=2)
    b.load_state_dict(a.state_dict())
    assert b.step(2, 0.7) == a.step(2, 0.7) == pytest.approx(0.001)


def test_milestones_follow_the_released_codes_epochs():
    schedule = Milestones(0.01, (25, 51, 79))
    lrs = [schedule.step(epoch) for epoch in range(91)]  # rate for epoch+2 (1-based)
    assert lrs[23] == 0.01 and lrs[24] == pytest.approx(1e-3)  # epochs 1-25 at 0.01
    assert lrs[49] == pytest.approx(1e-3) and lrs[50] == pytest.approx(1e-4)
    assert lrs[77] == pytest.approx(1e-4) and lrs[78] == pytest.approx(1e-5)
    assert lrs[90] == pytest.approx(1e-5)


def test_unknown_schedule_and_optimizer_are_refused():
    with pytest.raises(ValueError, match=r"schedule\.kind"):
        make_schedule(ScheduleConfig(kind="cosine"), 0.01)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer(nn.Linear(1, 1), OptimConfig(name="adam"))


def test_plateau_is_exhausted_only_after_its_last_drop_and_patience_more_epochs():
    schedule = Plateau(0.01, patience=2, max_drops=1)
    # epochs: best, bad, bad -> drop; then better, bad, bad -> exhausted
    states = []
    for epoch, error in enumerate([0.5, 0.5, 0.6, 0.4, 0.4, 0.45]):
        schedule.step(epoch, error)
        states.append((schedule.drops, schedule.exhausted))
    assert states == [(0, False), (0, False), (1, False), (1, False), (1, False), (1, True)]
