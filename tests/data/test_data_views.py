"""The paper's training and test views against naive references, and their determinism."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alexnet.data.augment import (
    LIGHTING,
    Crop,
    PCALighting,
    RandomCrop,
    center_crop,
    render,
    ten_crops,
)
from alexnet.data.dataset import StoreDataset
from alexnet.data.loader import make_loader
from alexnet.data.render import DeviceRenderer, ViewBatch

from fixtures import make_store


def naive_view(image, mean, crop, size, shift):
    """The paper's operations one at a time, in float64."""
    image, mean = image.astype(np.float64), mean.astype(np.float64)
    if crop.flip:
        image, mean = image[:, ::-1], mean[:, ::-1]
        left = image.shape[1] - size - crop.left  # the same patch, seen in the mirror
    else:
        left = crop.left
    patch = image[crop.top : crop.top + size, left : left + size]
    patch = patch - mean[crop.top : crop.top + size, left : left + size] + shift
    return patch.transpose(2, 0, 1)


def test_ten_crop_coordinates_match_the_hand_table():
    assert [(c.top, c.left, c.flip) for c in ten_crops(224, 256)] == [
        (0, 0, False),
        (0, 32, False),
        (32, 0, False),
        (32, 32, False),
        (16, 16, False),
        (0, 0, True),
        (0, 32, True),
        (32, 0, True),
        (32, 32, True),
        (16, 16, True),
    ]
    assert [(c.top, c.left) for c in ten_crops(227, 256)[:5]] == [
        (0, 0),
        (0, 29),
        (29, 0),
        (29, 29),
        (14, 14),
    ]
    assert center_crop(224, 256) == Crop(16, 16, False)


def test_a_flipped_crop_is_the_crop_of_the_flipped_image():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(1, 40, 40, 3), dtype=np.uint8)
    flipped_image = np.ascontiguousarray(image[:, :, ::-1])
    for top, left in [(0, 0), (3, 7), (8, 8)]:
        a = render(image, [0], [Crop(top, left, True)], 32)
        # in the mirrored image the same patch starts at 40 - 32 - left
        b = render(flipped_image, [0], [Crop(top, 40 - 32 - left, False)], 32)
        assert np.array_equal(a, b)
        assert np.array_equal(a[..., ::-1], render(image, [0], [Crop(top, left, False)], 32))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_render_equals_the_naive_operations(channels, channels_last):
    rng = np.random.default_rng(2)
    source = rng.integers(0, 256, size=(5, 48, 48, channels), dtype=np.uint8)
    mean = rng.uniform(0, 255, size=(48, 48, channels)).astype(np.float32)
    crops = [Crop(int(rng.integers(0, 9)), int(rng.integers(0, 9)), bool(k % 2)) for k in range(7)]
    index = rng.integers(0, 5, size=7)
    shift = rng.normal(0, 10, size=(7, channels)).astype(np.float32)
    out = render(source, index, crops, 40, mean, shift, channels_last)
    if channels_last:
        out = out.transpose(0, 3, 1, 2)
    for k in range(7):
        expected = naive_view(source[index[k]], mean, crops[k], 40, shift[k])
        assert np.allclose(out[k], expected, atol=1e-4)


def test_upscaled_views_equal_torch_interpolation_then_crop():
    rng = np.random.default_rng(3)
    source = rng.integers(0, 256, size=(3, 28, 28, 1), dtype=np.uint8)
    crops = [Crop(0, 0, False), Crop(32, 5, True), Crop(17, 32, False)]
    out = render(source, [0, 1, 2], crops, 224, view_size=256)
    big = F.interpolate(
        torch.from_numpy(source).permute(0, 3, 1, 2).double(),
        size=256,
        mode="bilinear",
        align_corners=False,
    ).numpy()
    for k, crop in enumerate(crops):
        patch = big[k, :, crop.top : crop.top + 224, crop.left : crop.left + 224]
        expected = patch[..., ::-1] if crop.flip else patch
        assert np.allclose(out[k], expected, atol=1e-3)


def test_crops_outside_the_image_are_refused():
    with pytest.raises(ValueError, match="does not fit"):
        render(np.zeros((1, 256, 256, 3), np.uint8), [0], [Crop(33, 0, False)], 224)


def test_random_crops_cover_every_position_uniformly():
    # 33 x 33 positions of a 224 patch in a 256 image, each as likely: chi-square tests of
    # each axis and of the positions together (a generator that never moved the left edge,
    # or favoured the center, fails them at p < 1e-10)
    from scipy.stats import chisquare

    crop, rng = RandomCrop(224, 256), np.random.default_rng(4)
    draws = [crop.draw(rng) for _ in range(40_000)]
    tops = np.bincount([d.top for d in draws], minlength=33)
    lefts = np.bincount([d.left for d in draws], minlength=33)
    both = np.bincount([33 * d.top + d.left for d in draws], minlength=33 * 33)
    assert len(tops) == len(lefts) == 33 and len(both) == 33 * 33
    for counts in (tops, lefts, both):
        assert chisquare(counts).pvalue > 1e-3
    assert abs(np.mean([d.flip for d in draws]) - 0.5) < 0.01


# The step m_i for eigenvalues 13,166, 1,251 and 283 (of 0-255 pixel values), by hand:
# released: their square roots; literal: the eigenvalues; fbresnet: lambda / 255.
STEPS = {
    "released": [114.74319151914854, 35.369478367654786, 16.822603841260722],
    "literal": [13_166.0, 1_251.0, 283.0],
    "fbresnet": [51.63137254901961, 4.905882352941177, 1.1098039215686275],
}


def test_every_lighting_reading_has_a_hand_computed_step():
    assert set(STEPS) == set(LIGHTING)


@pytest.mark.parametrize("scale", sorted(STEPS))
def test_pca_lighting_adds_the_papers_sum(scale):
    values = np.array([13_166.0, 1_251.0, 283.0])
    vectors = np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))[0]
    lighting = PCALighting(values, vectors, scale=scale)
    alphas = np.array([[0.1, -0.2, 0.05]])
    step = STEPS[scale]
    expected = sum(vectors[:, i] * alphas[0, i] * step[i] for i in range(3))
    assert np.allclose(lighting.shift(alphas)[0], expected, rtol=1e-12)
    # with the eigenvectors as the axes, the shift of each channel is a_i m_i
    axes = PCALighting(values, np.eye(3), scale=scale).shift(alphas)[0]
    assert np.allclose(axes, [0.1 * step[0], -0.2 * step[1], 0.05 * step[2]], rtol=1e-12)


def test_lighting_draws_have_the_papers_spread():
    lighting = PCALighting(np.ones(3), np.eye(3))
    rng = np.random.default_rng(6)
    draws = np.array([lighting.draw(rng) for _ in range(20_000)])
    assert np.allclose(draws.std(axis=0), 0.1, rtol=0.03)
    assert np.allclose(draws.mean(axis=0), 0.0, atol=0.003)


def find_view(difference: np.ndarray, view: np.ndarray, size: int = 224):
    """Search every crop position and reflection of `difference` (image minus mean image,
    (H, W, C)) for the one that `view` ((C, size, size)) is, up to one added value per
    channel. Returns (top, left, flip, added) or None."""
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, size, 24), rng.integers(0, size, 24)
    points = view[:, ys, xs].T  # (24, C)
    offsets = np.arange(difference.shape[0] - size + 1)
    found = []
    for flip in (False, True):
        columns = (size - 1 - xs) if flip else xs
        values = difference[offsets[:, None, None] + ys, offsets[None, :, None] + columns]
        residual = points - values  # (tops, lefts, 24, C): constant along the 24 points
        flat = np.argwhere((residual.std(axis=2) < 1e-3).all(axis=-1))
        found += [(int(t), int(x), flip, residual[t, x].mean(axis=0)) for t, x in flat]
    if len(found) != 1:
        return None
    top, left, flip, added = found[0]
    patch = difference[top : top + size, left : left + size]
    patch = patch[:, ::-1] if flip else patch
    assert np.allclose(view, patch.transpose(2, 0, 1) + added[:, None, None], atol=1e-3)
    return top, left, flip, added


def test_training_views_are_reflected_crops_minus_the_mean_plus_a_lighting_shift(tmp_path):
    # Independent of how the views draw their numbers: each view must be some 224 crop of
    # its 256 image, reflected or not, minus the same crop of the mean image, plus one
    # value per channel; that value, on the eigenvectors, must be a_i sqrt(lambda_i) with
    # a_i ~ N(0, 0.1); and the positions and reflections must vary
    store, images = make_store(tmp_path / "s")
    dataset = StoreDataset(store, "train", seed=7)
    mean = store.stats.mean_image.astype(np.float64)
    vectors, steps = store.stats.eigenvectors, np.sqrt(store.stats.eigenvalues)
    seen = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        batch, _ = dataset.__getitems__(list(range(len(images))))
        for k, view in enumerate(batch.numpy().astype(np.float64)):
            found = find_view(images[k].astype(np.float64) - mean, view)
            assert found is not None, (epoch, k)
            seen.append(found)
    alphas = np.array([(vectors.T @ added) / steps for *_, added in seen])
    assert np.abs(alphas).max() < 0.5 and 0.08 < alphas.std() < 0.12
    assert abs(alphas.mean()) < 0.03
    assert len({(t, x) for t, x, *_ in seen}) > 80  # of 96 views at 33 x 33 positions
    assert 0.3 < np.mean([flip for _, _, flip, _ in seen]) < 0.7


def test_views_depend_on_seed_epoch_and_index_only(tmp_path):
    store, _ = make_store(tmp_path / "s")
    dataset = StoreDataset(store, "train", seed=1)
    together, _ = dataset.__getitems__([2, 5, 11])
    alone, _ = dataset.__getitems__([11])
    assert torch.equal(together[2], alone[0])
    again = StoreDataset(store, "train", seed=1).__getitems__([2, 5, 11])[0]
    assert torch.equal(together, again)
    dataset.set_epoch(1)
    assert not torch.equal(dataset.__getitems__([2])[0][0], together[0])
    other_seed = StoreDataset(store, "train", seed=2).__getitems__([2])[0]
    assert not torch.equal(other_seed[0], together[0])


def test_distributed_ranks_see_what_one_process_sees(tmp_path):
    store, _ = make_store(tmp_path / "s")
    single = StoreDataset(store, "train", seed=3)
    single.set_epoch(2)
    reference = {}
    for images, labels in make_loader(single, batch_size=24):
        reference = {i: images[i] for i in range(len(labels))}
    seen = {}
    for rank in range(2):
        sampler = torch.utils.data.distributed.DistributedSampler(
            range(24), num_replicas=2, rank=rank, shuffle=True, seed=3
        )
        sampler.set_epoch(2)
        dataset = StoreDataset(store, "train", seed=3)
        dataset.set_epoch(2)
        indices = list(sampler)
        loader = make_loader(dataset, batch_size=5, sampler=sampler, num_workers=2 * rank)
        position = 0
        for images, _ in loader:
            for image in images:
                seen[indices[position]] = image
                position += 1
    assert sorted(seen) == list(range(24))
    assert all(torch.equal(seen[i], reference[i]) for i in range(24))


def test_ten_crop_and_center_test_views(tmp_path):
    store, images = make_store(tmp_path / "s")
    ten = StoreDataset(store, "val", views="ten-crop")
    batch, _ = ten.__getitems__([1])
    assert batch.shape == (1, 10, 3, 224, 224)
    mean = store.stats.mean_image
    for j, crop in enumerate(ten_crops(224, 256)):
        assert np.allclose(
            batch[0, j].numpy(), naive_view(images[1], mean, crop, 224, 0), atol=1e-3
        )
    center = StoreDataset(store, "val", views="center").__getitems__([1])[0]
    assert torch.equal(center[0], batch[0, 4])


def test_channels_last_batches_hold_the_same_values(tmp_path):
    store, _ = make_store(tmp_path / "s")
    plain = StoreDataset(store, "train").__getitems__([0, 1])[0]
    last = StoreDataset(store, "train", channels_last=True).__getitems__([0, 1])[0]
    assert last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain, last)


def test_small_stores_are_upscaled_to_the_view_size(tmp_path):
    store, images = make_store(tmp_path / "s", side=28, channels=1)
    assert store.view_size == 256
    batch, _ = StoreDataset(store, "val", views="center", subtract_mean=False).__getitems__([0])
    big = F.interpolate(
        torch.from_numpy(images[:1]).permute(0, 3, 1, 2).float(),
        size=256,
        mode="bilinear",
        align_corners=False,
    )
    assert torch.allclose(batch, big[..., 16:240, 16:240], atol=1e-3)


def test_bad_view_options_are_refused(tmp_path):
    store, _ = make_store(tmp_path / "s")
    with pytest.raises(ValueError, match="views must be"):
        StoreDataset(store, views="five-crop")
    with pytest.raises(ValueError, match="lighting must be"):
        StoreDataset(store, lighting="paper")
    with pytest.raises(ValueError, match="at most the view size"):
        StoreDataset(store, crop_size=300)
    with pytest.raises(IndexError):
        StoreDataset(store).__getitems__([24])


def test_upscaled_views_with_mean_and_lighting_in_both_layouts():
    rng = np.random.default_rng(5)
    source = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    mean = rng.uniform(0, 255, size=(256, 256, 3)).astype(np.float32)
    shift = rng.normal(0, 10, size=(2, 3)).astype(np.float32)
    crops = [Crop(7, 30, True), Crop(32, 0, False)]
    big = F.interpolate(
        torch.from_numpy(source).permute(0, 3, 1, 2).double(), size=256, mode="bilinear",
        align_corners=False,
    ).numpy()  # fmt: skip
    for channels_last in (False, True):
        out = render(source, [0, 1], crops, 224, mean, shift, channels_last, view_size=256)
        if channels_last:
            out = out.transpose(0, 3, 1, 2)
        for k, crop in enumerate(crops):
            window = (slice(crop.top, crop.top + 224), slice(crop.left, crop.left + 224))
            patch = big[k][:, window[0], window[1]] - mean[window].transpose(2, 0, 1)
            expected = (patch[..., ::-1] if crop.flip else patch) + shift[k][:, None, None]
            assert np.allclose(out[k], expected, atol=2e-3)


@pytest.mark.parametrize("side, channels", [(256, 3), (28, 1), (64, 3)])
@pytest.mark.parametrize("views", ["random", "center"])
def test_views_rendered_by_torch_on_the_device_equal_the_loaders(tmp_path, side, channels, views):
    # Same-size and upscaled sources, both layouts, with and without normalization: the torch
    # path (data.render=device, here on the CPU) gives the loader's pixels bit for bit.
    store, _ = make_store(tmp_path / "s", side=side, channels=channels)
    for channels_last in (False, True):
        for normalize in ("none", "std"):
            options = dict(views=views, normalize=normalize, channels_last=channels_last, seed=3)
            expected, labels = StoreDataset(store, **options).__getitems__(range(12))
            on_device = StoreDataset(store, render="device", **options)
            batch, same_labels = on_device.__getitems__(range(12))
            assert isinstance(batch, ViewBatch) and batch.pixels.dtype == torch.uint8
            got = DeviceRenderer.of(on_device, torch.device("cpu"))(batch)
            assert torch.equal(got, expected) and torch.equal(labels, same_labels)
            assert got.stride() == expected.stride()  # one channel: strides still canonical


def test_ten_crops_are_not_rendered_on_the_device(tmp_path):
    store, _ = make_store(tmp_path / "s")
    with pytest.raises(ValueError, match="ten-crop"):
        StoreDataset(store, "val", views="ten-crop", render="device")
