"""Section 5, the details of learning, and the machinery of a run:

config.py       the recipe (configs/*.yaml), typed and checked
optim.py        the paper's update rule and parameter groups
schedule.py     the learning rate: the paper's plateau rule, the released code's epochs
trainer.py      `train`: a run, start to end, resumable, one CPU or many GPUs
data.py         the run's store, classes, images and views
network.py      the run's network: seeded, started from other weights, frozen, placed
loop.py         the training step, an epoch of them, validation: plain functions
state.py        where a run is (Progress), and its checkpoints written
sink.py         where its numbers go: metrics.jsonl, TensorBoard, the log
resume.py       what a resumed run may change, and how each change takes effect
distributed.py  processes started by torchrun, and sums over them
rundir.py       a run directory, written and read in one place
towers.py       the paper's model parallelism: tower A and tower B on two devices
"""
