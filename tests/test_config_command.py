"""``rlopt config`` (issue 12, item 12): the fully resolved YAML of a preset, and every key documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rlopt.cli import EXIT_BAD_INPUT, main
from agents import check_config
from rlopt.config import DEFAULT_CRITIC_OPTIM, config_to_dict, load_config
from rlopt.config.keys import config_keys, field_docstrings, format_keys

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


def _leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    """Dotted keys of a config tree, stopping at the dict-valued fields (optim, schedule)."""
    out = set()
    for name, value in tree.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict) and dotted not in DICT_FIELDS:
            out |= _leaf_keys(value, f"{dotted}.")
        else:
            out.add(dotted)
    return out


DICT_FIELDS = {"actor.optim", "actor.schedule", "critic.optim", "critic.schedule", "entropy_coef", "ppo.clip"}


def test_config_prints_the_resolved_yaml_with_agent_defaults_and_overrides(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    preset = tmp_path / "a2c.yaml"
    preset.write_text("agent: a2c\nenv: {num_envs: 2}\n")  # no optimizer given: the agent's defaults
    assert main(["config", str(preset), "seed=7", "eval.every_steps=1000"]) == 0
    out = capsys.readouterr().out
    resolved = yaml.safe_load(out)
    assert resolved["seed"] == 7 and resolved["eval"]["every_steps"] == 1000 and resolved["env"]["num_envs"] == 2
    assert resolved["critic"]["optim"] == DEFAULT_CRITIC_OPTIM  # filled in, not {}
    assert resolved["actor"]["optim"] and resolved["actor"]["optim"]["name"]
    # Every key of the schema is there, with its default where nothing set it.
    assert _leaf_keys(resolved) == {k.key for k in config_keys()}
    assert resolved["checkpoint"]["keep"] == 2 and resolved["ppo"]["target_kl"] is None
    # And it is a valid config file: loading it gives the same resolved config.
    again = tmp_path / "again.yaml"
    again.write_text(out)
    assert main(["config", str(again)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == resolved


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_config_of_every_preset_round_trips(preset: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["config", str(preset)]) == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    resolved = check_config(load_config(preset))  # what RUN_DIR/config.yaml of a run would hold
    assert yaml.safe_load(printed.read_text()) == config_to_dict(resolved)
    assert check_config(load_config(printed)) == resolved  # the printed YAML is a config file in its own right
    assert resolved.actor.optim and resolved.critic.optim  # never {} once resolved


def test_config_keys_lists_every_key_with_type_default_and_doc(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--keys"]) == 0
    lines = capsys.readouterr().out.splitlines()
    keys = config_keys()
    assert len(lines) == 1 + len(keys)  # a header, then one line per key
    assert all(k.doc for k in keys), [k.key for k in keys if not k.doc]  # house rule: every field documented
    by_key = {line.split()[0]: line.split() for line in lines[1:]}
    assert by_key["eval.every_steps"][1:3] == ["int", "0"]
    assert by_key["actor.hidden"][1:4] == ["List[int]", "[64,", "64]"]
    assert by_key["ppo.target_kl"][1:3] == ["Optional[float]", "null"]
    assert by_key["env.id"][1:3] == ["str", "CartPole-v1"]
    row = next(line for line in lines if line.startswith("eval.max_episode_steps "))
    assert row.endswith("for an env without one (``rlopt.evaluation.DEFAULT_MAX_EPISODE_STEPS``).")  # joined


def test_field_docstrings_reads_the_string_under_each_annotated_field() -> None:
    source = '''
class A:
    x: int = 1
    """First."""
    y: str = "a"
    z: float = 2.0
    """Wrapped
    over two lines."""
'''
    assert field_docstrings(source) == {("A", "x"): "First.", ("A", "z"): "Wrapped\nover two lines."}


def test_format_keys_aligns_columns() -> None:
    lines = format_keys(config_keys()[:3]).splitlines()
    assert lines[0].split() == ["key", "type", "default", "description"]
    starts = {line.index(line.split()[1], len(line.split()[0])) for line in lines}
    assert len(starts) == 1  # the type column starts at the same offset on every line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["config"], "config: a config file is required"),
        (["config", "--keys", "configs/ppo_cartpole.yaml"], "config: --keys takes no config file"),
        (["config", "no/such/file.yaml"], "config file not found"),
        (["config", "configs/ppo_cartpole.yaml", "ppo.nope=1"], "ppo.nope: unknown key"),
        (["config", "configs/ppo_cartpole.yaml", "agent=foo"], "agent: unknown agent 'foo'"),
        (["config", "configs/ppo_cartpole.yaml", "eval.every_steps=-5"], "eval.every_steps must be >= 0"),
    ],
)
def test_config_bad_input_exits_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(argv) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert message in err and "\n" not in err and err.startswith("rlopt: error:")
