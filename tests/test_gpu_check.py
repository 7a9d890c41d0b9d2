"""`make gpu-check` runs on a machine without CUDA: it says so, runs the CPU rows and prints the table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only behaviour")
def test_gpu_check_without_cuda_prints_the_cpu_rows():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--skip-sam"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert table[0] == "| check | CPU only: no CUDA device here |"
    rows = dict([cell.strip() for cell in line.strip("|").split("|")] for line in table[2:])
    assert rows["CUDA vs CPU rasterizer (tests)"] == "not run: no CUDA device"
    assert rows["click, 1M Gaussians"].endswith(" ms"), rows
    assert "Gaussians, 128x96 views" in rows["feature-stage step"], rows
