"""bf16 working copies (`alexnet.train.copies`): training on them computes autocast's numbers
bit for bit, and a master changed from outside the update is copied again."""

import pytest
import torch
import torch.nn.functional as F

import alexnet.train.copies as copies_module
from alexnet.models.registry import create_model
from alexnet.train.config import load_config
from alexnet.train.copies import WorkingCopies, applies
from alexnet.train.optim import PaperSGD
from alexnet.train.trainer import train

from fixtures import DEBUG, assert_runs_end_alike


def _train(copies: bool, steps: int = 2, channels_last: bool = False):
    """alexnet2012 after `steps` steps in bf16, with working copies or with autocast's casts
    (the same seeds, so the same dropout masks), and its optimizer."""
    torch.manual_seed(0)
    model = create_model("alexnet2012", num_classes=10)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = PaperSGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    forward = WorkingCopies(model, optimizer) if copies else model
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = torch.randn(2, 3, 224, 224, generator=gen)
        y = torch.randint(0, 10, (2,), generator=gen)
        torch.manual_seed(100 + step)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(forward(x).float(), y)
        loss.backward()
        optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("channels_last", [False, True])
def test_training_on_copies_equals_autocast_bit_for_bit(channels_last):
    plain, plain_opt = _train(copies=False, channels_last=channels_last)
    copied, copied_opt = _train(copies=True, channels_last=channels_last)
    moved = False
    for (name, p), q in zip(plain.named_parameters(), copied.parameters(), strict=True):
        assert q.dtype == torch.float32, name  # the masters stay float32
        assert torch.equal(p, q), name
        velocity = copied_opt.state[q]["velocity"]
        assert torch.equal(plain_opt.state[p]["velocity"], velocity), name
        moved |= bool(velocity.abs().max() > 0)
    assert moved  # the steps did update the weights


def test_gradients_land_on_the_copies_and_zero_grad_clears_them():
    torch.manual_seed(0)
    model = create_model("alexnet2012", num_classes=10)
    optimizer = PaperSGD(model.parameters(), lr=0.01)
    copies = WorkingCopies(model, optimizer)
    assert len(copies.copies) == 16  # conv1-conv5 and fc6-fc8, weights and biases
    assert all(c.dtype == torch.bfloat16 and c.requires_grad for c in copies.copies)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        copies(torch.randn(1, 3, 224, 224)).float().sum().backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(c.grad is not None and c.grad.dtype == torch.bfloat16 for c in copies.copies)
    optimizer.zero_grad(set_to_none=True)
    assert all(c.grad is None for c in copies.copies)


def test_weights_loaded_from_outside_are_copied_again_before_the_next_forward_pass():
    torch.manual_seed(0)
    model = create_model("alexnet2012", num_classes=10).eval()
    copies = WorkingCopies(model, PaperSGD(model.parameters(), lr=0.01))
    other = create_model("alexnet2012", num_classes=10).state_dict()
    model.load_state_dict(other)  # as a resumed run loads its checkpoint
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(copies(x), model(x))
    assert all(torch.equal(c, p.to(torch.bfloat16))
               for c, p in zip(copies.copies, copies.masters, strict=True))  # fmt: skip


@pytest.mark.parametrize(
    "change, applied",
    [
        ([], True),
        (["run.precision=fp32"], False),
        (["optim.name=torch_sgd"], False),
        (["optim.accumulate=2"], False),
        (["run.compile=true"], False),
    ],
)
def test_copies_apply_to_bf16_cpu_training_with_the_paper_update_only(change, applied):
    config = load_config("configs/tiny-imagenet.yaml", ["run.precision=bf16", *change])
    assert applies(config, torch.device("cpu"), world=1) is applied
    assert not applies(config, torch.device("cpu"), world=2)
    assert not applies(config, torch.device("cuda"), world=1)


def test_a_bf16_run_on_copies_ends_as_an_autocast_run_also_when_resumed(
    store, tmp_path, monkeypatch
):
    sets = [f"data.store={store}", "run.precision=bf16", "data.train_images=48"]
    train(load_config(DEBUG, [*sets, "run.epochs=2"]), tmp_path / "copies")
    assert "bf16 copies of the weights" in (tmp_path / "copies" / "train.log").read_text()
    # the second half resumed from the first's checkpoint: its copies are made from the
    # weights the checkpoint loads
    train(load_config(DEBUG, [*sets, "run.epochs=1"]), tmp_path / "resumed")
    train(load_config(DEBUG, [*sets, "run.epochs=2"]), tmp_path / "resumed", resume=True)
    with monkeypatch.context() as m:
        m.setattr(copies_module, "applies", lambda *args: False)
        train(load_config(DEBUG, [*sets, "run.epochs=2"]), tmp_path / "autocast")
    assert "bf16 copies" not in (tmp_path / "autocast" / "train.log").read_text()
    for run in ("copies", "resumed"):
        assert_runs_end_alike(tmp_path / "autocast", tmp_path / run)
