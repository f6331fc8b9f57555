"""Rollout storage: the ``[n_steps, num_envs, ...]`` tensors one rollout fills (``RolloutBuffer``)
and the flat batch an update reads (``RolloutBatch``). ``rlopt.rollout`` fills them and re-exports
both names; its docstring explains the time-major layout and the ``valid`` mask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from gymnasium import spaces
from torch import Tensor


@dataclass
class RolloutBatch:
    """Flat samples ``[N, ...]`` for an update; row order is time-major (step, then env)."""

    obs: Tensor
    actions: Tensor
    log_probs: Tensor
    values: Tensor
    advantages: Tensor
    returns: Tensor

    def __len__(self) -> int:
        return self.obs.shape[0]


class RolloutBuffer:
    """Preallocated ``[n_steps, num_envs, ...]`` storage for one rollout on ``device``.

    ``obs`` holds what the policy saw (normalised if a normaliser is used); ``actions`` the
    unclipped samples; ``valid`` is False on NEXT_STEP reset steps. ``last_obs`` / ``last_values``
    are the observation after the final step and its value (the bootstrap of ``rlopt.returns``).
    """

    def __init__(
        self,
        n_steps: int,
        num_envs: int,
        obs_dim: int,
        action_space: spaces.Discrete | spaces.Box,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        storage: Mapping[str, Tensor] | None = None,
    ) -> None:
        """``storage`` (optional) maps every name of :meth:`layout` to a preallocated tensor of
        that shape and dtype on ``device`` -- e.g. seed ``k``'s slice of a ``[K, ...]`` stack --
        which the buffer then uses as its fields (views, not copies)."""
        self.n_steps, self.num_envs, self.device = n_steps, num_envs, torch.device(device)
        for name, (shape, field_dtype) in self.layout(n_steps, num_envs, obs_dim, action_space, dtype).items():
            if storage is None:
                field = torch.zeros(shape, dtype=field_dtype, device=self.device)
            else:
                field = storage[name]
                if tuple(field.shape) != shape or field.dtype != field_dtype or field.device != self.device:
                    raise ValueError(f"storage[{name!r}] is {tuple(field.shape)} {field.dtype} on {field.device}, "
                                     f"expected {shape} {field_dtype} on {self.device}")  # fmt: skip
            setattr(self, name, field)

    @staticmethod
    def layout(
        n_steps: int,
        num_envs: int,
        obs_dim: int,
        action_space: spaces.Discrete | spaces.Box,
        dtype: torch.dtype = torch.float32,
    ) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """``{field name: (shape, dtype)}`` of a buffer: time-major ``[n_steps, num_envs, ...]``
        fields, plus ``last_obs [num_envs, obs_dim]`` and ``last_values [num_envs]``."""
        steps_envs = (n_steps, num_envs)
        if isinstance(action_space, spaces.Discrete):
            action_shape, action_dtype = (), torch.int64
        else:
            action_shape, action_dtype = tuple(action_space.shape), dtype
        return {
            "obs": ((*steps_envs, obs_dim), dtype),
            "actions": ((*steps_envs, *action_shape), action_dtype),
            "log_probs": (steps_envs, dtype),
            "values": (steps_envs, dtype),
            "rewards": (steps_envs, dtype),
            "terminated": (steps_envs, torch.bool),
            "truncated": (steps_envs, torch.bool),
            "valid": (steps_envs, torch.bool),
            "advantages": (steps_envs, dtype),
            "returns": (steps_envs, dtype),
            "last_obs": ((num_envs, obs_dim), dtype),
            "last_values": ((num_envs,), dtype),
        }

    def flatten(self, valid_only: bool = True) -> RolloutBatch:
        """Flat ``[N, ...]`` view of the rollout; ``valid_only`` drops NEXT_STEP reset steps (a copy)."""
        num_rows = self.n_steps * self.num_envs
        mask = self.valid.reshape(num_rows) if valid_only else None

        def flat(tensor: Tensor) -> Tensor:
            rows = tensor.reshape(num_rows, *tensor.shape[2:])
            return rows if mask is None else rows[mask]

        return RolloutBatch(
            obs=flat(self.obs),
            actions=flat(self.actions),
            log_probs=flat(self.log_probs),
            values=flat(self.values),
            advantages=flat(self.advantages),
            returns=flat(self.returns),
        )
