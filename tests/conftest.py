"""Test-session settings."""

import os

# Idle OpenMP threads sleep instead of spinning: on a small shared CI machine
# spinning threads slow every other process (and test subprocess) down.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

# The suite runs many small models; on a 2-core CI machine one intra-op thread
# avoids OpenMP oversubscription (tests that need parallelism spawn processes).
torch.set_num_threads(1)
