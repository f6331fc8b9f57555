"""The run configuration: :mod:`~rlopt.config.schema` (typed dataclasses with every default),
:mod:`~rlopt.config.loading` (YAML via the safe loader of :mod:`~rlopt.config.yaml_io`, ``values``,
dotted overrides) and :mod:`~rlopt.config.validation` (schema-level checks). Agent-level checks live
with each agent class.

The names below are imported on first use (PEP 562): the schema and the YAML reader are torch-free,
so reading presets (``rlopt presets``) does not pay for importing torch; loading and validation do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_MODULE_OF = {
    **dict.fromkeys(("config_to_dict", "config_to_yaml", "load_config"), "loading"),
    "read_yaml": "yaml_io",
    **dict.fromkeys(
        (
            "DEFAULT_ACTOR_OPTIM", "DEFAULT_CRITIC_OPTIM", "ActorConfig",
            "CheckpointConfig", "Config", "CriticConfig", "EnvConfig", "EvalConfig", "HealthConfig", "LogConfig",
            "PolicyGradientConfig", "PPOConfig", "ReinforceConfig", "RolloutConfig",
        ),
        "schema",
    ),
    "DEFAULT_TRUST_REGION": "defaults",
    **dict.fromkeys(("check_fits_in_memory", "check_optimizer_spec", "physical_memory_bytes", "validate"), "validation"),
}  # fmt: skip
"""Each public name and the submodule that defines it."""

__all__ = [
    "ActorConfig",
    "CheckpointConfig",
    "Config",
    "CriticConfig",
    "DEFAULT_ACTOR_OPTIM",
    "DEFAULT_CRITIC_OPTIM",
    "DEFAULT_TRUST_REGION",
    "EnvConfig",
    "EvalConfig",
    "HealthConfig",
    "LogConfig",
    "PPOConfig",
    "PolicyGradientConfig",
    "ReinforceConfig",
    "RolloutConfig",
    "check_fits_in_memory",
    "check_optimizer_spec",
    "config_to_dict",
    "config_to_yaml",
    "load_config",
    "physical_memory_bytes",
    "read_yaml",
    "validate",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'rlopt.config' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"rlopt.config.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


if TYPE_CHECKING:
    from rlopt.config.loading import config_to_dict, config_to_yaml, load_config
    from rlopt.config.schema import (
        DEFAULT_ACTOR_OPTIM,
        DEFAULT_CRITIC_OPTIM,
        ActorConfig,
        CheckpointConfig,
        Config,
        CriticConfig,
        EnvConfig,
        EvalConfig,
        HealthConfig,
        LogConfig,
        PolicyGradientConfig,
        PPOConfig,
        ReinforceConfig,
        RolloutConfig,
    )
    from rlopt.config.validation import check_fits_in_memory, check_optimizer_spec, physical_memory_bytes, validate
    from rlopt.config.yaml_io import read_yaml
    from rlopt.config.defaults import DEFAULT_TRUST_REGION
