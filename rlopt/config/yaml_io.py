"""The safe YAML reader of config and sweep files (torch-free, so that ``rlopt presets`` is instant).

``yaml.safe_load``'s loader plus YAML 1.2 exponent floats, refusal of duplicate keys and budgets on
aliases (alias bombs); every failure is a one-line :class:`~rlopt.errors.ConfigError`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from rlopt.errors import ConfigError, first_line

_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
"""``1e-3``, ``3E5``, ``1.0e5``: floats in YAML 1.2 that PyYAML's YAML 1.1 resolver reads as strings."""


MAX_YAML_ALIASES = 100
"""Aliases (``*name``) one YAML document may use: a config needs a handful."""
MAX_YAML_NODES = 100_000
"""Nodes a YAML document may expand to with its aliases resolved ("billion laughs": 9 aliases
nested 9 deep expand to 9**9 nodes, which OmegaConf would copy for minutes)."""


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader (no python tags, no code), plus YAML 1.2 exponent floats, a
    refusal of duplicate keys, which ``safe_load`` would silently resolve to the last one, and
    budgets on aliases and on the size of the document they expand to (alias bombs)."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_YAML_ALIASES} aliases (*name); a config needs a few",
                    self.peek_event().start_mark,
                )  # fmt: skip
        return super().compose_node(parent, index)

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        expanded = _expanded_size(node, {})
        if expanded > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"its aliases expand to more than {MAX_YAML_NODES} nodes (an alias bomb?)", node.start_mark
            )
        return node

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


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Nodes of ``node`` with every alias expanded, counted once per distinct node (``sizes`` memo)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = MAX_YAML_NODES + 1  # a recursive alias expands without end
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, sizes)
        if total > MAX_YAML_NODES:
            break
    sizes[id(node)] = total
    return total


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
        raise ConfigError(f"config file {path} is empty; it must hold a mapping of keys such as 'agent: ppo'")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got a {type(data).__name__}")
    return data
