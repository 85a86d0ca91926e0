"""Datasets as the paper prepares them (sections 2 and 4.1): stores, statistics, augmentations.

`alexnet.data.prepare.prepare` makes a store from a dataset's listing (`sources` lists each
dataset as its users have it, `listing` holds what a listing is and reads its images);
`Store` reads a store; `StoreDataset` gives the paper's training and test views of it;
`preprocess.Preprocessing` makes a photo into a trained network's input as its store's
images were made.
"""

from alexnet.data.dataset import StoreDataset
from alexnet.data.loader import make_loader
from alexnet.data.store import Store, StoreError, open_store

__all__ = ["Store", "StoreDataset", "StoreError", "make_loader", "open_store"]
