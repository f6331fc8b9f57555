"""Presets by name (issue 12): ``rlopt train ppo_cartpole`` and ``rlopt presets`` from any working
directory, in this checkout (editable install) and from an installed wheel, whose ``rlopt/_configs``
must hold the very files of the top-level ``configs/``."""

from __future__ import annotations

import importlib
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from agents import check_config
from rlopt.cli import main
from rlopt.config import Config, config_to_yaml, load_config, read_yaml
from rlopt.errors import ConfigError
from rlopt.presets import PACKAGED_DIR, describe_presets, preset_dir, preset_names, resolve_config
from rlopt.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SOURCES = ("pyproject.toml", "README.md", "rlopt", "agents", "configs")
"""What a wheel is built from (the packaging section of pyproject.toml names nothing else)."""
TINY_TRAIN = ("total_steps=256", "env.num_envs=2", "rollout.n_steps=64", "ppo.minibatch_size=64",
              "eval.episodes=1", "eval.max_episode_steps=50")  # fmt: skip


def clean_env() -> dict[str, str]:
    """The environment for a subprocess: nothing on PYTHONPATH, so only an install can provide rlopt."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def resolved_yaml(path: Path) -> str:
    """What ``rlopt config PATH`` prints."""
    return config_to_yaml(check_config(load_config(path)))


def test_checkout_presets_are_the_top_level_configs() -> None:
    assert preset_dir() == CONFIGS
    assert preset_names() == sorted(p.stem for p in CONFIGS.glob("*.yaml"))  # sweeps/ hold no presets
    assert "ppo_cartpole" in preset_names() and "actor_optimizer" not in preset_names()


def test_config_by_name_from_another_directory(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "rlopt", "config", "ppo_cartpole"], cwd=tmp_path, env=clean_env(),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == resolved_yaml(CONFIGS / "ppo_cartpole.yaml")


def test_presets_lists_every_yaml_of_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    presets = sorted(CONFIGS.glob("*.yaml"))
    assert [line.split()[0] for line in lines] == [p.stem for p in presets]
    for line, preset in zip(lines, presets):
        raw = read_yaml(preset)
        assert line.split() == [preset.stem, raw["agent"], raw["env"]["id"], str(raw["total_steps"]), "steps"]


def test_presets_picks_up_any_yaml_and_fills_schema_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "b_custom.yaml").write_text("agent: a2c\nenv: {id: Pendulum-v1}\ntotal_steps: 1234\n")
    (tmp_path / "a_minimal.yaml").write_text("seed: 3\n")  # agent, env and total_steps from the schema
    (tmp_path / "notes.txt").write_text("not a preset\n")
    monkeypatch.setattr("rlopt.presets.preset_dir", lambda: tmp_path)
    default = Config()
    assert [line.split() for line in describe_presets()] == [
        ["a_minimal", default.agent, default.env.id, str(default.total_steps), "steps"],
        ["b_custom", "a2c", "Pendulum-v1", "1234", "steps"],
    ]
    assert load_config("b_custom.yaml").total_steps == 1234


@pytest.mark.parametrize("name", ["ppo_cartpole", "ppo_cartpole.yaml"])
def test_a_name_loads_the_preset_file(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config(name) == CONFIGS / "ppo_cartpole.yaml"
    assert load_config(name) == load_config(CONFIGS / "ppo_cartpole.yaml")


def test_an_existing_file_is_a_path_before_it_is_a_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    local = yaml.safe_load((CONFIGS / "ppo_cartpole.yaml").read_text())
    local["seed"] = 42
    (tmp_path / "ppo_cartpole.yaml").write_text(yaml.safe_dump(local))
    assert load_config("ppo_cartpole.yaml").seed == 42  # the file in the working directory
    assert load_config("ppo_cartpole").seed == load_config(CONFIGS / "ppo_cartpole.yaml").seed == 0  # the preset
    assert main(["config", str(tmp_path / "ppo_cartpole.yaml")]) == 0
    assert "seed: 42" in capsys.readouterr().out.splitlines()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.yaml").write_text(yaml.safe_dump(local))
    assert main(["config", "sub/mine.yaml"]) == 0  # a relative path, as before presets had names
    assert "seed: 42" in capsys.readouterr().out.splitlines()


def test_unknown_name_exits_2_naming_the_closest_preset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in (["config", "ppo_cartpol"], ["train", "ppo_cartpol", "--run-dir", str(tmp_path / "run")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("rlopt: error: unknown preset 'ppo_cartpol'"), err
        assert "did you mean ppo_cartpole?" in err, err
        assert all(name in err for name in preset_names()), err
    assert not (tmp_path / "run").exists()
    assert main(["config", "zzzz"]) == 2
    err = capsys.readouterr().err
    assert "did you mean" not in err and "Presets: a2c_cartpole," in err, err


def test_a_missing_path_is_reported_as_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["config", str(tmp_path / "ppo_cartpole.yaml")]) == 2  # a path, never looked up as a name
    assert "config file not found" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Path("ppo_cartpole"))  # a Path object is always a path


def test_sweep_base_by_name_and_by_path(tmp_path: Path) -> None:
    by_name = tmp_path / "by_name.yaml"
    by_name.write_text("name: by_name\nbase: trpo_cartpole\nseeds: [0]\n")
    sweep = load_sweep(by_name)
    assert sweep.base == CONFIGS / "trpo_cartpole.yaml"
    assert sweep.runs[0].config.agent == "trpo"
    shutil.copy(CONFIGS / "a2c_cartpole.yaml", tmp_path / "local.yaml")
    by_path = tmp_path / "by_path.yaml"
    by_path.write_text("name: by_path\nbase: local.yaml\nseeds: [0]\n")  # relative to the sweep file
    assert load_sweep(by_path).base == tmp_path / "local.yaml"
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: typo\nbase: trpo_cartpol\nseeds: [0]\n")
    with pytest.raises(ConfigError, match="sweep typo: base: unknown preset 'trpo_cartpol'.*did you mean trpo_cartpole"):
        load_sweep(typo)


def test_python_api_takes_a_preset_name() -> None:
    from agents import PPO

    agent = PPO.from_config("ppo_cartpole", total_steps=256)
    assert agent.cfg.env.id == "CartPole-v1" and agent.cfg.total_steps == 256


# ------------------------------------------------------------------------------------------- the wheel


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``pip wheel`` of a copy of this checkout, installed with ``pip install --no-deps`` into a fresh
    venv that sees this interpreter's site-packages (torch, ...) only as plain paths after its own,
    so the checkout's editable-install hook never runs there. Returns (wheel, venv)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:  # a copy: building in the checkout would write build/ and *.egg-info into it
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy(source, src / name)
    try:  # building offline needs the backend here; else pip builds in isolation (downloads setuptools)
        import setuptools  # noqa: F401

        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", *isolation, "-w", str(root / "dist"), "-q"], root)
    (wheel,) = (root / "dist").glob("rlopt-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root).stdout.strip()
    # Plain path lines: a .pth file's own "import" lines (the editable hook) only run for site dirs.
    (Path(purelib) / "_rlopt_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # pip comes from those paths; --ignore-installed: never touch the checkout's editable install.
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)], root)
    return wheel, venv


def test_wheel_holds_every_module_and_every_preset(wheel_install: tuple[Path, Path]) -> None:
    wheel, _ = wheel_install
    with zipfile.ZipFile(wheel) as archive:
        names = {name for name in archive.namelist() if ".dist-info/" not in name}
    modules = {p.relative_to(ROOT).as_posix() for package in ("rlopt", "agents") for p in (ROOT / package).rglob("*.py")}
    presets = {f"rlopt/{PACKAGED_DIR}/{p.name}" for p in CONFIGS.glob("*.yaml")}
    # pyproject.toml lists the packages by hand (to map configs/ into rlopt._configs): a new
    # subpackage left out of that list would be missing here.
    assert names == modules | presets, (sorted((modules | presets) - names), sorted(names - modules - presets))


def test_installed_wheel_finds_presets_by_name_from_any_directory(wheel_install: tuple[Path, Path], tmp_path: Path) -> None:
    _, venv = wheel_install
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = str(bin_dir / "python")
    where = _run([python, "-c", "import agents, rlopt, rlopt.presets as p; print(rlopt.__file__, agents.__file__, "
                  "p.preset_dir(), sep='\\n')"], tmp_path).stdout.split("\n")  # fmt: skip
    installed = Path(where[0]).resolve().parent
    assert installed.is_relative_to(venv.resolve()), where  # the wheel's rlopt, not this checkout's
    assert Path(where[1]).resolve().is_relative_to(venv.resolve()), where
    assert Path(where[2]) == installed / PACKAGED_DIR, where
    listed = _run([str(bin_dir / "rlopt"), "presets"], tmp_path).stdout.splitlines()  # the console script
    assert [line.split()[0] for line in listed] == sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    printed = _run([python, "-m", "rlopt", "config", "ppo_cartpole"], tmp_path).stdout
    assert printed == resolved_yaml(CONFIGS / "ppo_cartpole.yaml")
    run_dir = tmp_path / "run"
    _run([python, "-m", "rlopt", "train", "ppo_cartpole", *TINY_TRAIN, "--run-dir", str(run_dir), "--no-progress"], tmp_path)
    assert (run_dir / "summary.json").is_file()
    assert load_config(run_dir / "config.yaml").total_steps == 256


def test_listing_presets_does_not_import_torch() -> None:
    code = "import sys; from rlopt.presets import describe_presets; describe_presets(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_config_package_resolves_every_public_name_lazily() -> None:
    import rlopt.config as config

    assert set(config.__all__) == set(config._MODULE_OF)
    for name in config.__all__:
        assert getattr(config, name) is getattr(importlib.import_module(f"rlopt.config.{config._MODULE_OF[name]}"), name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        config.nope  # noqa: B018
