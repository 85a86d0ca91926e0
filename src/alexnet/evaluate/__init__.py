"""Section 6: what the trained network gets right and what it learned.

metrics.py    top-1 and top-5 (section 2), crop and ensemble averaging (sections 4.1, 6)
eval.py       `alexnet eval`: a checkpoint or an ensemble on a store
predict.py    `alexnet predict`: a photograph's most probable classes
figures.py    Figure 3 (conv1's kernels) and Figure 4 left (five guesses)
neighbors.py  `alexnet neighbors`, Figure 4 right: nearest training images in fc7 space
fc7index.py   a split's fc7 vectors, cached (the base of the searches)
search.py     exact nearest neighbors: Euclidean, and Hamming for binary codes; precision@k
codes.py      the autoencoder that makes fc7 into short binary codes (section 6.1)
features.py   `alexnet features`: any layer's activations; probe.py: a linear probe on them
explain.py    Grad-CAM of a photo's top classes
"""
