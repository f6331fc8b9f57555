"""Presets by name: ``rlopt train ppo_cartpole`` from any directory, in a source checkout, an editable
install or an installed wheel.

The presets are the YAML files of the top-level ``configs/`` (its ``sweeps/`` hold sweep files, not
presets). A wheel carries the same files as the data-only package ``rlopt._configs``
(``pyproject.toml`` maps ``configs/`` there), so git holds one copy. Torch-free and cheap to import
(``rlopt.config.loading`` resolves every config argument through :func:`resolve_config`).
"""

from __future__ import annotations

import os
from pathlib import Path

from rlopt.errors import ConfigError

PRESET_SUFFIX = ".yaml"
"""A preset is ``<name>.yaml``; ``rlopt train ppo_cartpole.yaml`` (no such file here) names one too."""
PACKAGED_DIR = "_configs"
"""Where a wheel holds the presets inside the ``rlopt`` package (``[tool.setuptools.package-dir]``)."""
SOURCE_DIR = "configs"
"""The presets' directory beside the ``rlopt`` package in a source checkout (and editable install)."""
MAX_SUGGESTIONS = 1
"""Close preset names an unknown name suggests, closest first (``difflib.get_close_matches``)."""
SUGGESTION_CUTOFF = 0.6
"""Similarity (difflib ratio) a preset name needs to be suggested."""


def preset_dir() -> Path:
    """The directory holding the presets: ``rlopt/_configs`` of an installed wheel, else the
    checkout's top-level ``configs/`` beside the package. ConfigError if neither exists."""
    from importlib.resources import files

    package = files("rlopt")  # a pathlib.Path for a package on disk (pip installs wheels unzipped)
    package = package if isinstance(package, Path) else Path(__file__).parent
    packaged = package / PACKAGED_DIR
    if packaged.is_dir():
        return packaged
    source = package.resolve().parent / SOURCE_DIR
    if source.is_dir():
        return source
    raise ConfigError(f"no presets found: neither {packaged} nor {source} exists (a broken install? reinstall rlopt)")


def preset_names() -> list[str]:
    """Every preset's name (``ppo_cartpole``), sorted; whatever YAML files the directory holds."""
    return sorted(path.name.removesuffix(PRESET_SUFFIX) for path in preset_dir().glob(f"*{PRESET_SUFFIX}"))


def is_preset_name(value: str) -> bool:
    """Whether ``value`` can name a preset: a bare file name (no directory part), ``.yaml`` optional."""
    separators = {"/", os.sep, os.altsep or "/"}
    return bool(value.strip()) and value not in (".", "..") and not any(sep in value for sep in separators)


def preset_path(name: str) -> Path:
    """The file of preset ``name`` (``ppo_cartpole`` or ``ppo_cartpole.yaml``); an unknown name is a
    one-line ConfigError listing the presets and suggesting the closest one."""
    stem = name.removesuffix(PRESET_SUFFIX)
    path = preset_dir() / f"{stem}{PRESET_SUFFIX}"
    if is_preset_name(name) and path.is_file():
        return path
    import difflib

    names = preset_names()
    close = difflib.get_close_matches(stem, names, n=MAX_SUGGESTIONS, cutoff=SUGGESTION_CUTOFF)
    hint = f"; did you mean {' or '.join(close)}?" if close else "."
    raise ConfigError(f"unknown preset {name!r} and no such file{hint} Presets: {', '.join(names)} (rlopt presets)")


def resolve_config(value: str | Path, base_dir: Path | None = None) -> Path:
    """What a config argument names: an existing file (relative to ``base_dir``, else to the working
    directory) is that file; otherwise a bare name is a preset (:func:`preset_path`). Anything else,
    and any ``Path`` object, is returned as the path it spells, for the caller to report as missing."""
    path = Path(value).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if path.is_file() or isinstance(value, Path) or not is_preset_name(value):
        return path
    return preset_path(value)


def describe_presets() -> list[str]:
    """One line per preset, sorted by name: ``name  agent  env id  total_steps``, read from each
    YAML with the safe loader; a key the file leaves out shows the schema's default."""
    from rlopt.config.schema import Config
    from rlopt.config.yaml_io import read_yaml

    default, directory = Config(), preset_dir()
    rows = []
    for name in preset_names():
        raw = read_yaml(directory / f"{name}{PRESET_SUFFIX}")
        env = raw.get("env") if isinstance(raw.get("env"), dict) else {}
        steps = raw.get("total_steps", default.total_steps)
        rows.append((name, str(raw.get("agent", default.agent)), str(env.get("id", default.env.id)),
                     str(steps)))  # fmt: skip
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(4)]
    return [f"{n:<{widths[0]}}  {a:<{widths[1]}}  {e:<{widths[2]}}  {s:>{widths[3]}} steps" for n, a, e, s in rows]
