"""The fast paths (#5) against the paper's formula and torch's own layers.

`alexnet.kernels.lrn` (the LRN with its closed-form gradient, as a CPU kernel, as Triton kernels
run here by Triton's CPU interpreter, and as torch operations) and `alexnet.kernels.fused` (ReLU,
LRN and max-pooling in one kernel) must compute what the naive loop of the paper's formula
and torch's relu and max_pool2d compute, forward and backward, at tower edges and channel
edges, in float64 exactly and in bf16 within rounding.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from alexnet import create_model
from alexnet.kernels.fused import relu_lrn_pool
from alexnet.nn.block import fusable
from alexnet.nn.lrn import local_response_norm

from references import activations, naive_lrn

BACKENDS = ("kernel", "torch", "triton")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "size, beta, groups, channels",
    [(5, 0.75, 2, 12), (5, 0.75, 1, 7), (3, 0.6, 2, 8), (7, 0.75, 1, 9), (1, 0.75, 3, 6)],
)
def test_lrn_forward_equals_naive_loop(backend, size, beta, groups, channels):
    a = activations(2, channels, 3, 4, seed=size + channels)
    ours = local_response_norm(a, size, 1e-4, beta, 2.0, groups, backend=backend)
    assert torch.allclose(ours, naive_lrn(a, size, 1e-4, beta, 2.0, groups), rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("beta", [0.75, 0.6])
def test_lrn_closed_form_gradient_passes_gradcheck(backend, beta):
    # Large activations, so that alpha * sum is not small next to k and every term counts.
    a = (torch.randn(2, 8, 3, 2, dtype=torch.float64) * 60).requires_grad_()
    fn = lambda t: local_response_norm(t, 5, 1e-4, beta, 2.0, 2, backend=backend)  # noqa: E731
    # Triton's interpreter takes a fraction of a second a launch: the full Jacobian's 192
    # launches become 2 with fast mode (the gradient against random projections).
    assert torch.autograd.gradcheck(fn, (a,), fast_mode=backend == "triton")


@pytest.mark.parametrize("backend", BACKENDS)
def test_lrn_gradient_equals_autograd_through_naive_loop(backend):
    a = activations(2, 10, 2, 3, seed=7).requires_grad_()
    b = a.detach().clone().requires_grad_()
    weights = torch.randn(2, 10, 2, 3, dtype=torch.float64)
    (local_response_norm(a, groups=2, backend=backend) * weights).sum().backward()
    (naive_lrn(b, groups=2) * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lrn_bf16_is_within_one_rounding_of_float64(backend):
    a = activations(2, 16, 5, 5, seed=8)
    out = local_response_norm(a.bfloat16(), groups=2, backend=backend)
    assert out.dtype == torch.bfloat16
    exact = naive_lrn(a.bfloat16().double(), groups=2)  # the same bf16 inputs
    # One bf16 rounding (half an ulp, 2 ** -8 relative). Triton's CPU interpreter truncates to
    # bf16 where GPUs round to nearest, so there the bound is a whole ulp.
    ulps = 1.0 if backend == "triton" else 0.5
    assert torch.allclose(out.double(), exact, rtol=ulps * 2**-7, atol=0)


def test_lrn_kernel_refuses_non_cpu_and_unknown_backends():
    with pytest.raises(ValueError, match="auto, kernel, torch, triton"):
        local_response_norm(torch.ones(1, 4, 2, 2), backend="cuda")
    with pytest.raises(ValueError, match="CPU tensors"):
        local_response_norm(torch.ones(1, 4, 2, 2, device="meta"), backend="kernel")


def test_triton_lrn_takes_channels_last_maps_in_place():
    a = activations(2, 12, 3, 5, seed=9).float()
    grad = torch.randn(2, 12, 3, 5)
    outs = []
    for layout in (torch.contiguous_format, torch.channels_last):
        x = a.clone(memory_format=layout).requires_grad_()
        out = local_response_norm(x, groups=2, backend="triton")
        assert out.is_contiguous(memory_format=layout)
        out.backward(grad)
        outs.append((out, x.grad))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    reference = naive_lrn(a.double(), groups=2)
    assert torch.allclose(outs[0][0].double(), reference, rtol=1e-6, atol=0)


def test_triton_lrn_needs_a_gpu_or_the_interpreter(monkeypatch):
    import sys

    fresh = "alexnet.kernels.lrn_triton" not in sys.modules
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        local_response_norm(torch.ones(1, 4, 2, 2), backend="triton")
    # refused before Triton's kernels were defined: defined now, without the interpreter,
    # they would stay compiled for a GPU for every later test in this process
    assert not fresh or "alexnet.kernels.lrn_triton" not in sys.modules


def sequential(z, groups=2, pool=(3, 2), alpha=1e-4):
    """What the fused operation replaces: torch's relu, the naive LRN, torch's max_pool2d."""
    return F.max_pool2d(naive_lrn(F.relu(z), 5, alpha, 0.75, 2.0, groups), *pool)


#: The fused block's arguments for the paper's conv1 and conv2 (the kernels take no defaults).
PAPER_BLOCK = dict(size=5, coefficient=1e-4, beta=0.75, k=2.0, groups=1, pool_size=3, pool_stride=2)


def fused(z, nhwc, **options):
    """relu_lrn_pool of z as laid out in memory: NCHW, or channels_last (converted inside)."""
    if nhwc:
        z = z.contiguous(memory_format=torch.channels_last)
    return relu_lrn_pool(z, **{**PAPER_BLOCK, **options})


LAYOUTS = pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "channels_last"])


def conv_outputs(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64) * 60


@pytest.mark.parametrize(
    "shape, groups, pool",
    [
        ((2, 8, 9, 7), 2, (3, 2)),
        ((1, 6, 8, 8), 1, (2, 2)),
        ((2, 4, 3, 3), 2, (3, 2)),
        # the pooling runs each window offset over the whole map as one flat run of columns,
        # so geometries where runs cross rows: stride 1, stride = size with a leftover column,
        # and wide odd maps
        ((1, 4, 11, 10), 2, (3, 1)),
        ((1, 4, 10, 11), 1, (3, 3)),
        ((1, 2, 5, 41), 1, (3, 2)),
    ],
)
@LAYOUTS
def test_fused_relu_lrn_pool_equals_layers_in_turn(shape, groups, pool, nhwc):
    z = conv_outputs(*shape, seed=sum(shape))
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    ours = fused(a, nhwc, groups=groups, pool_size=pool[0], pool_stride=pool[1])
    theirs = sequential(b, groups, pool)
    assert torch.allclose(ours, theirs, rtol=1e-12, atol=0)
    grad = torch.randn_like(ours)
    ours.backward(grad)
    theirs.backward(grad)
    assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14)


@LAYOUTS
def test_fused_gradient_passes_gradcheck(nhwc):
    z = conv_outputs(1, 6, 7, 5, seed=3).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: fused(t, nhwc, groups=2), (z,))


@LAYOUTS
def test_fused_routes_ties_to_the_first_maximum_as_torch_does(nhwc):
    # Equal positive values everywhere: every pooling window is a tie, and torch sends each
    # window's gradient to its first element in row-major order; overlapping windows share.
    z = torch.full((1, 4, 7, 7), 3.0, dtype=torch.float64)
    z[0, :, 1, 4] = 5.0  # one clear maximum, in two windows
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    grad = torch.arange(1.0, 1 + 4 * 9, dtype=torch.float64).reshape(1, 4, 3, 3)
    fused(a, nhwc, groups=2).backward(grad)
    sequential(b).backward(grad)
    assert torch.equal(a.grad != 0, b.grad != 0)
    assert torch.allclose(a.grad, b.grad, rtol=1e-12, atol=0)


@LAYOUTS
def test_fused_tie_across_columns_goes_to_the_earlier_row(nhwc):
    # Equal maxima at (row 1, col 0) and (row 0, col 1): row-major order picks (0, 1), which
    # a column-then-row search finds only if it prefers the earlier row on a tie.
    pattern = torch.tensor([[1.0, 5.0, 1.0], [5.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    z = pattern.expand(1, 4, 3, 3).double().contiguous()  # same values in every map
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    fused(a, nhwc, groups=2).sum().backward()
    sequential(b).sum().backward()
    assert torch.allclose(a.grad, b.grad, rtol=1e-12, atol=0)
    assert (a.grad[0, 0] != 0).nonzero().tolist() == [[0, 1]]


@LAYOUTS
def test_fused_windows_of_zeros_and_nans_behave_as_torch(nhwc):
    z = conv_outputs(1, 4, 7, 7, seed=5)
    z[0, 1, :3, :3] = -1.0  # a window that ReLU makes all zero
    z[0, 2, 5, 5] = float("nan")
    out = fused(z, nhwc, groups=2)
    reference = sequential(z)
    assert torch.equal(out.isnan(), reference.isnan())  # a NaN passes ReLU, LRN and pooling
    assert out.isnan().any()
    finite = ~reference.isnan()
    assert torch.allclose(out[finite], reference[finite], rtol=1e-12, atol=0)


@LAYOUTS
def test_fused_bf16_is_within_rounding_and_gives_bf16_gradients(nhwc):
    z = conv_outputs(2, 16, 13, 13, seed=6).bfloat16()
    a = z.clone().requires_grad_()
    b = z.double().requires_grad_()  # the same bf16 values, computed exactly
    ours, exact = fused(a, nhwc, groups=2), sequential(b)
    assert ours.dtype == torch.bfloat16
    assert torch.allclose(ours.double(), exact, rtol=2**-8, atol=0)
    grad = torch.randn_like(exact)
    ours.backward(grad.bfloat16())
    exact.backward(grad)
    assert a.grad.dtype == torch.bfloat16
    # Gradients: the bf16 rounding of the incoming gradient and of the result, relative to
    # the largest gradient (terms of both signs meet in the LRN's sum).
    error = (a.grad.double() - b.grad).abs().max() / b.grad.abs().max()
    assert error < 2**-6


@pytest.mark.parametrize("name", ["alexnet2012", "alexnet2012_1gpu"])
def test_model_fused_path_equals_unfused_forward_and_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, init="kaiming").double()
    x = torch.randn(2, 3, 227, 227, dtype=torch.float64)
    for block in ((model.act1, model.norm1, model.pool1), (model.act2, model.norm2, model.pool2)):
        assert fusable(x, *block)  # the comparison below is not vacuous
    outputs, grads = [], []
    for fuse in (True, False):
        model.fuse = fuse
        model.zero_grad()
        out = model.eval()(x)
        out.square().sum().backward()
        outputs.append(out)
        grads.append(model.conv1.weight.grad.clone())
    assert torch.allclose(outputs[0], outputs[1], rtol=1e-10, atol=1e-12)
    assert torch.allclose(grads[0], grads[1], rtol=1e-8, atol=1e-12)


def test_model_uses_the_layers_in_turn_while_one_has_a_hook():
    model = create_model("alexnet2012", num_classes=10, init="kaiming")
    seen = []
    model.norm1.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model.eval()(torch.randn(1, 3, 224, 224))
    assert seen == [torch.Size([1, 96, 55, 55])]
    assert fusable(torch.ones(1), model.act2, model.norm2, model.pool2)
    assert not fusable(torch.ones(1), model.act1, model.norm1, model.pool1)


# The kernels are custom operators, so torch.compile and export keep each as one operation.
# torch.library.opcheck tests an operator's schema, its output metadata without running it
# (what the compiler sees) against a real run, and its registered gradient.


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("backend", ["kernel", "triton"])
def test_lrn_operator_passes_opcheck(backend, dtype):
    x = activations(2, 8, 3, 4, seed=3).to(dtype).requires_grad_()
    args = (x, 5, 1e-4, 0.75, 2.0, 2, backend)
    torch.library.opcheck(torch.ops.alexnet.lrn.default, args, raise_exception=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_fused_operator_passes_opcheck(dtype):
    z = conv_outputs(2, 8, 9, 7, seed=4).to(dtype).requires_grad_()
    args = (z, 5, 1e-4, 0.75, 2.0, 2, 3, 2)
    torch.library.opcheck(torch.ops.alexnet.relu_lrn_pool.default, args, raise_exception=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_eager_calls_equal_the_operators_forward_and_backward(dtype):
    # In eager mode the kernels are called directly (lrn.call); the operators are what
    # torch.compile sees. Both must give the same bits.
    lrn = lambda t: local_response_norm(t, 5, 1e-4, 0.75, 2.0, 2, backend="kernel")  # noqa: E731
    lrn_op = lambda t: torch.ops.alexnet.lrn(t, 5, 1e-4, 0.75, 2.0, 2, "kernel")  # noqa: E731
    fused = lambda t: relu_lrn_pool(t, 5, 1e-4, 0.75, 2.0, 2, 3, 2)  # noqa: E731
    fused_op = lambda t: torch.ops.alexnet.relu_lrn_pool(t, 5, 1e-4, 0.75, 2.0, 2, 3, 2)  # noqa: E731
    for direct, op in ((lrn, lrn_op), (fused, fused_op)):
        z = conv_outputs(2, 8, 9, 7, seed=5).to(dtype)
        results = []
        for fn in (direct, op):
            x = z.clone().requires_grad_()
            out = fn(x)
            out.backward(torch.ones_like(out).cumsum(1))
            results.append((out, x.grad))
        for ours, theirs in zip(*results, strict=True):
            assert torch.equal(ours, theirs)


def test_an_eager_network_does_not_import_the_compiler():
    # An operator's first call imports torch._dynamo (1-2.5 s), which `alexnet eval` and
    # `predict` need not pay: the eager path calls the kernels directly.
    code = (
        "import sys, torch\n"
        "from alexnet import create_model\n"
        "model = create_model('alexnet2012', num_classes=10)\n"
        "model.train()(torch.randn(2, 3, 224, 224)).sum().backward()\n"
        "model.eval()(torch.randn(1, 3, 224, 224))\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "lrn-kernel"])
def test_model_compiles_on_cpu_as_one_graph_with_our_kernels(fuse):
    # fullgraph=True fails on any graph break; before the kernels were operators, dynamo
    # traced into numba and torch.compile(model) raised on CPU. aot_eager runs the captured
    # forward and backward graphs without generating code, so the check is quick.
    torch.manual_seed(0)
    model = create_model("alexnet2012", num_classes=10, init="kaiming", dropout=0.0).double()
    model.fuse = fuse
    x = torch.randn(2, 3, 227, 227, dtype=torch.float64)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    results = []
    for net in (compiled, model):
        model.zero_grad()
        out = net(x)
        out.square().sum().backward()
        results.append((out, model.conv1.weight.grad.clone(), model.conv2.weight.grad.clone()))
    for ours, eager in zip(*results, strict=True):
        assert torch.allclose(ours, eager, rtol=1e-10, atol=1e-12)
    torch._dynamo.reset()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_paths_equal_the_checked_paths():
    # In a process of its own without TRITON_INTERPRET, so Triton compiles for the GPU.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("cuda_checks.py")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_lrn_on_cuda_without_triton_falls_back_to_torch_and_says_so_once(monkeypatch):
    import logging

    import alexnet.kernels.lrn as lrn

    said = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = said.append
    logger = logging.getLogger("alexnet")
    monkeypatch.setattr(logger, "level", logging.INFO)
    logger.addHandler(handler)
    monkeypatch.setattr(lrn, "_triton_available", lambda: False)
    lrn._warn_no_triton.cache_clear()
    try:
        backends = [lrn._auto_backend(torch.device("cuda")) for _ in range(3)]
    finally:
        logger.removeHandler(handler)
        lrn._warn_no_triton.cache_clear()
    assert backends == ["torch"] * 3
    assert len(said) == 1 and "runs as torch operations" in said[0].getMessage()
    assert lrn._auto_backend(torch.device("cpu")) == "kernel"
