"""Loading a run configuration: YAML presets (safe loader), ``values`` mappings and dotted overrides,
merged over the schema's defaults with OmegaConf, then validated.

``load_config`` is the only entry point; every kind of bad input becomes a one-line
:class:`~rlopt.errors.ConfigError` naming the key, before any compute is spent. Agent-level checks
(which agent, which actor step) are the agent classes' own ``check_config``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlopt.config.schema import Config
from rlopt.config.validation import first_line, omegaconf_message, validate
from rlopt.errors import ConfigError

_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
"""``1e-3``, ``3E5``, ``1.0e5``: floats in YAML 1.2 that PyYAML's YAML 1.1 resolver reads as strings."""


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader (no python tags, no code), plus YAML 1.2 exponent floats and a
    refusal of duplicate keys, which ``safe_load`` would silently resolve to the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key '{key_node.value}'", key_node.start_mark,
                )  # fmt: skip
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a UTF-8 YAML mapping with a safe loader (no arbitrary object construction)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (expected a YAML file such as configs/ppo_cartpole.yaml)")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_ConfigLoader)  # noqa: S506 (safe loader)
    except UnicodeDecodeError:
        raise ConfigError(f"config file is not UTF-8 text: {path}") from None
    except OSError as err:
        raise ConfigError(f"config file cannot be read: {path} ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or first_line(err)
        raise ConfigError(f"malformed YAML in {path}{line}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"malformed YAML in {path}: nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got a {type(data).__name__}")
    return data


def _parse_override(item: Any) -> DictConfig:
    """One ``key=value`` (value in YAML syntax) as a config layer."""
    if not isinstance(item, str) or "=" not in item or item.startswith("="):
        raise ConfigError(f"override {item!r} must look like key=value (e.g. actor.optim.lr=1e-3)")
    key = item.partition("=")[0].strip()
    try:
        return OmegaConf.from_dotlist([item])
    except OmegaConfBaseException as err:
        raise ConfigError(f"{key}: bad override {item!r}: {first_line(err)}") from None
    except Exception as err:  # the YAML grammar of the value, e.g. "a=[1," (yaml.ScannerError, ...)
        raise ConfigError(f"{key}: cannot parse the value of override {item!r} ({first_line(err)})") from None


def _missing_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is OmegaConf's missing marker ``???`` (interpolations unresolved)."""
    if isinstance(node, Mapping):
        return [key for name, value in node.items() for key in _missing_keys(value, f"{prefix}{name}.")]
    if isinstance(node, list):
        return [key for i, value in enumerate(node) for key in _missing_keys(value, f"{prefix.rstrip('.')}[{i}].")]
    return [prefix.rstrip(".")] if node == "???" else []


def _reject_missing(layer: DictConfig, where: str) -> None:
    """OmegaConf's ``???`` would silently keep the value below it; a run needs real values."""
    missing = _missing_keys(OmegaConf.to_container(layer, resolve=False))
    if missing:
        raise ConfigError(f"{missing[0]}: '???' (a missing value) in {where}; give a value")


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
) -> Config:
    """Build a schema-validated :class:`Config`: defaults < YAML file < ``values`` < dotted overrides.

    Every kind of bad input (missing or malformed file, unknown key, wrong type, value out of
    range, unusable optimizer or schedule spec) raises :class:`ConfigError` with a one-line
    message naming the key and what is allowed. Which agent and its actor step are checked, and
    its defaults filled in, by the agent class (its ``check_config``, run by ``build_agent``).
    """
    if isinstance(overrides, str):  # a lone "k=v" would otherwise be split into characters
        overrides = [overrides]
    layers: list[tuple[str, Any]] = []
    try:
        if path is not None:
            layers.append((f"config file {path}", OmegaConf.create(read_yaml(path))))
        if values is not None:
            layers.append(("values", OmegaConf.create(dict(values))))
    except OmegaConfBaseException as err:
        raise ConfigError(omegaconf_message(err)) from None
    layers.extend((f"override {item!r}", _parse_override(item)) for item in overrides)
    merged: Any = OmegaConf.structured(Config)
    for where, layer in layers:
        _reject_missing(layer, where)
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            if getattr(err, "full_key", None):
                raise ConfigError(omegaconf_message(err)) from None
            raise ConfigError(f"cannot apply {where}: {first_line(err)}") from None  # e.g. "actor=5"
        except (TypeError, ValueError, OverflowError) as err:  # "actor.hidden[0]=5"; "gamma=1000…0" beyond float
            raise ConfigError(f"cannot apply {where}: {first_line(err)}") from None
    try:
        cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:  # unresolvable ${interpolation}
        raise ConfigError(omegaconf_message(err)) from None
    validate(cfg)
    return cfg


def config_to_yaml(cfg: Config) -> str:
    """The configuration as YAML text (a learner's resolved config is written to ``RUN_DIR/config.yaml``)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The configuration as plain python containers."""
    return OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[return-value]
