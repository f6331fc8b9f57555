"""The file of a saved agent (``agent.save``) and reading an agent back from a file or a run
directory: a config plus an agent ``state_dict``, loaded with ``torch.load(weights_only=True)``.

Library layer: it knows configs and checkpoints, not agent classes; ``Agent.load`` (agents/)
picks the class and builds it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from rlopt.checkpoint import first_readable, list_checkpoints, load_checkpoint
from rlopt.config import Config, config_to_dict, load_config
from rlopt.errors import ConfigError
from rlopt.run_files import CONFIG_FILE

SAVED_AGENT_FORMAT = 1
"""Format of a file written by ``Agent.save``: ``{"saved_agent_format", "config" (the resolved
config as JSON), "agent" (the state_dict)}``, tensors and plain containers only."""


def saved_agent(cfg: Config, state: Mapping[str, Any]) -> dict[str, Any]:
    """What ``Agent.save`` writes: the format, the resolved config as JSON and the agent state."""
    return {
        "saved_agent_format": SAVED_AGENT_FORMAT,
        "config": json.dumps(config_to_dict(cfg), sort_keys=True),
        "agent": state,
    }


def read_saved_agent(path: Path, overrides: Sequence[str]) -> tuple[Config, Mapping[str, Any], Path]:
    """Config, agent state_dict and the file they came from, for ``Agent.load``."""
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise ConfigError(f"load: {path} is not a file written by agent.save, nor a run directory with a checkpoint")
        return _read_run_checkpoint(path, found[-1], overrides)
    if not path.is_file():
        raise ConfigError(f"load: no such file or run directory {path}")
    saved = _load_file(path)
    if "saved_agent_format" in saved:
        if saved["saved_agent_format"] != SAVED_AGENT_FORMAT or not isinstance(saved.get("config"), str):
            raise ConfigError(
                f"load: {path} has saved-agent format {saved['saved_agent_format']!r}; "
                f"this rlopt reads format {SAVED_AGENT_FORMAT}"
            )
        return load_config(None, overrides, values=json.loads(saved["config"])), saved["agent"], path
    if "env_steps" in saved and "agent" in saved:  # one checkpoint of a run directory
        return _read_run_checkpoint(path.parent.parent, path, overrides, saved)
    raise ConfigError(f"load: {path} is neither a file written by agent.save nor an rlopt checkpoint")


def _read_run_checkpoint(
    run_dir: Path, checkpoint: Path, overrides: Sequence[str], saved: Mapping[str, Any] | None = None
) -> tuple[Config, Mapping[str, Any], Path]:
    """``run_dir/config.yaml`` and the agent state of ``checkpoint``; a checkpoint trained as
    another agent than the config names is refused (PPO and A2C weights have the same shapes)."""
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"load: {run_dir} has no {CONFIG_FILE}; pass a run directory written by learn or rlopt train")
    cfg = load_config(run_dir / CONFIG_FILE, overrides)
    saved = _load_file(checkpoint) if saved is None else saved
    if "agent" not in saved:
        raise ConfigError(f"load: {checkpoint} is not an rlopt checkpoint (no agent state)")
    trained_as = _trained_as(saved)
    if trained_as is not None and trained_as != cfg.agent:
        raise ConfigError(f"load: {checkpoint} was trained as {trained_as} but {run_dir / CONFIG_FILE} says agent: {cfg.agent}")
    return cfg, saved["agent"], checkpoint


class UnreadableFile(ConfigError):
    """A file that is no readable rlopt checkpoint or saved agent (a torn write, another format)."""


def read_agent_state(path: Path, agent: str, config_file: str, what: str) -> Mapping[str, Any]:
    """The agent state of ``path`` (a run's checkpoint or a file of ``agent.save``) for evaluation
    under a config naming ``agent``: one trained as another agent is refused, as ``PPO.load``
    refuses it (PPO and A2C weights have the same shapes). Raises :class:`UnreadableFile` for a
    file that cannot be read, ConfigError (``what: ...``) for one of another agent."""
    try:
        saved = _load_file(path, "", "checkpoint")
    except ConfigError as err:
        raise UnreadableFile(str(err)) from None
    if not isinstance(saved.get("agent"), Mapping):
        raise UnreadableFile(f"{path} is not an rlopt checkpoint (no agent state)")
    trained_as = _trained_as(saved)
    if trained_as is not None and trained_as != agent:
        raise ConfigError(f"{what}: {path} was trained as {trained_as} but {config_file} says agent: {agent}; "
                          f"evaluate it with the run it was trained in")  # fmt: skip
    return saved["agent"]


def read_newest_agent_state(
    candidates: Sequence[Path], agent: str, config_file: str, what: str
) -> tuple[Path, Mapping[str, Any], list[str]]:
    """:func:`read_agent_state` of the first readable file of ``candidates`` (newest first): the
    file, its state and what was wrong with each unreadable one before it (see :func:`first_readable`)."""
    read = functools.partial(read_agent_state, agent=agent, config_file=config_file, what=what)
    return first_readable(candidates, read, UnreadableFile, what, " (pass another with --checkpoint)")


def _trained_as(saved: Mapping[str, Any]) -> str | None:
    """The agent name a checkpoint or saved-agent file records (None: a checkpoint from before issue 12)."""
    try:
        return json.loads(saved["config"]).get("agent") if isinstance(saved.get("config"), str) else None
    except (ValueError, AttributeError):
        return None


def _load_file(path: Path, what: str = "load", noun: str = "file") -> Mapping[str, Any]:
    """``torch.load(weights_only=True)`` of ``path``; anything unreadable is a one-line ConfigError
    (starting ``what: `` unless ``what`` is empty)."""
    prefix = f"{what}: " if what else ""
    try:
        saved = load_checkpoint(path)
    except Exception as err:  # not a torch file, a torn write, pickled code refused by weights_only
        raise ConfigError(f"{prefix}{path} is not a readable rlopt {noun} ({type(err).__name__})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{prefix}{path} is not a readable rlopt {noun} (holds a {type(saved).__name__})")
    return saved

