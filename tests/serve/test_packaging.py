"""What the wheel of stt-core carries beside its Python modules: the page ``GET /`` serves."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_wheel_carries_the_page(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", str(ROOT), "-w", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    names = zipfile.ZipFile(next(tmp_path.glob("stt_core-*.whl"))).namelist()
    assert "stt_core/_serve/page.html" in names and "stt_core/_serve/page.py" in names
