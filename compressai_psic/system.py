r"""What the machine is and how much memory this process holds (for benchmarks
and training records); torch is imported only to name its version."""

from __future__ import annotations

import os
import sys

__all__ = ["machine_description", "peak_rss_mib", "rss_mib"]


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):
        return float("nan")


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (for benchmarks)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def machine_description() -> str:
    """CPU model, core count and torch version, for training records."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [
                line.split(":", 1)[1].strip() for line in f if "model name" in line
            ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    import torch

    return f"{cpu} ({os.cpu_count()} cores), torch {torch.__version__}"
