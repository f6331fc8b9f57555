"""The documentation: the site builds strictly, its keys page is the schema's, the README stays a
short entry point with the two quickstart commands, and ``rlopt --version`` prints the version."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlopt.cli import main
from rlopt.config.keys import config_keys

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
INSTALL_AND_TRAIN = 'pip install torch==2.13.0 && pip install -e . && rlopt train ppo_cartpole'
INSTALL_AND_TEST = 'pip install torch==2.13.0 && pip install -e ".[dev]" && python -m pytest -q -n 2'
# Code comments point into the docs as ``docs/<page>.md#<anchor>``.
DOCS_LINK = re.compile(r"docs/([a-z0-9_/-]+)\.md#([a-z0-9_-]+)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mkdocs build --strict`` of this checkout into a temporary directory: a broken link or
    anchor, a page missing from the navigation or an API path that does not resolve fails it."""
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install -e '.[docs]' builds the docs")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def test_site_builds_with_every_page(site: Path) -> None:
    for page in ("index.html", "theory/index.html", "config-keys/index.html", "api/agents/index.html",
                 "api/trust-region/index.html", "ablations/index.html"):  # fmt: skip
        assert (site / page).is_file(), page
    # the API reference is rendered from the docstrings, not left as a ``:::`` directive
    api = (site / "api" / "trust-region" / "index.html").read_text(encoding="utf-8")
    assert 'id="rlopt.trust_region.TrustRegion"' in api
    assert ":::" not in api
    # the docstrings' Sphinx roles are shown as the code they name (docs/griffe_roles.py)
    assert ":func:" not in api and ":class:" not in api
    assert "<code>conjugate_gradient</code>" in api
    # the command-line page holds the --help of every command, captured when the site is built
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    for command in ("train", "eval", "config", "presets", "sweep", "report"):
        assert f"usage: rlopt {command}" in cli, command
    assert "&lt;!-- rlopt --help --&gt;" not in cli and "<!-- rlopt --help -->" not in cli


def test_config_keys_page_holds_every_key(site: Path) -> None:
    page = (site / "config-keys" / "index.html").read_text(encoding="utf-8")
    cells = set(re.findall(r"<td><code>([^<]+)</code></td>", page))
    keys = [key.key for key in config_keys()]
    assert len(keys) > 40
    assert [key for key in keys if key not in cells] == []
    # and each key's description, as ``rlopt config --keys`` prints it, is on the page
    text = re.sub(r"<[^>]+>", "", page).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    missing = [key.key for key in config_keys() if key.doc.replace("``", "") not in text]
    assert missing == []


def test_code_comments_point_to_existing_anchors(site: Path) -> None:
    """Every ``docs/<page>.md#<anchor>`` cited in the code names a page and a heading that exist."""
    cited: set[tuple[str, str]] = set()
    for folder in ("rlopt", "agents", "tests", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            cited.update(DOCS_LINK.findall(path.read_text(encoding="utf-8")))
    for page, anchor in sorted(cited):
        html = site / ("" if page == "index" else page) / "index.html"
        assert html.is_file(), f"docs/{page}.md does not exist"
        assert f'id="{anchor}"' in html.read_text(encoding="utf-8"), f"docs/{page}.md has no #{anchor}"


def test_readme_is_short_and_has_the_quickstart_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    assert INSTALL_AND_TRAIN in text
    assert INSTALL_AND_TEST in text
    # the README's test command is the one CI runs
    assert INSTALL_AND_TEST in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_links_to_existing_docs(site: Path) -> None:
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]*))?\)", README.read_text(encoding="utf-8"))
    assert links, "the README links into docs/"
    assert [link for link, _ in links if not (ROOT / link).is_file()] == []
    for link, anchor in links:
        if anchor:
            page = site / link.removeprefix("docs/").removesuffix(".md") / "index.html"
            assert f'id="{anchor}"' in page.read_text(encoding="utf-8"), f"{link}#{anchor}"


def _installed_version() -> str:
    try:
        return importlib.metadata.version("rlopt")
    except importlib.metadata.PackageNotFoundError:
        import rlopt

        return rlopt.__version__


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code in (0, None)
    out, err = capsys.readouterr()
    assert out == f"rlopt {_installed_version()}\n"
    assert err == ""


def test_version_flag_from_the_command_line() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "rlopt", "--version"], env=env, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"rlopt \d+\.\d+\.\d+\S*\n", result.stdout)
