"""Section 5, the details of learning, and the machinery of a run:

config.py       the recipe (configs/*.yaml), typed and checked
optim.py        the paper's update rule and parameter groups
schedule.py     the learning rate: the paper's plateau rule, the released code's epochs
trainer.py      the training loop: resumable, one CPU or many GPUs
distributed.py  processes started by torchrun, and sums over them
rundir.py       a run directory, written and read in one place
towers.py       the paper's model parallelism: tower A and tower B on two devices
"""
