"""The run configuration: :mod:`~rlopt.config.schema` (typed dataclasses with every default),
:mod:`~rlopt.config.loading` (YAML via the safe loader, ``values``, dotted overrides) and
:mod:`~rlopt.config.validation` (schema-level checks). Agent-level checks live with each agent class.
"""

from rlopt.config.loading import config_to_dict, config_to_yaml, load_config, read_yaml
from rlopt.config.schema import (
    DEFAULT_ACTOR_OPTIM,
    DEFAULT_CRITIC_OPTIM,
    DEFAULT_TRUST_REGION,
    ActorConfig,
    CheckpointConfig,
    Config,
    CriticConfig,
    EnvConfig,
    EvalConfig,
    HealthConfig,
    PolicyGradientConfig,
    PPOConfig,
    ReinforceConfig,
    RolloutConfig,
)
from rlopt.config.validation import check_fits_in_memory, check_optimizer_spec, physical_memory_bytes, validate

__all__ = [
    "DEFAULT_ACTOR_OPTIM",
    "DEFAULT_CRITIC_OPTIM",
    "DEFAULT_TRUST_REGION",
    "ActorConfig",
    "CheckpointConfig",
    "Config",
    "CriticConfig",
    "EnvConfig",
    "EvalConfig",
    "HealthConfig",
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
