"""Test-session settings."""

import torch

# The suite runs many small models; on a 2-core CI machine one intra-op thread
# avoids OpenMP oversubscription (tests that need parallelism spawn processes).
torch.set_num_threads(1)
