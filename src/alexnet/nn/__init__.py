"""The paper's layers that PyTorch does not have in the paper's form (sections 3.1-3.4):

    lrn.py    local response normalization (section 3.3): module, functional, the constants
    conv.py   the towers' grouped convolutions (section 3.2), conv1's edge arithmetic
              (the released code's 224 -> 55), space-to-depth
    block.py  ReLU, LRN and overlapping pooling after conv1 and conv2 (sections 3.3-3.4)
    local.py  cuda-convnet's locally connected layer (the CIFAR-10 net of section 3.3)

Only this room calls `alexnet.kernels`; the rooms above use these layers.
"""
