"""The faults suite's records: with ALEXNET_FAULTS_RECORD=DIR, each test writes its figures
to DIR/NAME.json (docs/reliability.md quotes them); with ALEXNET_LONG_FAULTS=1 the tests run
their long variants (more cases, more kills), as for the docs:

    ALEXNET_LONG_FAULTS=1 ALEXNET_FAULTS_RECORD=docs/bench/reliability \\
        .venv/bin/python -m pytest tests/faults -p no:randomly -n 2
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pytest


@pytest.fixture
def record():
    """record(name, figures): figures as DIR/NAME.json when ALEXNET_FAULTS_RECORD is set."""

    def write(name: str, figures: dict) -> None:
        folder = os.environ.get("ALEXNET_FAULTS_RECORD")
        if not folder:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        figures = {
            "long": os.environ.get("ALEXNET_LONG_FAULTS") == "1",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            **figures,
        }
        (Path(folder) / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")

    return write
