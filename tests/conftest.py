"""Shared test setup: small MLPs are fastest (and deterministic) on one thread."""

import torch

torch.set_num_threads(1)
