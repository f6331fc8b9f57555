"""Bad input never gives a traceback: exit code 2, one line on stderr naming the key, nothing written.

Issue "Runs you can trust", item 5. Every case runs ``rlopt.cli.main`` in-process and fails before
any training step, so the table is fast. The hypothesis fuzz drives the same validation path
(``load_config`` + ``build_agent`` + ``Trainer`` construction, i.e. everything ``rlopt train``
does before its first write) with adversarial dotted overrides built from the real config keys.
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import build_agent
from rlopt.cli import EXIT_BAD_INPUT, main
from rlopt.config import Config, config_to_yaml, load_config
from rlopt.errors import ConfigError
from rlopt.trainer import Trainer

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PPO = str(CONFIGS / "ppo_cartpole.yaml")  # rollout batch n_steps * num_envs = 32 * 8 = 256
TRPO = str(CONFIGS / "trpo_pendulum.yaml")
A2C = str(CONFIGS / "a2c_cartpole.yaml")
REINFORCE = str(CONFIGS / "reinforce_cartpole.yaml")
MAX_MESSAGE_CHARS = 400
"""'Short': the longest message (all optimizer names) is ~300 characters."""


@dataclass(frozen=True)
class BadInput:
    """``argv`` for main (``{tmp}`` is the test's tmp dir); ``expect``: a substring naming the key."""

    name: str
    argv: tuple[str, ...]
    expect: str
    files: dict[str, bytes] = field(default_factory=dict)
    """Files written under ``{tmp}`` before the run (their tree must be unchanged after it)."""


def _train(preset: str, *overrides: str) -> tuple[str, ...]:
    return ("train", preset, *overrides, "--run-dir", "{tmp}/run", "--no-progress")


_RUN_CONFIG = config_to_yaml(load_config(PPO)).encode()


def _alias_bomb(levels: int = 7, width: int = 9) -> bytes:
    """A "billion laughs" YAML: ``width ** levels`` leaves from ``levels * width`` aliases."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


_ALIAS_BOMB = _alias_bomb()


class WrongResetShape(CartPoleEnv):
    """Declares a 4-D observation space but ``reset`` returns 3 numbers."""

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        obs, info = super().reset(seed=seed, options=options)
        return obs[:3], info


class WrongStepShape(CartPoleEnv):
    """Declares a 4-D observation space but ``step`` returns 5 numbers."""

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        return np.append(obs, 0.0).astype(np.float32), reward, terminated, truncated, info


gym.register("WrongResetShape-v0", entry_point=f"{__name__}:WrongResetShape", max_episode_steps=500)
gym.register("WrongStepShape-v0", entry_point=f"{__name__}:WrongStepShape", max_episode_steps=500)

CASES = [
    # unknown keys and wrong types
    BadInput("unknown key", _train(PPO, "foo=1"), "foo: unknown key"),
    BadInput("unknown nested key", _train(PPO, "actor.optim_x=1"), "actor.optim_x: unknown key"),
    BadInput("wrong type float", _train(PPO, "gamma=abc"), "gamma"),
    BadInput("wrong type for list", _train(PPO, "actor.hidden=abc"), "actor.hidden"),
    BadInput("nested list in List[int]", _train(PPO, "actor.hidden=[[64]]"), "actor.hidden"),
    BadInput("hidden size 0", _train(PPO, "actor.hidden=[64,0]"), "actor.hidden"),
    BadInput("hidden layer wider than its bound (weights fit, activations would not)", _train(PPO, "critic.hidden=[100000000]"),
             "critic.hidden: each layer in [1, 65536] units, got 100000000"),
    BadInput("more hidden layers than the bound", _train(PPO, f"actor.hidden=[{','.join(['4'] * 101)}]"),
             "actor.hidden: at most 100 layers, got 101"),
    BadInput("non-integer seed", _train(PPO, "seed=1.5"), "seed"),
    BadInput("negative seed", _train(PPO, "seed=-1"), "seed"),
    BadInput("missing value marker", _train(PPO, "seed=???"), "seed"),
    BadInput("override without =", _train(PPO, "gamma0.9"), "gamma0.9"),
    BadInput("unparsable override value", _train(PPO, "actor.hidden=[1,"), "actor.hidden"),
    BadInput("dict override key holding a colon", _train(PPO, 'actor.optim={"name:adam": 1, lr: 3e-4}'),
             "actor.optim: the dict key 'name:adam'"),
    # ranges
    BadInput("negative lr", _train(PPO, "actor.optim.lr=-1e-3"), "actor.optim.lr"),
    BadInput("zero lr", _train(PPO, "critic.optim.lr=0"), "critic.optim.lr"),
    BadInput("nan lr", _train(PPO, "actor.optim.lr=nan"), "actor.optim.lr"),
    BadInput("gamma above 1", _train(PPO, "gamma=1.5"), "gamma"),
    BadInput("gamma below 0", _train(PPO, "gamma=-0.01"), "gamma"),
    BadInput("gae_lambda 2", _train(PPO, "gae_lambda=2"), "gae_lambda"),
    BadInput("num_envs 0", _train(PPO, "env.num_envs=0"), "env.num_envs"),
    BadInput("minibatch > rollout batch", _train(PPO, "ppo.minibatch_size=257"), "ppo.minibatch_size"),
    BadInput("negative max_grad_norm", _train(PPO, "actor.max_grad_norm=-1"), "actor.max_grad_norm"),
    BadInput("total_steps 0", _train(PPO, "total_steps=0"), "total_steps"),
    BadInput("threads 0", _train(PPO, "threads=0"), "threads"),
    BadInput("negative ppo clip", _train(PPO, "ppo.clip=-0.1"), "ppo.clip"),
    BadInput("network too large", _train(PPO, "critic.hidden=[1000000000000]"), "critic.hidden"),
    # names
    BadInput("unknown agent", _train(PPO, "agent=dqn"), "agent"),
    BadInput("unknown optimizer", _train(PPO, "actor.optim.name=adamm"), "actor.optim.name"),
    BadInput("unknown schedule", _train(PPO, "actor.schedule.name=exponential"), "actor.schedule.name"),
    BadInput("schedule kwarg typo", _train(PPO, "actor.schedule.end_factr=0.1"), "actor.schedule.end_factr"),
    BadInput("unknown activation", _train(PPO, "actor.activation=swish"), "actor.activation"),
    BadInput("eval max_episode_steps 0", _train(PPO, "eval.max_episode_steps=0"), "eval.max_episode_steps"),
    BadInput("squash_mean on Discrete actions", _train(PPO, "actor.squash_mean=true"), "actor.squash_mean"),
    BadInput("unknown env", _train(PPO, "env.id=NoSuchEnv-v0"), "env.id"),
    BadInput("unknown env module", _train(PPO, "env.id=nosuchmodule:Foo-v0"), "env.id"),
    BadInput("unknown device", _train(PPO, "device=tpu"), "device"),
    BadInput("unknown baseline", _train(REINFORCE, "reinforce.baseline=foo"), "reinforce.baseline"),
    # optimizer and schedule specs only an agent would otherwise discover
    BadInput("trust region max_kl -1", _train(TRPO, "actor.optim.max_kl=-1"), "actor.optim.max_kl"),
    BadInput("trust region cg_iters 0", _train(TRPO, "actor.optim.cg_iters=0"), "actor.optim.cg_iters"),
    BadInput("trust region option typo", _train(TRPO, "actor.optim.cg_iter=5"), "actor.optim.cg_iter"),
    BadInput("trust_region for ppo", _train(PPO, "actor.optim.name=trust_region"), "actor.optim.name"),
    BadInput("adam for trpo", _train(TRPO, "actor.optim.name=adam"), "actor.optim.name"),
    BadInput("optimizer without closure-free step", _train(TRPO, "critic.optim.name=lbfgs"), "critic.optim"),
    BadInput("optimizer kwarg of wrong type", _train(A2C, "actor.optim.eps=abc"), "actor.optim"),
    BadInput("entropy schedule without value", _train(PPO, "entropy_coef={name: linear}"), "entropy_coef.value"),
    BadInput(
        "entropy schedule kwarg typo",
        _train(PPO, "entropy_coef={value: 0.01, name: linear, end: 0}"),
        "entropy_coef.end",
    ),
    BadInput("entropy_coef a string", _train(PPO, "entropy_coef=lots"), "entropy_coef"),
    # files
    BadInput("missing config file", ("train", "{tmp}/nope.yaml", "--run-dir", "{tmp}/run"), "not found"),
    BadInput(
        "bad YAML syntax",
        ("train", "{tmp}/bad.yaml", "--run-dir", "{tmp}/run"),
        "malformed YAML",
        {"bad.yaml": b"agent: ppo\nenv: {id: CartPole-v1\n"},
    ),
    BadInput(
        "YAML list",
        ("train", "{tmp}/list.yaml", "--run-dir", "{tmp}/run"),
        "must hold a mapping",
        {"list.yaml": b"- agent: ppo\n- gamma: 0.9\n"},
    ),
    BadInput(
        "non-UTF-8 file",
        ("train", "{tmp}/latin1.yaml", "--run-dir", "{tmp}/run"),
        "UTF-8",
        {"latin1.yaml": "agent: ppo\nenv: {id: Cart\u00e9Pole-v1}\n".encode("latin-1")},
    ),
    BadInput(
        "python object tag",
        ("train", "{tmp}/evil.yaml", "--run-dir", "{tmp}/run"),
        "python/object",
        {"evil.yaml": b"agent: !!python/object/apply:os.getcwd []\n"},
    ),
    BadInput(
        "unknown key in file",
        ("train", "{tmp}/typo.yaml", "--run-dir", "{tmp}/run"),
        "rollout.nsteps",
        {"typo.yaml": b"agent: ppo\nrollout: {nsteps: 64}\n"},
    ),
    # command line
    BadInput("unknown command", ("fit", PPO), "invalid choice"),
    BadInput("run dir under a file", ("train", PPO, "--run-dir", "{tmp}/f.txt/run"), "--run-dir", {"f.txt": b"x"}),
    BadInput("eval of a missing run dir", ("eval", "{tmp}/run"), "eval"),
    BadInput(
        "eval --episodes 0",
        ("eval", "{tmp}/done", "--episodes", "0"),
        "--episodes",
        {"done/config.yaml": _RUN_CONFIG},
    ),
    BadInput(
        "resume from a corrupt checkpoint",
        ("train", "--resume", "{tmp}/done"),
        "--resume",
        {"done/config.yaml": _RUN_CONFIG, "done/checkpoints/step_000000000256.pt": b"not a checkpoint"},
    ),
    BadInput(
        "eval of a corrupt checkpoint",
        ("eval", "{tmp}/done", "--episodes", "1"),
        "--checkpoint",
        {"done/config.yaml": _RUN_CONFIG, "done/checkpoints/step_000000000256.pt": b"not a checkpoint"},
    ),
    # issue 12, "Faults to fix" items 4 and 5
    BadInput("total_steps with 400 digits", _train(PPO, "total_steps=" + "9" * 400), "total_steps"),
    BadInput("total_steps 10**30", _train(PPO, "total_steps=1" + "0" * 30), "total_steps"),
    BadInput("eval.episodes 10 million", _train(PPO, "eval.episodes=10000000"), "eval.episodes"),
    BadInput("negative entropy_coef", _train(PPO, "entropy_coef=-0.01"), "entropy_coef"),
    BadInput(
        "negative scheduled entropy_coef", _train(PPO, "entropy_coef={value: -0.01, name: linear}"), "entropy_coef"
    ),
    BadInput("actor optimizer maximize", _train(A2C, "actor.optim.maximize=true"), "actor.optim.maximize"),
    BadInput("critic optimizer maximize", _train(PPO, "critic.optim.maximize=true"), "critic.optim.maximize"),
    BadInput("empty run dir name", ("train", PPO, "--run-dir", "", "--no-progress"), "--run-dir"),
    BadInput("env reset returns the wrong shape", _train(PPO, f"env.id={__name__}:WrongResetShape-v0"), "reset"),
    BadInput("env step returns the wrong shape", _train(PPO, f"env.id={__name__}:WrongStepShape-v0"), "step"),
    BadInput(
        "empty YAML file", ("train", "{tmp}/empty.yaml", "--run-dir", "{tmp}/run"), "empty", {"empty.yaml": b""}
    ),
    BadInput(
        "YAML file of comments only",
        ("train", "{tmp}/comments.yaml", "--run-dir", "{tmp}/run"),
        "empty",
        {"comments.yaml": b"# agent: ppo\n"},
    ),
    BadInput(
        "YAML alias bomb",
        ("train", "{tmp}/bomb.yaml", "--run-dir", "{tmp}/run"),
        "alias",
        {"bomb.yaml": _ALIAS_BOMB},
    ),
    BadInput(
        "eval --episodes 10 million",
        ("eval", "{tmp}/done", "--episodes", "10000000"),
        "--episodes",
        {"done/config.yaml": _RUN_CONFIG, "done/checkpoints/step_000000000256.pt": b"not a checkpoint"},
    ),
]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>") for p in root.rglob("*")}


def _run_bad(argv: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run main; assert the bad-input contract; return the stderr line."""
    code = main([arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    torch.set_num_threads(1)  # an agent built before the error may have changed it
    out, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rlopt: error: ")
    assert len(lines[0]) <= MAX_MESSAGE_CHARS, lines[0]
    return lines[0]


def test_bad_input_table_has_at_least_35_cases() -> None:
    assert len(CASES) >= 35
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, content in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    before = _tree(tmp_path)
    line = _run_bad(case.argv, tmp_path, capsys)
    assert case.expect in line
    assert not (tmp_path / "run").exists()
    assert _tree(tmp_path) == before  # nothing else written either


def test_existing_non_empty_run_dir_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("precious")
    before = _tree(tmp_path)
    line = _run_bad(_train(PPO, "total_steps=256"), tmp_path, capsys)
    assert "--run-dir" in line and "not empty" in line
    assert _tree(tmp_path) == before
    (run_dir / "notes.txt").unlink()
    file_in_place = tmp_path / "run_file"
    file_in_place.write_text("precious")
    line = _run_bad(("train", PPO, "--run-dir", str(file_in_place)), tmp_path, capsys)
    assert "--run-dir" in line and "is a file" in line
    assert file_in_place.read_text() == "precious"


def test_bad_input_fails_before_the_default_run_dir_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # without --run-dir, runs/<agent>-<env>-<time> is relative to cwd
    _run_bad(("train", PPO, "env.id=NoSuchEnv-v0"), tmp_path, capsys)
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------ fuzz

def _dotted_keys(section: type, prefix: str = "") -> list[str]:
    """Every real key of the Config dataclasses, nested sections included, dotted."""
    keys: list[str] = []
    hints = typing.get_type_hints(section)
    for f in fields(section):
        key = f"{prefix}{f.name}"
        keys.append(key)
        if is_dataclass(hints[f.name]):
            keys += _dotted_keys(hints[f.name], f"{key}.")
    return keys


REAL_KEYS = _dotted_keys(Config)
_SPEC_KEYS = {
    "optim": ("name", "lr", "eps", "betas", "momentum", "weight_decay", "max_kl", "cg_iters", "cg_damping",
              "line_search", "metric", "backtrack_coef", "max_backtracks", "capturable", "foreach"),
    "schedule": ("name", "end_factor", "horizon", "step_size", "gamma", "min_factor", "period", "warmup_steps"),
    "entropy_coef": ("value", "name", "end_factor", "warmup_steps"),
    "clip": ("value", "name", "min_factor", "timescale"),
}
FUZZ_KEYS = sorted(
    {*REAL_KEYS, "actor.hidden[0]", "critic.hidden[1]", "actor.optim_x", "ppo.clipp", "nope", "actor..optim"}
    | {f"{key}.{sub}" for key in REAL_KEYS for leaf, subs in _SPEC_KEYS.items() if key.endswith(leaf) for sub in subs}
)
# Integers far from any size a machine could allocate, or tiny: a medium width (2**27) would be a
# legitimately huge but valid network that takes minutes to initialise.
ADVERSARIAL_VALUES = [
    "", " ", "null", "~", "true", "false", "[", "{", "]", "}", "[1,", "{a: 1", "[]", "{}", "[[]]", "[1, [2]]",
    "${nope}", "${oc.env:NO_SUCH_VAR_RLOPT}", "???", "nan", "inf", "-inf", ".nan", "-.inf", "1e400", "-0.0",
    "0", "1", "-1", "2", "3", "0.5", "1e-3", "-1e-3", "1.5", "2147483648", "9223372036854775808",
    "-9223372036854775809", "1" + "0" * 30, "9" * 400, "'0.1'", '"0.1"', "abc", "ünï©ødé", "💥", "a=b", "=",
    "!!python/object/apply:os.getcwd []", "&a 1", "*a", "%TAG", "@", "`", "|", ">", "- 1", "{name: linear}",
    "{value: 0.1, name: cosine}", "{value: -1}", "{name: adam, lr: -1}", "{name: adam, lr: 0.1, betas: [1, 2]}",
    "{name: trust_region, max_kl: 0.01}", "{name: sgd, lr: 1e308, momentum: 0.9}", "[64, -1]", "[0]", "[abc]",
    "[1e400]", "adam", "sgd", "lbfgs", "trust_region", "linear", "cosine", "step", "fisher", "tanh", "relu",
    "CartPole-v1", "Pendulum-v1", "ppo", "trpo", "npg", "a2c", "reinforce", "cpu", "cuda", "cuda:0", "value",
    "none",
]
VALUES = st.one_of(
    st.sampled_from(ADVERSARIAL_VALUES),
    st.integers(min_value=-3, max_value=300).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)
OVERRIDES = st.builds(lambda key, value: f"{key}={value}", st.sampled_from(FUZZ_KEYS), VALUES)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(preset=st.sampled_from([PPO, TRPO, A2C, REINFORCE]), overrides=st.lists(OVERRIDES, min_size=1, max_size=3))
def test_fuzzed_overrides_either_build_or_raise_config_error(preset: str, overrides: list[str]) -> None:
    """Everything ``rlopt train`` does before writing either succeeds or raises ConfigError."""
    try:
        cfg = load_config(preset, overrides)
        trainer = Trainer(build_agent(cfg), run_dir=None, progress=False)
        trainer.envs.close()
    except ConfigError as err:
        assert str(err).strip()
    finally:
        torch.set_num_threads(1)


def test_fuzz_keys_cover_every_config_field() -> None:
    assert {"seed", "env.num_envs", "actor.optim", "ppo.clip", "health.max_consecutive_faults"} <= set(REAL_KEYS)
    assert "actor.optim.lr" in FUZZ_KEYS and "entropy_coef.value" in FUZZ_KEYS
    assert len(REAL_KEYS) == len(set(REAL_KEYS)) > 40


def test_config_error_from_fuzzed_input_reaches_the_cli_as_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A sample of the fuzz alphabet through main itself: the in-process property above covers the
    # rest, and main maps every ConfigError to this contract.
    for value in ("[", "${nope}", "9" * 400, "ünï©ødé", "!!python/object/apply:os.getcwd []", ""):
        _run_bad(_train(PPO, f"actor.optim.lr={value}"), tmp_path, capsys)
    assert os.listdir(tmp_path) == []
