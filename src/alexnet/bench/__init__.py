"""Speed, measured on the machine at hand and recorded as JSON (docs/benchmarks.md):

common.py   timing and the machine's description
data.py     `alexnet bench data`: views, decoding and prepare per core
model.py    `alexnet bench model`: training and inference images/s against the limit
kernels.py  `alexnet bench fused`
profile.py  `alexnet bench profile`: where a step's time goes
train.py    `alexnet bench train`: the data path's cost in training
"""
