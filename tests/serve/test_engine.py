"""The engine behind the server and its micro-batcher, without HTTP."""

from __future__ import annotations

import asyncio

import pytest
import torch

from alexnet.data.images import BadImage
from alexnet.serve.batcher import Batcher
from alexnet.serve.engine import Engine

from fixtures import encode, photo


class Recording:
    """An engine that records the batches it is given and answers each photo with the sum
    of its views (so a mixed-up answer shows)."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail

    def logits(self, batches):
        if self.fail:
            raise RuntimeError("the network broke")
        self.batches.append([len(b) for b in batches])
        return [b.sum(0) for b in batches]


async def _submit_together(batcher: Batcher, sizes: list[int]):
    batcher.start()
    try:
        items = [torch.full((n, 2), float(i)) for i, n in enumerate(sizes)]
        return items, await asyncio.gather(
            *(batcher.submit(x) for x in items), return_exceptions=True
        )
    finally:
        await batcher.stop()


def test_requests_waiting_together_share_batches_up_to_the_maximum():
    engine = Recording()
    items, out = asyncio.run(_submit_together(Batcher(engine, max_batch=5), [1] * 8))
    assert engine.batches == [[1] * 5, [1] * 3]
    for x, answer in zip(items, out, strict=True):
        assert torch.equal(answer, x.sum(0))  # each caller gets its own photo's answer


def test_a_request_larger_than_the_maximum_goes_alone():
    engine = Recording()
    asyncio.run(_submit_together(Batcher(engine, max_batch=4), [1, 10, 1, 1]))
    assert engine.batches == [[1], [10], [1, 1]]


def test_a_failing_network_fails_every_caller_of_its_batch():
    _, out = asyncio.run(_submit_together(Batcher(Recording(fail=True), max_batch=8), [1, 1, 1]))
    assert all(isinstance(e, RuntimeError) and "broke" in str(e) for e in out)


def test_callers_who_gave_up_are_dropped_before_the_batch_runs():
    engine = Recording()

    async def scenario():
        batcher = Batcher(engine, max_batch=8, max_wait=0.2, preparing=lambda: 1)
        batcher.start()
        try:
            gone = asyncio.ensure_future(batcher.submit(torch.zeros(1, 2)))
            await asyncio.sleep(0.01)
            gone.cancel()  # its caller timed out while the batch waited for more
            return await batcher.submit(torch.ones(3, 2))
        finally:
            await batcher.stop()

    answer = asyncio.run(scenario())
    assert engine.batches == [[3]] and torch.equal(answer, torch.full((2,), 3.0))


def test_a_batch_waits_for_requests_on_their_way_but_not_past_the_maximum_wait():
    engine = Recording()

    async def scenario():
        preparing = {"n": 1}
        batcher = Batcher(engine, max_batch=8, max_wait=5.0, preparing=lambda: preparing["n"])
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(torch.zeros(1, 2)))
            await asyncio.sleep(0.05)
            assert engine.batches == []  # one more is being decoded: the batch waits
            preparing["n"] = 0
            second = asyncio.ensure_future(batcher.submit(torch.zeros(1, 2)))
            await asyncio.gather(first, second)
        finally:
            await batcher.stop()

    asyncio.run(scenario())
    assert engine.batches == [[1, 1]]


@pytest.fixture(scope="module")
def engine(served):
    return Engine(str(served))


def test_only_the_webs_image_formats_are_decoded(engine):
    assert engine.prepare(encode(photo(1), "PNG")).views.shape[0] == 1
    assert engine.prepare(encode(photo(1), "PNG"), "ten-crop").views.shape[0] == 10
    with pytest.raises(BadImage, match="accepted format"):
        engine.prepare(encode(photo(1), "TIFF"))


def test_onnx_file_serves_the_same_probabilities(engine, served, tmp_path):
    from alexnet.export.onnx import export_onnx
    from alexnet.models import checkpoint as ckpt

    path = export_onnx(ckpt.load(served), tmp_path / "debug.onnx")
    onnx = Engine(str(path))
    assert onnx.runtime == "onnxruntime" and onnx.describe()["explain"] is False
    assert onnx.describe()["classes"] == engine.describe()["classes"]
    data = encode(photo(2), "PNG")
    ours = engine.probabilities([engine.prepare(data, "ten-crop").views])[0]
    theirs = onnx.probabilities([onnx.prepare(data, "ten-crop").views])[0]
    assert torch.allclose(ours, theirs, atol=1e-5)
    with pytest.raises(ValueError, match="weights"):
        onnx.explain(onnx.prepare(data))


def test_an_index_of_another_network_is_refused(served, fc7_folder, tmp_path):
    saved = torch.load(next(fc7_folder.glob("fc7-train-*.pt")), weights_only=True)
    saved["features"] = saved["features"].flip(0)  # the vectors of other images
    torch.save(saved, tmp_path / "fc7-train-160.pt")
    with pytest.raises(ValueError, match="another network"):
        Engine(str(served), index=str(tmp_path))
    assert Engine(str(served), index=str(fc7_folder)).index is not None


def test_an_imported_torchvision_checkpoint_serves_torchvisions_probabilities(tmp_path):
    from alexnet.models import checkpoint as ckpt
    from alexnet.models.weights import torchvision_checkpoint

    from references import torchvision_forward, torchvision_state_dict

    state = torchvision_state_dict()
    ckpt.save(tmp_path / "tv.pt", torchvision_checkpoint(state))
    served = Engine(str(tmp_path / "tv.pt"))
    prepared = served.prepare(encode(photo(4, (320, 240)), "JPEG"))
    with torch.no_grad():
        expected = torch.softmax(torchvision_forward(state, prepared.views), dim=1)[0]
    assert torch.allclose(served.probabilities([prepared.views])[0], expected, atol=1e-6)
    assert served.describe()["classes"][1]["name"].startswith("goldfish")


def test_a_safetensors_export_serves_what_its_checkpoint_does(engine, served, tmp_path):
    from alexnet.models import checkpoint as ckpt
    from alexnet.models.tensorfile import save_weights

    save_weights(ckpt.load(served), tmp_path / "debug.safetensors")
    exported = Engine(str(tmp_path / "debug.safetensors"))
    data = encode(photo(5), "PNG")
    a = engine.probabilities([engine.prepare(data).views])[0]
    b = exported.probabilities([exported.prepare(data).views])[0]
    assert torch.equal(a, b)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_each_runtime_serves_the_same_logits(engine, served, runtime):
    """`alexnet serve --runtime`: the checkpoint exported to ONNX on start and run by the
    runtime: top-5 the same, logits within 1e-4 of PyTorch's in fp32."""
    other = Engine(str(served), runtime=runtime)
    assert other.describe()["runtime"] == runtime and other.session is not None
    views = torch.cat([engine.prepare(encode(photo(i), "PNG"), "ten-crop").views
                       for i in range(3)])  # fmt: skip
    ours, theirs = engine.logits([views])[0], other.logits([views])[0]
    scale = ours.abs().max()
    assert torch.allclose(theirs, ours, rtol=1e-4, atol=1e-4 * scale)
    assert torch.equal(ours.topk(5).indices, theirs.topk(5).indices)


def test_devices_the_server_cannot_use_are_refused_in_one_line(served):
    with pytest.raises(ValueError, match="is not a device"):
        Engine(str(served), device="gpu0")
    with pytest.raises(ValueError, match="runs on the CPU"):
        Engine(str(served), runtime="onnxruntime", device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            Engine(str(served), device="cuda")
    with pytest.raises(ValueError, match="cpu or cuda"):
        Engine(str(served), device="meta")


def test_the_batch_computing_is_counted_while_its_forward_pass_runs():
    seen = []

    class Watching(Recording):
        def logits(self, batches):
            seen.append(batcher.computing)
            return super().logits(batches)

    batcher = Batcher(Watching(), max_batch=3)
    asyncio.run(_submit_together(batcher, [1] * 5))
    assert seen == [3, 2] and batcher.computing == 0


@pytest.mark.parametrize(("inside", "computing", "status"), [(3, 3, 200), (3, 2, 200),
                                                             (3, 1, 503), (2, 0, 503)])  # fmt: skip
def test_the_queue_holds_the_requests_waiting_not_the_batch_computing(inside, computing, status):
    """--max-queue 2: a server with `inside` requests, `computing` of them in the forward
    pass, lets the next one in while fewer than 2 wait."""
    from alexnet.serve.admission import Admission
    from alexnet.serve.app import Limits
    from alexnet.serve.metrics import Metrics

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    door = Admission(app, Limits(max_queue=2), Metrics(), {"inside": inside},
                     computing=lambda: computing)  # fmt: skip
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/v1/predict",
             "headers": [(b"content-type", b"image/png")]}  # fmt: skip
    asyncio.run(door(scope, receive, send))
    assert sent[0]["status"] == status
