"""rlopt: policy-optimization updates for reinforcement learning, built on torch.optim."""

__version__ = "0.1.0"
