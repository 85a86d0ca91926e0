"""The Open Inference Protocol on /v2: spoken to by the real `tritonclient` (binary tensors,
its default, and JSON), its answers against the package's own network on the same input,
and its refusals as the protocol says ({"error": ...}, 400, or 404 for another model)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from alexnet.serve.protocol import ProtocolError, pack_bytes, read_request, unpack_bytes

from wire import request

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

NAME = "alexnet2012"


@pytest.fixture(scope="module")
def reference(served):
    """The package's network in fp32, as `alexnet.load` gives it, and its record."""
    import alexnet

    model, record = alexnet.load(served)
    return model.eval(), record


@pytest.fixture(scope="module")
def client(server):
    import tritonclient.http as triton

    with triton.InferenceServerClient(f"127.0.0.1:{server.port}", network_timeout=120) as c:
        yield c


def _views(record, n: int, seed: int = 0) -> np.ndarray:
    p = record.preprocessing
    generator = np.random.default_rng(seed)
    return generator.normal(0, 1, (n, p.channels, p.crop_size, p.crop_size)).astype(np.float32)


def _expected_logits(reference, views: np.ndarray) -> np.ndarray:
    model, _ = reference
    with torch.no_grad():
        return model(torch.from_numpy(views)).numpy()


def test_health_server_and_model_metadata_as_tritonclient_reads_them(client, reference):
    _, record = reference
    p = record.preprocessing
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
    server = client.get_server_metadata()
    assert server["name"] == "alexnet" and "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata(NAME)
    assert meta["name"] == NAME and meta["versions"] == ["1"] and meta["platform"] == "pytorch"
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert inputs["input"] == {"name": "input", "datatype": "FP32",
                               "shape": [-1, p.channels, p.crop_size, p.crop_size]}  # fmt: skip
    assert inputs["image"]["datatype"] == "BYTES"
    classes = len(record.classes.names)
    assert {o["name"]: o["shape"] for o in meta["outputs"]} == {
        "logits": [-1, classes], "probabilities": [-1, classes]}  # fmt: skip
    assert meta["parameters"]["runtime"] == "torch"
    assert not client.is_model_ready("resnet50")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_logits_equal_the_packages_on_the_same_views(client, reference, binary):
    import tritonclient.http as triton

    views = _views(reference[1], 3, seed=int(binary))
    given = triton.InferInput("input", list(views.shape), "FP32")
    given.set_data_from_numpy(views, binary_data=binary)
    asked = [
        triton.InferRequestedOutput(n, binary_data=binary) for n in ("logits", "probabilities")
    ]
    result = client.infer(NAME, [given], outputs=asked, request_id="r-7")
    logits, probs = result.as_numpy("logits"), result.as_numpy("probabilities")
    expected = _expected_logits(reference, views)
    assert logits.shape == expected.shape and logits.dtype == np.float32
    assert np.allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    softmax = np.exp(expected - expected.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    assert np.allclose(probs, softmax, atol=1e-5)
    assert result.get_response()["id"] == "r-7"


def test_version_one_is_the_model_and_other_versions_are_not(client, reference):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    views = _views(reference[1], 1, seed=5)
    given = triton.InferInput("input", list(views.shape), "FP32")
    given.set_data_from_numpy(views)
    one = client.infer(NAME, [given], model_version="1").as_numpy("logits")
    assert np.allclose(one, _expected_logits(reference, views), rtol=1e-4, atol=1e-4)
    with pytest.raises(InferenceServerException, match="version 1 only"):
        client.infer(NAME, [given], model_version="2")
    with pytest.raises(InferenceServerException, match="no model 'resnet50'"):
        client.infer("resnet50", [given])


def test_classification_extension_gives_the_top_k_as_triton_writes_them(client, reference):
    import tritonclient.http as triton

    _model, record = reference
    views = _views(record, 2, seed=3)
    given = triton.InferInput("input", list(views.shape), "FP32")
    given.set_data_from_numpy(views)
    for binary in (True, False):
        asked = triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)
        rows = client.infer(NAME, [given], outputs=[asked]).as_numpy("probabilities")
        assert rows.shape == (2, 3)
        logits = _expected_logits(reference, views)
        for row, expected in zip(rows, logits, strict=True):
            top = np.argsort(-expected)[:3]
            parsed = [(r.decode() if isinstance(r, bytes) else r).split(":", 2) for r in row]
            assert [int(i) for _, i, _ in parsed] == list(top)
            assert [label for *_, label in parsed] == [record.classes.names[i] for i in top]
            scores = np.array([float(s) for s, _, _ in parsed])
            assert np.all(np.diff(scores) <= 0) and np.all((scores >= 0) & (scores <= 1))


def test_photos_as_bytes_answer_what_v1_answers(client, server, photos):
    import tritonclient.http as triton

    from wire import predict

    data = [p.read_bytes() for p in photos[:3]]
    given = triton.InferInput("image", [3], "BYTES")
    given.set_data_from_numpy(np.array(data, dtype=np.object_))
    for views in ("center", "ten-crop"):
        result = client.infer(NAME, [given], parameters={"views": views},
                              outputs=[triton.InferRequestedOutput("probabilities")])  # fmt: skip
        probs = result.as_numpy("probabilities")
        for photo, row in zip(data, probs, strict=True):
            answer = predict(server.port, photo, f"?top=3&views={views}")[2]
            assert list(np.argsort(-row)[:3]) == [r["class"] for r in answer["top"]]
            got = row[[r["class"] for r in answer["top"]]]
            assert np.allclose(got, [r["probability"] for r in answer["top"]], atol=1e-5)


def test_json_body_with_base64_photos(server, photos):
    data = photos[0].read_bytes()
    photo = {"name": "image", "datatype": "BYTES", "shape": [1],
             "data": [base64.b64encode(data).decode()]}  # fmt: skip
    top1 = {"name": "probabilities", "parameters": {"classification": 1}}
    body = {"inputs": [photo], "outputs": [top1]}
    status, _, answer = request(server.port, "POST", f"/v2/models/{NAME}/infer",
                                json.dumps(body).encode(),
                                {"Content-Type": "application/json"})  # fmt: skip
    assert status == 200, answer
    from wire import predict

    top = predict(server.port, data, "?top=1")[2]["top"][0]
    score, index, label = answer["outputs"][0]["data"][0].split(":", 2)
    assert (int(index), label) == (top["class"], top["name"])
    assert abs(float(score) - top["probability"]) < 1e-5


def _infer(port, document, binary: bytes = b"", headers=None):
    head = json.dumps(document).encode()
    extra = {"Inference-Header-Content-Length": str(len(head))} if binary else {}
    return request(port, "POST", f"/v2/models/{NAME}/infer", head + binary,
                   {**extra, **(headers or {})})  # fmt: skip


def _view_input(record, n=1, **fields):
    p = record.preprocessing
    spec = {"name": "input", "datatype": "FP32", "shape": [n, p.channels, p.crop_size,
                                                           p.crop_size]}  # fmt: skip
    return {**spec, **fields}


def test_bad_requests_are_refused_as_the_protocol_says(server, reference):
    _, record = reference
    p = record.preprocessing
    size = p.channels * p.crop_size**2
    zeros = [0.0] * size
    cases = {
        "not json": (b"{", None, "not JSON"),
        "no inputs": ({"outputs": []}, None, "exactly one input"),
        "two inputs": ({"inputs": [_view_input(record, data=zeros)] * 2}, None, "exactly one"),
        "unknown input": (
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [0]}]},
            None,
            "no input named 'x'",
        ),
        "wrong datatype": (
            {"inputs": [_view_input(record, datatype="INT8", data=zeros)]},
            None,
            "is FP32, not 'INT8'",
        ),
        "wrong shape": (
            {"inputs": [{**_view_input(record, data=zeros), "shape": [1, 3, 5, 5]}]},
            None,
            "has shape",
        ),
        "shape not the data": (
            {"inputs": [_view_input(record, 2, data=zeros)]},
            None,
            "data holds",
        ),
        "negative size": (
            {"inputs": [{**_view_input(record), "shape": [-1, 1, 2, 2], "data": zeros}]},
            None,
            "whole number",
        ),
        "strings as numbers": (
            {"inputs": [_view_input(record, data=["a"] * size)]},
            None,
            "not numbers",
        ),
        "10,000 views": ({"inputs": [_view_input(record, 10_000, data=[])]}, None, "1 to 64 views"),
        "10,000 photos": (
            {
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "BYTES",
                        "shape": [10_000],
                        "data": ["AA=="] * 10_000,
                    }
                ]
            },
            None,
            "1 to 64 photos",
        ),
        "not base64": (
            {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]},
            None,
            "not base64",
        ),
        "not a photo": (
            {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["AAAA"]}]},
            None,
            "cannot use image 0",
        ),
        "unknown output": (
            {"inputs": [_view_input(record, data=zeros)], "outputs": [{"name": "fc7"}]},
            None,
            "no output named",
        ),
        "bad classification": (
            {
                "inputs": [_view_input(record, data=zeros)],
                "outputs": [{"name": "logits", "parameters": {"classification": "3"}}],
            },
            None,
            "classification must be",
        ),
        "bad views": (
            {"inputs": [_view_input(record, data=zeros)], "parameters": {"views": "five"}},
            None,
            "views must be",
        ),
    }
    for name, (document, _, message) in cases.items():
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        status, _, answer = request(server.port, "POST", f"/v2/models/{NAME}/infer", body)
        assert status == 400, (name, status, answer)
        assert set(answer) == {"error"} and message in answer["error"], (name, answer)
    # The binary extension's lengths.
    views = np.zeros((1, p.channels, p.crop_size, p.crop_size), np.float32).tobytes()
    spec = _view_input(record, parameters={"binary_data_size": len(views)})
    binary_cases = {
        "size past the body": (
            {"inputs": [{**spec, "parameters": {"binary_data_size": 10**9}}]},
            views,
            "binary_data_size is",
        ),
        "bytes left over": ({"inputs": [spec]}, views + b"xx", "the inputs say"),
        "size not the shape": (
            {"inputs": [{**spec, "parameters": {"binary_data_size": 8}}]},
            views[:8],
            "binary_data_size says 8",
        ),
    }
    for name, (document, binary, message) in binary_cases.items():
        status, _, answer = _infer(server.port, document, binary)
        assert status == 400 and message in answer["error"], (name, answer)
    head = json.dumps({"inputs": [spec]}).encode()
    for header in ("-4", "x", str(len(head) + len(views) + 1), "0"):
        length = {"Inference-Header-Content-Length": header}
        status, _, answer = request(server.port, "POST", f"/v2/models/{NAME}/infer",
                                    head + views, length)  # fmt: skip
        assert status == 400 and "Inference-Header-Content-Length" in answer["error"], answer
    status, _, answer = request(server.port, "GET", "/v2/models/resnet50")
    assert status == 404 and set(answer) == {"error"}
    status, _, answer = request(server.port, "GET", "/v2/nothing")
    assert status == 404 and set(answer) == {"error"}
    assert server.healthy()


def test_bytes_elements_round_trip_and_cut_lengths_are_refused():
    elements = [b"", b"a", bytes(range(256)) * 3]
    assert unpack_bytes(pack_bytes(elements)) == elements
    packed = pack_bytes([b"abcdef"])
    for cut in (packed[:2], packed[:7]):
        with pytest.raises(ProtocolError, match=r"cut short|are left"):
            unpack_bytes(cut)


def test_binary_and_json_requests_read_the_same_tensor():
    views = np.arange(2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3) / 7
    spec = {"name": "input", "datatype": "FP32", "shape": [2, 1, 3, 3]}
    as_json = json.dumps({"inputs": [{**spec, "data": views.tolist()}]}).encode()
    head = json.dumps({"inputs": [{**spec, "parameters": {
        "binary_data_size": views.nbytes}}]}).encode()  # fmt: skip
    a = read_request(as_json, None, (1, 3, 3), 64)
    b = read_request(head + views.astype("<f4").tobytes(), str(len(head)), (1, 3, 3), 64)
    assert np.array_equal(a.tensor, views) and np.array_equal(b.tensor, views)
    assert [o.name for o in a.outputs] == ["logits", "probabilities"]


def test_the_runtime_is_named_on_v1_and_v2(served):
    from alexnet.serve.traffic import Server

    with Server(served, "--runtime", "openvino", "--model-name", "fm") as running:
        status, _, meta = request(running.port, "GET", "/v2/models/fm")
        assert status == 200 and meta["platform"] == "openvino"
        assert meta["parameters"]["runtime"] == "openvino"
        assert request(running.port, "GET", "/v1/model")[2]["runtime"] == "openvino"
        assert request(running.port, "GET", f"/v2/models/{NAME}")[0] == 404
