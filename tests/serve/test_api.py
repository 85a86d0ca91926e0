"""`alexnet serve`'s API: what it answers, against the package's other paths to the same
numbers, and its limits (413, 415, 400, 503, 504), each with a JSON body."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.serve.traffic import Server

from fixtures import bomb_png, cli, encode, photo
from wire import json_of, multipart, predict, raw, request, status_of

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_answer_is_what_alexnet_predict_says_for_the_same_file(server, served, photos):
    done = cli("predict", str(photos[0]), "--checkpoint", str(served), "--json", "--top", "10")
    assert done.returncode == 0, done.stderr
    expected = json.loads(done.stdout)[0]["top"]
    status, _, answer = predict(server.port, photos[0].read_bytes(), "?top=10")
    assert status == 200, answer
    assert [r["class"] for r in answer["top"]] == [r["class"] for r in expected]
    got = np.array([r["probability"] for r in answer["top"]])
    assert np.allclose(got, [r["probability"] for r in expected], atol=1e-6)
    assert answer["top"][0]["name"] == expected[0]["name"] and answer["views"] == "center"


def test_ten_crop_is_the_mean_of_the_ten_softmaxes(server, served, photos):
    import alexnet

    model, record = alexnet.load(served)
    views = record.transform(photos[1], views="ten-crop")
    assert views.shape[0] == 10
    with torch.no_grad():
        expected = torch.softmax(model(views), dim=1).mean(0)  # section 4.1's averaging
    status, _, answer = predict(server.port, photos[1].read_bytes(), "?views=ten-crop&top=10")
    assert status == 200, answer
    got = torch.zeros_like(expected)
    for row in answer["top"]:
        got[row["class"]] = row["probability"]
    assert torch.allclose(got, expected, atol=1e-6)


def test_multipart_and_raw_bytes_give_the_same_answer(server, photos):
    data = photos[2].read_bytes()
    body, kind = multipart({"file": ("../../etc/passwd", data)})
    a = request(server.port, "POST", "/v1/predict?top=3", body, {"Content-Type": kind})
    b = predict(server.port, data, "?top=3", kind="application/octet-stream")
    assert a[0] == b[0] == 200
    assert a[2]["top"] == b[2]["top"]


def test_concurrent_requests_share_a_batch_and_get_their_own_answers(server, photos):
    alone = [predict(server.port, p.read_bytes(), "?top=10")[2]["top"] for p in photos]
    before = request(server.port, "GET", "/healthz")[2]["batches"]
    answers = [None] * len(photos)
    start = threading.Barrier(len(photos))

    def send(i):
        start.wait()
        answers[i] = predict(server.port, photos[i].read_bytes(), "?top=10")

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(photos))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batches = request(server.port, "GET", "/healthz")[2]["batches"] - before
    assert all(a[0] == 200 for a in answers)
    assert batches < len(photos)  # some of them went through the network together
    for (_, _, got), expected in zip(answers, alone, strict=True):
        assert [r["class"] for r in got["top"]] == [r["class"] for r in expected]
        assert np.allclose([r["probability"] for r in got["top"]],
                           [r["probability"] for r in expected], atol=1e-5)  # fmt: skip


def _gradcam_by_hand(model, view: torch.Tensor, layer: str) -> tuple[int, np.ndarray]:
    """Grad-CAM (Selvaraju et al. 2017) written out: the top class's score, its gradient
    with respect to the layer's rectified maps, each map weighted by its gradient's mean, summed,
    ReLU, upsampled bilinearly to the view."""
    import copy

    net = copy.deepcopy(model).eval()
    if hasattr(net, "fuse"):
        net.fuse = False
    for module in net.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    kept = {}
    target = getattr(net, layer.replace("conv", "act"))  # the rectified maps of conv5
    target.register_forward_hook(lambda m, a, out: kept.__setitem__("maps", out))
    logits = net(view)
    chosen = int(logits.argmax())
    (grads,) = torch.autograd.grad(logits[0, chosen], kept["maps"])
    cam = torch.relu((grads.mean((2, 3), keepdim=True) * kept["maps"]).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, view.shape[-2:], mode="bilinear",
                                          align_corners=False)  # fmt: skip
    return chosen, cam[0, 0].detach().numpy()


def test_explain_is_grad_cam_computed_directly(server, served, photos):
    import base64
    import io

    import alexnet
    from alexnet.serve.pictures import overlay

    status, _, answer = predict(server.port, photos[3].read_bytes(), "?explain=true")
    assert status == 200, answer
    model, record = alexnet.load(served)
    view = record.transform(photos[3])[None]
    chosen, cam = _gradcam_by_hand(model, view, answer["explain"]["layer"])
    assert answer["explain"]["class"] == chosen == answer["top"][0]["class"]
    crop = record.preprocessing.center_picture(record.preprocessing.decode(photos[3]))
    expected = overlay(crop, cam).astype(int)
    uri = answer["explain"]["overlay"]
    assert uri.startswith("data:image/png;base64,")
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))).astype(int)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 2  # float sums in another order, then uint8


def test_neighbors_are_a_brute_force_search_of_fc7(server, served, store, photos):
    import alexnet
    from alexnet.data.store import Store

    status, _, answer = predict(server.port, photos[3].read_bytes(), "?neighbors=true")
    assert status == 200, answer
    model, record = alexnet.load(served)
    model.eval()
    train = Store(store).split("train")
    names = Store(store).class_names

    def fc7(views):
        with torch.no_grad():
            return model.forward_head(model.forward_features(views), pre_logits=True).numpy()

    query = fc7(record.transform(photos[3])[None])[0].astype(np.float64)
    base = fc7(torch.cat([record.preprocessing.views(np.asarray(train.images[i]))
                          for i in range(len(train))])).astype(np.float64)  # fmt: skip
    distances = [float(np.sqrt(((row - query) ** 2).sum())) for row in base]  # one at a time
    order = sorted(range(len(base)), key=lambda i: distances[i])[:8]
    rows = answer["neighbors"]
    assert len(rows) == 8
    got = [r["distance"] for r in rows]
    assert np.allclose(got, [distances[i] for i in order], rtol=1e-3, atol=1e-3)
    # ties aside, the same images, nearest first, with their own labels
    for row, i in zip(rows, order, strict=True):
        assert row["index"] == i or abs(distances[row["index"]] - distances[i]) < 1e-3
        assert row["name"] == names[int(train.labels[row["index"]])]


def test_model_describes_the_network_and_its_classes(server, store):
    from alexnet.data.store import Store

    status, _, model = request(server.port, "GET", "/v1/model")
    assert status == 200
    assert [c["name"] for c in model["classes"]] == Store(store).class_names
    assert model["network"] == "alexnet2012" and model["explain"] is True
    assert model["preprocessing"]["channels"] == 1
    assert model["neighbors"]["images"] == len(Store(store).split("train"))
    assert model["limits"]["max_body"] == 8 << 20


def test_openapi_page_is_served_from_this_machine(server):
    status, _, page = request(server.port, "GET", "/docs")
    assert status == 200 and "/static/swagger/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert request(server.port, "GET", "/static/swagger/swagger-ui-bundle.js")[0] == 200
    spec = request(server.port, "GET", "/openapi.json")[2]
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/jpeg" in body


def test_page_fetches_nothing_from_elsewhere(server):
    status, _, page = request(server.port, "GET", "/")
    assert status == 200
    assert "http://" not in page and "https://" not in page and "//cdn" not in page


@pytest.mark.parametrize(
    ("name", "data", "ok"),
    [
        ("jpeg", encode(photo(1)), True),
        ("webp", encode(photo(2), "WEBP"), True),
        ("bmp", encode(photo(3), "BMP"), True),
        ("gif", encode(photo(4).convert("P"), "GIF"), True),
        ("tiff", encode(photo(5), "TIFF"), False),
        ("html named .jpg", b"<!doctype html><html><body>hello</body></html>", False),
        ("bomb", bomb_png(), False),
        ("truncated", encode(photo(6))[:300], False),
    ],
)
def test_formats(server, name, data, ok):
    status, _, answer = predict(server.port, data, kind="image/jpeg")
    if ok:
        assert status == 200, answer
    else:
        assert status == 400 and "cannot use the image" in answer["error"], answer


def test_animated_gif_is_read_by_its_first_frame(server):
    frames = [Image.new("L", (64, 64), v) for v in (0, 255, 128)]
    buffer = __import__("io").BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    first = __import__("io").BytesIO()
    frames[0].save(first, "PNG")
    a = predict(server.port, buffer.getvalue(), "?top=10", kind="image/gif")[2]
    b = predict(server.port, first.getvalue(), "?top=10")[2]
    assert a["top"] == b["top"]


def test_declared_oversized_body_is_refused_before_it_is_sent(server):
    head = (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 104857600\r\n\r\n")  # fmt: skip
    start = time.perf_counter()
    answer = raw(server.port, head, timeout=10)  # not one byte of the body is sent
    assert time.perf_counter() - start < 5
    assert status_of(answer) == 413 and "the limit is 8,388,608" in json_of(answer)["error"]


def test_undeclared_oversized_body_is_cut_at_the_limit(server):
    chunk = b"x" * (1 << 20)
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(9)) + b"0\r\n\r\n"
    head = (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    answer = raw(server.port, head + body, timeout=20)
    assert status_of(answer) == 413 and "passed the limit" in json_of(answer)["error"]


def test_parameters_are_checked(server, photos):
    data = photos[0].read_bytes()
    for query in ("?top=0", "?top=x", "?views=five", "?explain=maybe"):
        status, _, answer = predict(server.port, data, query)
        assert status == 422 and query[1:].split("=")[0] in answer["error"], answer


@pytest.fixture(scope="module")
def tight(served):
    """One request inside at a time, answered within 2 s."""
    with Server(served, "--max-queue", "1", "--timeout", "2") as running:
        yield running


def _stalled_upload(port: int) -> socket.socket:
    """A request that is let in and then sends only half its body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                 b"Content-Length: 1000\r\n\r\n" + b"\x89PNG" + bytes(496))  # fmt: skip
    return sock


def test_full_server_refuses_at_once_and_slow_requests_time_out(tight, photos):
    stalled = _stalled_upload(tight.port)
    try:
        time.sleep(0.5)  # it is inside
        start = time.perf_counter()
        status, headers, answer = predict(tight.port, photos[0].read_bytes())
        assert status == 503 and "busy" in answer["error"] and headers["retry-after"] == "1"
        assert time.perf_counter() - start < 1.0
        answer = b""
        while part := stalled.recv(65536):  # until the server closes the connection
            answer += part
        assert status_of(answer) == 504
    finally:
        stalled.close()
    body = answer.partition(b"\r\n\r\n")[2]
    assert b"no answer within 2 s" in body
    assert predict(tight.port, photos[0].read_bytes())[0] == 200  # the slot is free again


def test_a_busy_server_keeps_the_connection_of_a_request_it_refuses(tight, photos):
    """A small body is read before the 503, so the client sends again on the same
    connection (a retry storm does not cost a new connection per refusal)."""
    import http.client

    stalled = _stalled_upload(tight.port)
    client = http.client.HTTPConnection("127.0.0.1", tight.port, timeout=30)
    try:
        time.sleep(0.5)  # it is inside, waiting for its body
        sockets = []
        for _ in range(2):
            client.request("POST", "/v1/predict", body=photos[0].read_bytes(),
                           headers={"Content-Type": "image/png"})  # fmt: skip
            answer = client.getresponse()
            assert answer.status == 503 and "busy" in json.loads(answer.read())["error"]
            assert answer.getheader("connection") != "close"
            sockets.append(client.sock)
        assert sockets[0] is not None and sockets[0] is sockets[1]  # not opened again
    finally:
        client.close()
        stalled.close()
