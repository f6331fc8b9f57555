"""The contract between the library and the agent classes: the :class:`Learner` protocol and
:class:`UpdateStats`.

The library layer (``rlopt.trainer``, ``rlopt.evaluation``) is typed against :class:`Learner`
and never imports an agent (SB3's ``PolicyPredictor``, rsl_rl's runner): data and imports flow
one way, env → rollout batch → ``learner.update(batch)`` → :class:`UpdateStats` → logger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from rlopt.config import Config
from rlopt.normalization import RunningMeanStd
from rlopt.rollout import RolloutBatch, RolloutBuffer

_NOT_TAGS = ("skipped", "extra")


@dataclass
class UpdateStats:
    """What one update measured; ``scalars()`` maps it to the stable TensorBoard tags.

    The fields every learner reports are named ``<group>_<name>`` and logged as
    ``<group>/<name>``; ``extra`` holds learner-specific diagnostics under their full tag
    (``actor/cg_residual``, ``actor/clip_fraction``, ...), so a new agent or metric adds a tag
    without editing this class.
    """

    actor_loss: float = math.nan
    actor_entropy: float = math.nan
    actor_kl: float = math.nan
    actor_kl_max: float = math.nan
    actor_grad_norm: float = math.nan
    actor_lr: float = math.nan
    critic_loss: float | None = None
    critic_grad_norm: float | None = None
    critic_lr: float | None = None
    critic_explained_variance: float | None = None
    skipped: bool = False
    """The update was rolled back (non-finite observation, reward, loss or gradient)."""
    extra: dict[str, float] = field(default_factory=dict)
    """Learner-specific scalars by TensorBoard tag, e.g. ``{"actor/step_accepted": 1.0}``."""

    @classmethod
    def field_names(cls) -> frozenset[str]:
        """The common scalar fields (``actor_loss``, ...), i.e. everything but ``skipped``/``extra``."""
        return frozenset(f.name for f in fields(cls) if f.name not in _NOT_TAGS)

    def record(self, values: Mapping[str, float]) -> None:
        """Store measured values: a common field by its name, anything else in ``extra`` by its tag."""
        names = self.field_names()
        for name, value in values.items():
            if name in names:
                setattr(self, name, value)
            elif "/" in name:
                self.extra[name] = value
            else:
                raise KeyError(f"{name!r} is neither an UpdateStats field nor a 'group/name' tag")

    def scalars(self) -> dict[str, float]:
        """``{"actor/loss": ..., "critic/lr": ..., **extra}`` for the values that were measured."""
        out: dict[str, float] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _NOT_TAGS or value is None:
                continue
            group, _, name = f.name.partition("_")
            out[f"{group}/{name}"] = float(value)
        out.update((tag, float(value)) for tag, value in self.extra.items())
        return out


@runtime_checkable
class Learner(Protocol):
    """What the trainer and the evaluation need from an agent (every class in ``AGENTS`` is one)."""

    cfg: Config
    """The resolved run configuration (written to ``RUN_DIR/config.yaml``)."""
    device: torch.device
    obs_normalizer: RunningMeanStd | None
    """Running observation statistics the collector updates, or None."""

    def act(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sampled actions, their log-probabilities and V(s) for a batch of observations."""
        ...

    def value(self, obs: Tensor) -> Tensor:
        """V(s) for a batch of observations (zeros without a critic)."""
        ...

    def predict(
        self, obs: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """``(actions, None)``: env-ready actions for raw observations (SB3's convention)."""
        ...

    def prepare_batch(self, buffer: RolloutBuffer) -> RolloutBatch:
        """Advantages and targets filled in; the flat batch ``update`` learns from."""
        ...

    def update(self, batch: RolloutBatch) -> UpdateStats:
        """One update on the batch; never touches a logger."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (tensors and plain containers)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def trainables(self) -> tuple[list[nn.Module], list[torch.optim.Optimizer]]:
        """The networks and optimizers an update may change (restored if it is skipped)."""
        ...
