"""Helpers shared by the benchmarks: peak memory of a variant run in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``; ru_maxrss survives exec on Linux)."""
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024


def child_peak_mb(script: str, args: list[str]) -> float:
    """Run ``script --child …`` in a fresh interpreter; it prints ``{"peak_mb": …}`` last."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def report_child_peak() -> None:
    """What a child prints when its variant is done."""
    print(json.dumps({"peak_mb": peak_rss_mb()}))
