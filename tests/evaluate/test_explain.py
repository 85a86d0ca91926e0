"""Grad-CAM (`alexnet explain`) against answers computed another way."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet.evaluate.explain import explain, explainable, feature_layer, grad_cam
from alexnet.models.registry import create_model

from fixtures import cli, encode, photo, write


class GlobalPoolNet(nn.Module):
    """conv -> ReLU -> global average pooling -> linear: Zhou et al.'s CAM network, whose
    Grad-CAM is known in closed form."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


def test_grad_cam_of_a_global_pooling_network_is_its_class_activation_map():
    # y_c = sum_k w_ck mean_ij A_kij + b_c, so dy_c/dA_kij = w_ck / hw and alpha_k = w_ck / hw:
    # the map is ReLU(sum_k w_ck A_k) / hw, Zhou et al.'s CAM scaled
    torch.manual_seed(0)
    net = GlobalPoolNet().eval()
    x = torch.randn(2, 3, 6, 5)
    classes = torch.tensor([[0, 3], [4, 1]])
    copy = explainable(net)  # the ReLU out of place
    got = grad_cam(copy, x, copy.act, classes).numpy()
    with torch.no_grad():
        maps = F.relu(net.conv(x)).numpy().astype(np.float64)  # (2, 4, 6, 5)
    w = net.fc.weight.detach().numpy().astype(np.float64)  # (5, 4)
    for n in range(2):
        for j in range(2):
            cam = np.maximum(np.tensordot(w[classes[n, j]], maps[n], axes=1), 0) / (6 * 5)
            np.testing.assert_allclose(got[n, j], cam, rtol=1e-5, atol=1e-7)


def test_grad_cam_of_the_papers_network_equals_the_definition_written_out():
    # The network as it runs by default (in-place ReLUs, ReLU-LRN-pool fused on CPU), and the
    # definition by hand: conv5's rectified maps, the gradient of each class's logit
    torch.manual_seed(0)
    model = create_model("alexnet2012", num_classes=10, widths=(8, 16, 16, 16, 16),
                         fc_width=32, init="kaiming").eval()  # fmt: skip
    x = torch.randn(2, 3, 224, 224)
    classes, probabilities, got = explain(model, x, "conv5", top=2)

    m = model
    a = m.pool1(m.norm1(F.relu(m.conv1(x))))
    a = m.pool2(m.norm2(F.relu(m.conv2(a))))
    a5 = F.relu(m.conv5(F.relu(m.conv4(F.relu(m.conv3(a))))))
    logits = m.fc8(F.relu(m.fc7(F.relu(m.fc6(m.pool5(a5).flatten(1))))))
    torch.testing.assert_close(probabilities, torch.softmax(logits, 1).topk(2).values)
    for n in range(2):
        for j in range(2):
            (grad,) = torch.autograd.grad(logits[n, classes[n, j]], a5, retain_graph=True)
            alpha = grad[n].mean(dim=(1, 2))  # (16,)
            cam = F.relu((alpha[:, None, None] * a5[n]).sum(0))  # (13, 13)
            cam = F.interpolate(cam[None, None], size=(224, 224), mode="bilinear")[0, 0]
            torch.testing.assert_close(got[n, j], cam.detach(), rtol=1e-4, atol=1e-6)
    assert got.abs().sum() > 0
    # the network itself is left as it was
    assert model.fuse and model.act1.inplace


def test_layer_names_are_the_papers_and_unknown_ones_are_listed():
    model = create_model("alexnet2012", num_classes=10)
    assert feature_layer(model, "conv5") is model.act5
    assert feature_layer(model, "pool2") is model.pool2
    with pytest.raises(ValueError, match=r"no layer 'conv9'.*pool5"):
        feature_layer(model, "conv9")


def test_explain_command_writes_pictures_maps_and_a_record(debug_run, tmp_path):
    for k in range(2):
        write(tmp_path / "in" / f"p{k}.jpg", encode(photo(k)))
    out = tmp_path / "cams"
    done = cli("explain", tmp_path / "in", "--checkpoint", debug_run, "--out", out,
               "--top", "2", "--layer", "conv2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "explain.json").read_text())
    assert [r["layer"] for r in record["images"]] == ["conv2", "conv2"]
    for k in range(2):
        maps = np.load(out / f"p{k}-gradcam.npy")
        assert maps.shape == (2, 224, 224) and maps.dtype == np.float32 and (maps >= 0).all()
        assert (out / f"p{k}-gradcam.png").stat().st_size > 5_000
    bad = cli("explain", tmp_path / "in", "--checkpoint", debug_run, "--out", out,
              "--layer", "fc9")  # fmt: skip
    assert bad.returncode == 2 and "no layer 'fc9'" in bad.stderr
