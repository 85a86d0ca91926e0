"""Datasets as the paper prepares them (sections 2 and 4.1): stores, statistics, augmentations.

`alexnet.data.prepare.prepare` makes a store; `Store` reads one; `StoreDataset` gives the
paper's training and test views of it.
"""

from alexnet.data.dataset import StoreDataset
from alexnet.data.loader import make_loader
from alexnet.data.store import Store, StoreError, open_store

__all__ = ["Store", "StoreDataset", "StoreError", "make_loader", "open_store"]
