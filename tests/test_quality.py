"""ruff over the repository, mypy (strict) over stt_core and the first-party dists, pip check."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_ruff() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_strict_on_stt_core_and_the_first_party_dists() -> None:
    run = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_dist_installs_beside_the_others() -> None:
    """``pip check`` over the set-up install: every dist and its extras together (Ray Serve's
    grpcio-reflection and pipecat-ai's protobuf<7 once were not)."""
    run = subprocess.run([sys.executable, "-m", "pip", "check"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
