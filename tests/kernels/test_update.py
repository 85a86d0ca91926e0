"""The update rule's one-pass kernel (`alexnet.kernels.update`) against a plain loop of the
formula of section 5 and against torch's four passes (the same bits), and its bf16 copies
against torch's own rounding."""

import pytest
import torch

from alexnet.kernels.update import paper_sgd_, updatable

LR, MOMENTUM, DECAY = 0.01, 0.9, 5e-4


def naive_update(w, g, v, lr=LR, momentum=MOMENTUM, decay=DECAY):
    """v <- momentum v - decay lr w - lr g; w <- w + v, element by element in Python floats."""
    w_out, v_out = [], []
    for wi, gi, vi in zip(
        w.flatten().tolist(), g.flatten().tolist(), v.flatten().tolist(), strict=True
    ):
        vi = momentum * vi - decay * lr * wi - lr * gi
        v_out.append(vi)
        w_out.append(wi + vi)
    shape = w.shape
    return (torch.tensor(w_out, dtype=torch.float64).reshape(shape),
            torch.tensor(v_out, dtype=torch.float64).reshape(shape))  # fmt: skip


def _tensors(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype) for _ in range(3)]


# sizes across the kernel's chunks of 2048 elements: less than one, several and a remainder
@pytest.mark.parametrize("shape", [(7,), (96, 3, 11, 11), (5000,)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_update_equals_the_formula(shape, dtype):
    w, g, v = _tensors(shape, dtype)
    want_w, want_v = naive_update(w, g, v)
    paper_sgd_(w, g, v, LR, MOMENTUM, DECAY)
    # float64: as exact as the loop; float32: each of the 5 operations rounded once
    tol = 1e-15 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(w.double(), want_w, rtol=tol, atol=tol)
    torch.testing.assert_close(v.double(), want_v, rtol=tol, atol=tol)


# sizes around the vector widths and the chunks; with and without weight decay
@pytest.mark.parametrize("n", [1, 15, 17, 2047, 2049, 40_003])
@pytest.mark.parametrize("decay", [DECAY, 0.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_update_gives_the_bits_of_torchs_four_passes(n, decay, dtype):
    w, g, v = _tensors((n,), dtype, seed=n)
    ws, gs, vs = [w.clone()], [g.clone()], [v.clone()]
    torch._foreach_mul_(vs, MOMENTUM)
    if decay:
        torch._foreach_add_(vs, ws, alpha=-decay * LR)
    torch._foreach_add_(vs, gs, alpha=-LR)
    torch._foreach_add_(ws, vs)
    paper_sgd_(w, g, v, LR, MOMENTUM, decay)
    assert torch.equal(w, ws[0]) and torch.equal(v, vs[0])


def test_bf16_gradient_is_widened_exactly_and_the_copy_rounds_as_torch():
    w, g, v = _tensors((64, 5, 3, 3), torch.float32, seed=1)
    w, v = (t.contiguous(memory_format=torch.channels_last) for t in (w, v))
    g16 = g.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    copy = torch.empty_like(w, dtype=torch.bfloat16)
    want_w, want_v = naive_update(w, g16.double(), v)
    paper_sgd_(w, g16, v, LR, MOMENTUM, DECAY, copy)
    torch.testing.assert_close(w.double(), want_w, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(v.double(), want_v, rtol=2e-6, atol=2e-6)
    assert copy.stride() == w.stride()
    assert torch.equal(copy, w.to(torch.bfloat16))


def test_copy_rounds_ties_to_even_and_keeps_a_nan():
    # with v = 0 and nothing to learn the new w is the old: the copy is just w rounded.
    # 1 + 2^-8 lies halfway between two bf16 numbers (1 and 1 + 2^-7): to even, 1;
    # 1 + 3 * 2^-8 halfway between 1 + 2^-7 and 1 + 2^-6: to even, 1 + 2^-6
    # (an infinite weight would not survive the formula: 0 x inf is NaN)
    values = [1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 3.0e38, -3.0e38, 1e-40, 0.0]
    w = torch.tensor(values)
    copy = torch.empty(len(values), dtype=torch.bfloat16)
    paper_sgd_(w, torch.zeros_like(w), torch.zeros_like(w), 0.0, MOMENTUM, 0.0, copy)
    assert copy[:3].tolist() == [1.0, 1 + 2**-6, -1.0]
    torch_rounded = torch.tensor(values).to(torch.bfloat16)
    assert torch.equal(copy.view(torch.int16), torch_rounded.view(torch.int16))
    nan = torch.tensor([float("nan"), 1.0])
    copy = torch.empty(2, dtype=torch.bfloat16)
    paper_sgd_(nan, torch.zeros(2), torch.zeros(2), 0.0, MOMENTUM, 0.0, copy)
    assert copy[0].isnan() and copy[1] == 1.0


def test_tensors_it_cannot_take_are_refused():
    w = torch.zeros(4, 6)
    assert updatable(w, torch.zeros(4, 6), torch.zeros(4, 6))
    assert not updatable(w, torch.zeros(6, 4).t(), torch.zeros(4, 6))  # another layout
    assert not updatable(w, torch.zeros(4, 6), torch.zeros(4, 6, dtype=torch.float64))
    assert not updatable(w[:, ::2], torch.zeros(4, 3)[:, :], torch.zeros(4, 3))  # a gap
    assert not updatable(w.double(), torch.zeros(4, 6, dtype=torch.bfloat16), w.double())
    with pytest.raises(ValueError, match="dense CPU tensors"):
        paper_sgd_(w, torch.zeros(6, 4).t(), torch.zeros(4, 6), LR, MOMENTUM, DECAY)
