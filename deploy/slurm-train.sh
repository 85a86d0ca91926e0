#!/bin/bash
# `alexnet train` on several machines under Slurm: one torchrun agent per node, c10d
# rendezvous on the first node, 8 GPUs a node. The store must be on a file system every
# node sees (each rank memory-maps it and reads only its own samples); the run directory
# too, so that a job Slurm requeues goes on from its last checkpoint (--auto-resume).
#
#   sbatch deploy/slurm-train.sh            # 2 nodes; sbatch --nodes=8 ... for 8
#
#SBATCH --job-name=alexnet
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --requeue
set -euo pipefail

STORE=${STORE:-/shared/data/imagenet}
RUN=${RUN:-/shared/runs/paper}
head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
# A node lost and requeued rejoins only if the workers' store is not the rendezvous's: with
# it shared, the next round waits on keys of workers that are gone (tests/faults/test_node_kill.py)
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1

srun torchrun \
    --nnodes="$SLURM_NNODES" --nproc-per-node="${GPUS_PER_NODE:-8}" \
    --rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d --rdzv-endpoint="$head:29500" \
    --max-restarts=3 \
    -m alexnet train --config configs/paper.yaml --out "$RUN" --auto-resume \
    --set data.store="$STORE" --set data.workers=8
