"""The typed config: presets, dotted overrides, layer precedence, YAML safety and round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agents import AGENTS, build_agent, check_config
from agents.acktr import ACKTR_CRITIC_OPTIM
from rlopt.config import DEFAULT_ACTOR_OPTIM, DEFAULT_CRITIC_OPTIM, Config, config_to_yaml, load_config, validate
from rlopt.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PRESETS = sorted(CONFIGS.glob("*.yaml"))
PPO_CARTPOLE = CONFIGS / "ppo_cartpole.yaml"


def test_presets_exist() -> None:
    assert len(PRESETS) >= 10


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_loads_validates_and_builds_its_agent(preset: Path) -> None:
    cfg = load_config(preset)
    assert cfg.agent in AGENTS
    assert preset.stem.startswith(cfg.agent)
    agent = build_agent(cfg)
    assert type(agent).name == cfg.agent
    torch.set_num_threads(1)


def test_dotted_overrides_apply_and_keep_sibling_keys() -> None:
    cfg = load_config(
        PPO_CARTPOLE,
        [
            "actor.optim.lr=1e-3",
            "critic.optim.name=rmsprop",
            "critic.optim.eps=1e-7",
            "env.num_envs=16",
            "actor.hidden=[32,16]",
            "ppo.clip={value: 0.1, name: cosine}",
            "entropy_coef=0.01",
            "seed=7",
        ],
    )
    assert cfg.actor.optim == {"name": "adam", "lr": 1e-3, "eps": 1e-5}
    assert cfg.critic.optim == {"name": "rmsprop", "lr": 0.001, "eps": 1e-7}
    assert cfg.env.num_envs == 16 and cfg.env.id == "CartPole-v1"
    assert cfg.actor.hidden == [32, 16]
    assert cfg.ppo.clip == {"value": 0.1, "name": "cosine"}
    assert cfg.entropy_coef == 0.01
    assert cfg.seed == 7
    assert cfg.batch_size == 16 * 32


def test_layer_precedence_defaults_file_values_overrides(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("agent: a2c\ngamma: 0.9\ngae_lambda: 0.9\nrollout: {n_steps: 16}\n")
    from_file = load_config(preset)
    assert (from_file.gamma, from_file.gae_lambda, from_file.threads) == (0.9, 0.9, Config().threads)
    with_values = load_config(preset, values={"gamma": 0.8, "rollout": {"n_steps": 8}})
    assert (with_values.gamma, with_values.gae_lambda, with_values.rollout.n_steps) == (0.8, 0.9, 8)
    with_all = load_config(preset, ["gamma=0.7"], values={"gamma": 0.8, "seed": 3})
    assert (with_all.gamma, with_all.seed, with_all.agent) == (0.7, 3, "a2c")
    assert load_config(None, ["gamma=0.5"]).gamma == 0.5
    assert load_config(None, ["gamma=0.5", "gamma=0.6"]).gamma == 0.6  # the last override wins


def test_yaml_exponent_floats_are_numbers(tmp_path: Path) -> None:
    # PyYAML (YAML 1.1) reads 1e-3 as a string; YAML 1.2 and every user read it as 0.001.
    preset = tmp_path / "p.yaml"
    preset.write_text("actor: {optim: {name: adam, lr: 1e-3, eps: 1E-8}}\ncritic: {optim: {name: sgd, lr: 5.0e2}}\n")
    cfg = load_config(preset)
    assert cfg.actor.optim == {"name": "adam", "lr": 0.001, "eps": 1e-8}
    assert cfg.critic.optim["lr"] == 500.0


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_config_to_yaml_round_trips_to_an_equal_config(preset: Path, tmp_path: Path) -> None:
    cfg = load_config(preset, ["entropy_coef={value: 0.01, name: linear, end_factor: 0.5}", "seed=11"])
    saved = tmp_path / "config.yaml"
    saved.write_text(config_to_yaml(cfg))
    assert load_config(saved) == cfg


def test_python_object_tag_is_rejected_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    preset = tmp_path / "evil.yaml"
    preset.write_text(f"agent: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="python/object"):
        load_config(preset)
    assert not marker.exists()


def test_duplicate_yaml_key_is_rejected(tmp_path: Path) -> None:
    preset = tmp_path / "dup.yaml"
    preset.write_text("agent: ppo\ngamma: 0.9\ngamma: 0.99\n")
    with pytest.raises(ConfigError, match=r"line 3.*duplicate key 'gamma'"):
        load_config(preset)


def test_yaml_merge_key_may_be_overridden_without_counting_as_duplicate(tmp_path: Path) -> None:
    preset = tmp_path / "merge.yaml"
    preset.write_text(
        "agent: a2c\nactor: {optim: &adam {name: adam, lr: 0.001}}\ncritic: {optim: {<<: *adam, lr: 0.002}}\n"
    )
    cfg = load_config(preset)
    assert cfg.actor.optim == {"name": "adam", "lr": 0.001}
    assert cfg.critic.optim == {"name": "adam", "lr": 0.002}


def test_unknown_key_lists_the_valid_keys_of_its_section() -> None:
    with pytest.raises(ConfigError, match=r"^ppo.clipp: unknown key; valid keys of ppo: epochs, minibatch_size, clip"):
        load_config(None, ["ppo.clipp=0.1"])


def test_missing_value_marker_is_rejected_instead_of_ignored() -> None:
    with pytest.raises(ConfigError, match=r"^seed: '\?\?\?'"):
        load_config(PPO_CARTPOLE, ["seed=???"])


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["critic.optim={name: lbfgs, lr: 0.1}"], "critic.optim"),  # step() needs a closure
        (["agent=a2c", "actor.optim={name: sparseadam, lr: 0.1}"], "actor.optim"),  # dense gradients
        (["agent=a2c", "actor.optim={name: sgd, lr: 0.1, momentum: .nan}"], "actor.optim"),  # nan after 2 steps
        (["agent=a2c", "actor.optim={name: adam, lr: 0.1, fused: true, foreach: true}"], "actor.optim"),
        (["agent=a2c", "actor.optim={name: adam, lr: 0.1, eps: abc}"], "actor.optim"),
        (["agent=a2c", "actor.schedule={name: step}"], "actor.schedule.step_size"),
        (["agent=npg", "actor.optim={name: adam, lr: 0.1}"], "actor.optim.name"),  # npg needs its trust region
        (["agent=ppo", "actor.optim={name: trust_region}"], "actor.optim.name"),
        (["agent=dqn"], "agent: unknown agent 'dqn'; valid: reinforce, a2c, npg, trpo, ppo"),
        (["ppo.minibatch_size=100000"], "ppo.minibatch_size"),
        (["agent=trpo", "actor.optim={name: trust_region, max_kl: {value: 0.01, name: cosine, min_factor: 2}}"],
         "actor.optim.max_kl.min_factor"),
        (["agent=trpo", "actor.optim={name: trust_region, backtrack_coef: 1.5}"], "actor.optim.backtrack_coef"),
        (["agent=trpo", "actor.optim={name: trust_region, cg_damping: 1" + "0" * 400 + "}"], "actor.optim"),
        (["ppo.clip={value: 0.0, name: linear}"], "ppo.clip"),
    ],
)
def test_check_config_rejects_unusable_update_rules_without_an_env(overrides: list[str], key: str) -> None:
    """load_config (schema) + check_config (agent class): what a sweep runs on every run up front."""
    with pytest.raises(ConfigError) as caught:
        check_config(load_config(None, overrides))
    assert str(caught.value).startswith(key)
    assert "\n" not in str(caught.value)


def test_validation_draws_no_random_numbers() -> None:
    # The stand-in optimizer layer is zeros, so validating cannot shift the seeded run's RNG.
    torch.manual_seed(123)
    before = torch.get_rng_state()
    check_config(load_config(CONFIGS / "trpo_pendulum.yaml", ["critic.optim.name=sgd"]))
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize(("agent", "line_search"), [("npg", False), ("trpo", True)])
def test_trust_region_agents_fill_in_the_whole_trust_region_spec(agent: str, line_search: bool) -> None:
    empty = check_config(load_config(None, [f"agent={agent}"]))
    assert empty.actor.optim == {
        "name": "trust_region", "metric": "fisher", "lr": 1.0, "max_kl": 0.01, "cg_iters": 10, "cg_damping": 0.1,
        "cg_tol": 1e-10, "backtrack_coef": 0.8, "max_backtracks": 10, "accept_ratio": 0.0, "line_search": line_search,
        "solver": "cg", "kfac_stat_decay": 0.95, "kfac_update_every": 1,
    }
    partial = check_config(load_config(None, [f"agent={agent}", "actor.optim={name: trust_region, max_kl: 0.02}"]))
    assert partial.actor.optim["max_kl"] == 0.02 and partial.actor.optim["line_search"] is line_search
    explicit = check_config(load_config(None, [f"agent={agent}", f"actor.optim.line_search={not line_search}"]))
    assert explicit.actor.optim["line_search"] is (not line_search)  # the config decides when it says so
    assert check_config(empty) == empty  # resolving is idempotent


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_check_config_fills_the_optimizer_defaults_and_leaves_its_input_alone(agent: str) -> None:
    cfg = load_config(None, [f"agent={agent}"])
    assert cfg.actor.optim == {} and cfg.critic.optim == {}  # the schema's "the agent's default"
    resolved = check_config(cfg)
    assert cfg.actor.optim == {} and resolved is not cfg
    assert resolved.critic.optim == (ACKTR_CRITIC_OPTIM if agent == "acktr" else DEFAULT_CRITIC_OPTIM)
    if agent not in ("npg", "trpo", "acktr"):
        assert resolved.actor.optim == DEFAULT_ACTOR_OPTIM


def test_saved_config_yaml_shows_the_optimizer_specs_actually_used(tmp_path: Path) -> None:
    from agents import NPG

    agent = NPG.from_config(None, total_steps=64, env={"num_envs": 1}, rollout={"n_steps": 64}, eval={"episodes": 0})
    agent.learn(run_dir=tmp_path, progress=False)
    torch.set_num_threads(1)
    saved = load_config(tmp_path / "config.yaml")
    assert saved.actor.optim == {**agent.cfg.actor.optim, "line_search": False} and saved.actor.optim["cg_iters"] == 10
    assert saved.critic.optim == DEFAULT_CRITIC_OPTIM
    assert agent.actor_optimizer.param_groups[0]["max_kl"] == saved.actor.optim["max_kl"]
    text = (tmp_path / "config.yaml").read_text()
    assert "optim: {}" not in text and "name: trust_region" in text


def test_validate_checks_a_config_built_in_python() -> None:
    cfg = Config()
    validate(cfg)
    cfg.gamma = "high"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="^gamma"):
        validate(cfg)
    cfg = Config()
    cfg.actor.hidden = [[64]]  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"^actor.hidden\[0\]"):
        validate(cfg)


# Issue 12, item 14: dict overrides typed in a shell, without the space YAML needs after ':'.
@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("{name:adam,lr:3e-4}", {"name": "adam", "lr": 3e-4}),
        ("{name: adam, lr: 3e-4}", {"name": "adam", "lr": 3e-4}),
        ("{a:1,b:{c:2}}", {"a": 1, "b": {"c": 2}}),
        ("{hidden:[64,64],optim:{name:sgd,lr:0.1}}", {"hidden": [64, 64], "optim": {"name": "sgd", "lr": 0.1}}),
        ("{betas:[0.9,0.99],name:adam}", {"betas": [0.9, 0.99], "name": "adam"}),
        ("[{a:1},{b:2}]", [{"a": 1}, {"b": 2}]),
        ("{value:0.2,name:linear}", {"value": 0.2, "name": "linear"}),
        ("{a:}", {"a": None}),
        # outside braces nothing changes: module:Env ids, URLs, YAML lists of plain strings
        ("gymnasium_robotics:FetchReach-v4", "gymnasium_robotics:FetchReach-v4"),
        ("http://example.org:8080/x", "http://example.org:8080/x"),
        ("[a:1,b]", ["a:1", "b"]),
        ("{a: [b:c]}", {"a": ["b:c"]}),
        # quoted text is never rewritten
        ('{id: "my_pkg:MyEnv-v0"}', {"id": "my_pkg:MyEnv-v0"}),
        ('{id:"my_pkg:MyEnv-v0"}', {"id": "my_pkg:MyEnv-v0"}),
        ("{msg:'a:b, c:d',n:1}", {"msg": "a:b, c:d", "n": 1}),
        ('{msg:"say \\"x:y\\"",n:1}', {"msg": 'say "x:y"', "n": 1}),
        ('"{a:1}"', "{a:1}"),
        ("'{a:1}'", "{a:1}"),
        ("{a:it's,b:1}", {"a": "it's", "b": 1}),
        # the first ':' of an entry ends its key (no rlopt key holds a ':'); the rest belong to the value
        ("{id:my_pkg:MyEnv-v0}", {"id": "my_pkg:MyEnv-v0"}),
        ("{id:my_pkg:MyEnv-v0,num_envs:4}", {"id": "my_pkg:MyEnv-v0", "num_envs": 4}),
        ("{url:http://example.org:80/a,n:2}", {"url": "http://example.org:80/a", "n": 2}),
    ],
)
def test_dict_override_without_spaces_parses_like_yaml_with_spaces(text: str, parsed: object) -> None:
    from omegaconf import OmegaConf

    from rlopt.config.loading import parse_override

    assert OmegaConf.to_container(parse_override(f"k={text}"))["k"] == parsed


@pytest.mark.parametrize("text", ['{"name:adam": 1}', '{"name:adam"}', "{optim: {'name:adam': 1}}"])
def test_dict_override_with_a_colon_in_a_key_shows_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(PPO_CARTPOLE, [f"actor.optim={text}"])
    message = str(err.value)
    assert message.startswith("actor.optim: ") and "\n" not in message
    assert "actor.optim={name: adam, lr: 3e-4}" in message and "actor.optim.name=adam actor.optim.lr=3e-4" in message


def test_dict_override_without_spaces_from_the_shell_end_to_end() -> None:
    import subprocess
    import sys

    import yaml

    done = subprocess.run(
        [sys.executable, "-m", "rlopt", "config", "ppo_cartpole", "actor.optim={name:adam,lr:3e-4}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    optim = yaml.safe_load(done.stdout)["actor"]["optim"]
    assert optim["name"] == "adam" and optim["lr"] == 0.0003
    assert optim == load_config(PPO_CARTPOLE, ["actor.optim={name: adam, lr: 3e-4}"]).actor.optim  # the spaced form
