"""Fast paths with the paper's arithmetic, each tested against the naive formula:

    lrn.py         the LRN (section 3.3): numba CPU kernel, torch operations, and the choice
    lrn_triton.py  the LRN as Triton kernels for GPUs
    fused.py       ReLU -> LRN -> max-pool in one CPU kernel (conv1's and conv2's block)
    update.py      the update rule (section 5) in one pass over each weight tensor on CPU
    ops.py         the custom-operator plumbing they share (torch.compile and export see one
                   opaque operation; eager calls skip the machinery)

Every kernel takes its constants as required arguments with honest names (the LRN's
`coefficient` is what multiplies the sum); the paper's values are set in `alexnet.nn`.
Only `alexnet.nn` imports this room (and `alexnet.train.optim` the update, `alexnet.bench`,
which times them).
"""
