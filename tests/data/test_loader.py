"""Which images train and which validate: the held-out validation set."""

from __future__ import annotations

import numpy as np
import pytest

from alexnet.core.checks import ConfigError
from alexnet.data.loader import holdout


def test_a_holdout_takes_each_class_in_proportion_to_its_size():
    # classes of 50, 30 and 20 images; 10 images held out: 5, 3 and 2 by hand
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    picked = holdout(labels, 10, seed=0)
    assert np.bincount(labels[picked]).tolist() == [5, 3, 2]
    assert len(set(picked.tolist())) == 10 and (np.diff(picked) > 0).all()
    # a share: 20% of each
    assert np.bincount(labels[holdout(labels, 0.2, seed=0)]).tolist() == [10, 6, 4]


def test_a_holdout_gives_the_images_still_owed_to_the_largest_remainders():
    # 7 of 30 images from classes of 16, 9 and 5: exact shares 3.733, 2.1, 1.167;
    # floors 3, 2, 1 make 6; the one owed goes to class 0 (remainder 0.733)
    labels = np.repeat([0, 1, 2], [16, 9, 5])
    assert np.bincount(labels[holdout(labels, 7, seed=3)]).tolist() == [4, 2, 1]


def test_a_holdout_is_fixed_by_its_seed_alone():
    labels = np.tile(np.arange(10), 100)
    a, b, c = holdout(labels, 100, 0), holdout(labels, 100, 0), holdout(labels, 100, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(
    "count, message",
    [(0, "makes 0 of 6"), (6, "makes 6 of 6"), (1.5, "between 0 and 1"), ("10", "a number"),
     (True, "a number"), (3, "leaves no training image")],
)  # fmt: skip
def test_a_holdout_that_cannot_leave_training_images_is_refused(count, message):
    labels = np.array([0, 0, 0, 0, 1, 1]) if count != 3 else np.array([0, 0, 0, 0, 1, 2])
    with pytest.raises(ConfigError, match=message):
        holdout(labels, count, seed=0)


def test_per_class_takes_that_many_of_each_class_and_nests():
    from alexnet.data.loader import per_class

    labels = np.array([0] * 5 + [1] * 3 + [2] * 7)
    four = per_class(labels, 4, seed=3)
    # by hand: 4 of class 0, all 3 of class 1, 4 of class 2
    assert np.bincount(labels[four]).tolist() == [4, 3, 4]
    assert list(four) == sorted(four) and len(set(four)) == 11
    assert set(per_class(labels, 2, seed=3)) <= set(four)  # the 2 are among the 4
    assert list(per_class(labels, 4, seed=3)) == list(four)
    assert list(per_class(labels, 4, seed=4)) != list(four)
    with pytest.raises(ValueError, match="per_class"):
        per_class(labels, 0, seed=0)
