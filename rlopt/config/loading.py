"""Loading a run configuration: YAML presets (safe loader), ``values`` mappings and dotted overrides,
merged over the schema's defaults with OmegaConf, then validated.

``load_config`` is the only entry point; every kind of bad input becomes a one-line
:class:`~rlopt.errors.ConfigError` naming the key, before any compute is spent. Agent-level checks
(which agent, which actor step) are the agent classes' own ``check_config``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlopt import optimizers
from rlopt.config.schema import Config
from rlopt.config.validation import omegaconf_message, validate
from rlopt.config.yaml_io import read_yaml
from rlopt.errors import ConfigError, first_line
from rlopt.presets import resolve_config


def space_flow_colons(text: str) -> str:
    """``{a:1,b:{c:2}}`` → ``{a: 1,b: {c: 2}}``: the YAML text of an override value, with a space after
    the ``:`` that ends each key of a flow mapping, so that a dict typed in a shell without spaces
    parses as it reads (YAML needs ``: `` and reads ``{name:adam}`` as the single key ``name:adam``).

    Only the first ``:`` of each mapping entry is a key separator (no config key holds a ``:``), so
    ``{id:my_pkg:MyEnv-v0}`` → ``{id: my_pkg:MyEnv-v0}``. Quoted strings, plain values outside braces
    (``my_pkg:MyEnv-v0``, URLs), flow sequences (``[a:1]``) and a ``{``/``[`` inside a plain scalar are
    left as they are; text that is not valid YAML stays invalid.
    """
    out: list[str] = []
    stack: list[list[Any]] = []  # per open flow collection: [bracket, its current entry's key has ended]
    quote = ""  # the quote character of the quoted scalar being copied, or ""
    at_scalar_start = True  # where YAML would start a new node: a quote or bracket here is an indicator
    i = 0
    while i < len(text):
        ch = text[i]
        out.append(ch)
        if quote:
            if ch == "\\" and quote == '"':  # a backslash escape inside "...": copy the escaped character
                out.append(text[i + 1 : i + 2])
                i += 1
            elif ch == quote and quote == "'" and text[i + 1 : i + 2] == "'":  # '' inside '...'
                out.append("'")
                i += 1
            elif ch == quote:
                quote = ""
        elif ch.isspace():
            pass
        elif at_scalar_start and ch in "'\"":
            quote, at_scalar_start = ch, False
        elif at_scalar_start and ch in "{[":
            stack.append([ch, False])
        elif ch in "}]" and stack:
            stack.pop()
            at_scalar_start = False
        elif ch == "," and stack:
            stack[-1][1] = False
            at_scalar_start = True
        elif ch == ":" and stack and stack[-1] == ["{", False]:
            stack[-1][1] = True
            at_scalar_start = True
            if text[i + 1 : i + 2] not in ("", " ", "\t", "\n"):
                out.append(" ")
        elif not (ch == "?" and at_scalar_start):  # "? " opens an explicit key
            at_scalar_start = False
        i += 1
    return "".join(out)


def _keys_with_colon(node: Any) -> list[str]:
    """Mapping keys holding a ``:`` anywhere in a parsed override value."""
    if isinstance(node, Mapping):
        own = [str(k) for k in node if ":" in str(k)]
        return own + [bad for value in node.values() for bad in _keys_with_colon(value)]
    if isinstance(node, list):
        return [bad for value in node for bad in _keys_with_colon(value)]
    return []


def parse_override(item: Any) -> DictConfig:
    """One ``key=value`` (value in YAML syntax) as a config layer. A flow mapping may be typed without
    spaces (``actor.optim={name:adam,lr:3e-4}``, see :func:`space_flow_colons`); a key that still
    holds a ``:`` (e.g. quoted, ``{"name:adam": 1}``) is a one-line error showing the accepted forms."""
    if not isinstance(item, str) or "=" not in item or item.startswith("="):
        raise ConfigError(f"override {item!r} must look like key=value (e.g. actor.optim.lr=1e-3)")
    head, sep, value = item.partition("=")
    key = head.strip()
    try:
        layer = OmegaConf.from_dotlist([head + sep + space_flow_colons(value)])
    except OmegaConfBaseException as err:
        raise ConfigError(f"{key}: bad override {item!r}: {first_line(err)}") from None
    except Exception as err:  # the YAML grammar of the value, e.g. "a=[1," (yaml.ScannerError, ...)
        raise ConfigError(f"{key}: cannot parse the value of override {item!r} ({first_line(err)})") from None
    bad = _keys_with_colon(OmegaConf.to_container(layer, resolve=False))
    if bad:
        raise ConfigError(
            f"{key}: the dict key {bad[0]!r} in override {item!r} holds a ':'; write a dict override as "
            "actor.optim={name: adam, lr: 3e-4} (or {name:adam,lr:3e-4}) or one key at a time, "
            "actor.optim.name=adam actor.optim.lr=3e-4"
        )
    return layer


def _missing_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is OmegaConf's missing marker ``???`` (interpolations unresolved)."""
    if isinstance(node, Mapping):
        return [key for name, value in node.items() for key in _missing_keys(value, f"{prefix}{name}.")]
    if isinstance(node, list):
        return [key for i, value in enumerate(node) for key in _missing_keys(value, f"{prefix.rstrip('.')}[{i}].")]
    return [prefix.rstrip(".")] if node == "???" else []


_RESOLVER = re.compile(r"\$\{[^}]*:")
"""``${name:args}``: an OmegaConf resolver (``${oc.env:HOME}``); ``${key}`` is an interpolation."""


def _resolver_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose string value calls a resolver (``${oc.env:HOME}``, ``${oc.decode:...}``)."""
    if isinstance(node, Mapping):
        return [key for name, value in node.items() for key in _resolver_keys(value, f"{prefix}{name}.")]
    if isinstance(node, list):
        return [key for i, value in enumerate(node) for key in _resolver_keys(value, f"{prefix.rstrip('.')}[{i}].")]
    return [prefix.rstrip(".")] if isinstance(node, str) and _RESOLVER.search(node) else []


def _reject_missing(layer: DictConfig, where: str) -> None:
    """OmegaConf's ``???`` would silently keep the value below it; a run needs real values. A
    resolver (``${oc.env:HOME}``) would copy the environment into every run's ``config.yaml``:
    only interpolation between keys (``${actor.optim.lr}``) is allowed."""
    tree = OmegaConf.to_container(layer, resolve=False)
    missing = _missing_keys(tree)
    if missing:
        raise ConfigError(f"{missing[0]}: '???' (a missing value) in {where}; give a value")
    resolvers = _resolver_keys(tree)
    if resolvers:
        raise ConfigError(f"{resolvers[0]}: a resolver ${{name:...}} in {where}; only interpolation of "
                          "another key, e.g. ${actor.optim.lr}, is allowed")  # fmt: skip


OPTIM_KEYS = ("actor.optim", "critic.optim")
"""Optimizer specs whose ``name`` a later layer may switch (dropping options the new one lacks)."""


def _drop_foreign_options(merged: DictConfig, layer: Any, notices: list[str]) -> None:
    """After ``layer`` switched ``actor.optim.name`` (or the critic's), drop the options inherited
    from the layers below that the new optimizer does not take, with a one-line notice: a preset's
    ``eps`` must not make ``actor.optim.name=sgd`` fail. Options ``layer`` sets itself are kept
    (and checked), and so is ``lr``. The notices are appended to ``notices``."""
    for key in OPTIM_KEYS:
        section, _, leaf = key.partition(".")
        own = layer.get(section, {}) if isinstance(layer, Mapping) else {}
        own = own.get(leaf) if isinstance(own, Mapping) else None
        if not isinstance(own, Mapping) or "name" not in own:
            continue
        spec = merged[section][leaf]
        accepted = optimizers.options(spec.get("name"))
        if accepted is None:  # an unknown name: its own one-line error comes later
            continue
        dropped = [k for k in spec if k not in ("name", "lr", *accepted, *own)]
        for option in dropped:
            del spec[option]
        if dropped:
            notices.append(f"{key}.name={spec['name']} does not take {', '.join(map(str, dropped))}: dropped")


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
    notices: list[str] | None = None,
) -> Config:
    """Build a schema-validated :class:`Config`: defaults < YAML file < ``values`` < dotted overrides.

    ``path`` is a YAML file, or a preset's name (``ppo_cartpole``, see :mod:`rlopt.presets`) when no
    such file exists.

    Every kind of bad input (missing or malformed file, unknown key, wrong type, value out of
    range, unusable optimizer or schedule spec) raises :class:`ConfigError` with a one-line
    message naming the key and what is allowed. Which agent and its actor step are checked, and
    its defaults filled in, by the agent class (its ``check_config``, run by ``build_agent``).

    Switching an optimizer by name over the file (``actor.optim.name=sgd``) drops the options the
    new one does not take; each drop is a one-line notice appended to ``notices`` (the CLI prints
    them once the run is accepted), or a UserWarning when ``notices`` is None.
    """
    if isinstance(overrides, str):  # a lone "k=v" would otherwise be split into characters
        overrides = [overrides]
    layers: list[tuple[str, Any]] = []
    try:
        if path is not None:
            path = resolve_config(path)
            if not path.is_file():
                raise ConfigError(f"config file not found: {path} (give a YAML file or a preset name such as "
                                  "ppo_cartpole; rlopt presets lists them)")  # fmt: skip
            layers.append((f"config file {path}", OmegaConf.create(read_yaml(path))))
        if values is not None:
            layers.append(("values", OmegaConf.create(dict(values))))
    except OmegaConfBaseException as err:
        raise ConfigError(omegaconf_message(err)) from None
    layers.extend((f"override {item!r}", parse_override(item)) for item in overrides)
    dropped: list[str] = []
    merged: Any = OmegaConf.structured(Config)
    for index, (where, layer) in enumerate(layers):
        _reject_missing(layer, where)
        try:
            merged = OmegaConf.merge(merged, layer)
            if index > 0 or path is None:  # a layer over the file (an override, values) may switch names
                _drop_foreign_options(merged, OmegaConf.to_container(layer, resolve=False), dropped)
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
    if notices is not None:
        notices.extend(dropped)
    for notice in dropped if notices is None else ():
        warnings.warn(notice, UserWarning, stacklevel=2)
    return cfg


def config_to_yaml(cfg: Config) -> str:
    """The configuration as YAML text (a learner's resolved config is written to ``RUN_DIR/config.yaml``)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The configuration as plain python containers."""
    return OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[return-value]
