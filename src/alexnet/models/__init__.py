"""The networks (section 3.5, Figure 2) and their files:

alexnet.py     AlexNet and AlexNetConfig: the paper's network and its variants as settings
cifar.py       the paper's CIFAR-10 nets (Figure 1's ReLU/tanh net, the LRN figure's net)
registry.py    the named variants: create_model, list_models
record.py      a trained network's record: network, classes, preprocessing, provenance
checkpoint.py  checkpoints: save, load (`alexnet.load`), rebuild the network they hold
tensorfile.py  the weights and record as a safetensors file
transfer.py    weights into another network layer by layer (fine-tuning)
weights.py     torchvision's AlexNet weights into this package's network
summary.py     `alexnet summary`: the layer table with shapes, neurons, parameters
"""
