"""The files that run `alexnet train` on several machines (deploy/): valid shell and YAML,
and each running the same `alexnet train` under torchrun with a c10d rendezvous or the
operator's settings, resuming from the shared run directory."""

from __future__ import annotations

import subprocess

import yaml

from fixtures import ROOT

DEPLOY = ROOT / "deploy"


def test_the_slurm_script_is_valid_bash_and_meets_at_a_c10d_rendezvous():
    script = DEPLOY / "slurm-train.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "#SBATCH --nodes=" in text and "#SBATCH --requeue" in text
    assert "--rdzv-backend=c10d" in text and "srun torchrun" in text
    assert "-m alexnet train" in text and "--auto-resume" in text
    assert "export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in text  # a lost node rejoins


def test_the_pytorchjob_runs_the_same_command_on_master_and_workers():
    job = yaml.safe_load((DEPLOY / "pytorchjob.yaml").read_text())
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    specs = job["spec"]["pytorchReplicaSpecs"]
    commands = [s["template"]["spec"]["containers"][0]["command"] for s in specs.values()]
    assert set(specs) == {"Master", "Worker"} and commands[0] == commands[1]
    command = commands[0]
    assert command[0] == "torchrun" and command[command.index("-m") + 1 : command.index("-m")
                                                + 3] == ["alexnet", "train"]  # fmt: skip
    assert "--auto-resume" in command
    env = specs["Master"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "value": "1"} in env
    mounts = specs["Master"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert any(m["mountPath"] == "/shared" for m in mounts)
