"""MkDocs hooks: pages and files the site takes from the code at build time, never a committed copy.

* ``config-keys.md`` is generated from the schema's field docstrings by the same function as
  ``rlopt config --keys`` (:func:`rlopt.config.keys.config_keys`), so the page cannot go stale.
* ``cli.md``'s marker ``<!-- rlopt --help -->`` becomes the ``--help`` of every command, captured
  from :func:`rlopt.cli.main`.
* The measured results under ``benchmarks/`` (plots, sweep reports, tables) are published as they
  are, at ``benchmarks/...`` in the site, so the results pages link to them.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # build the docs of this checkout, whatever is installed
    sys.path.insert(0, str(ROOT))

KEYS_PAGE = "config-keys.md"
CLI_PAGE = "cli.md"
CLI_MARKER = "<!-- rlopt --help -->"
HELP_WIDTH = "100"
BENCHMARK_SUFFIXES = {".png", ".md", ".json", ".yaml"}

_CODE_SPAN = re.compile(r"(``.+?``|`[^`]+`)")
_MARKDOWN_SPECIAL = re.compile(r"([\\*_|<>\[\]#])")


def _cell(text: str) -> str:
    """``text`` for a Markdown table cell: code spans kept (pipes escaped), elsewhere the
    characters Markdown would read as markup escaped."""
    parts = _CODE_SPAN.split(text)
    out = []
    for index, part in enumerate(parts):
        if index % 2:  # a code span
            out.append(part.replace("|", "\\|"))
        else:
            out.append(_MARKDOWN_SPECIAL.sub(r"\\\1", part))
    return "".join(out)


def _flow(value: Any) -> str:
    """A default as a YAML flow value, as ``rlopt config --keys`` prints it."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def config_keys_markdown() -> str:
    """The configuration-keys page: one table per section, every key of ``rlopt config --keys``."""
    from rlopt.config.keys import config_keys

    sections: dict[str, list[Any]] = {}
    for key in config_keys():
        section = key.key.split(".")[0] if "." in key.key else "run"
        sections.setdefault(section, []).append(key)
    lines = [
        "# Configuration keys",
        "",
        "Every key of the run configuration with its type, default and description, generated at "
        "build time from the field docstrings of `rlopt/config/schema.py` — the same text "
        "`rlopt config --keys` prints. Set any of them with a dotted override "
        "(`rlopt train ppo_cartpole ppo.epochs=5`) or in a YAML file; see "
        "[Configuration](configuration.md) for optimizers, schedules and presets.",
        "",
    ]
    for section, keys in sections.items():
        title = "Top-level keys" if section == "run" else f"`{section}`"
        lines += [f"## {title} {{#{section}}}", "", "| key | type | default | description |", "|---|---|---|---|"]
        for key in keys:
            lines.append(
                f"| `{key.key}` | {_cell(key.type)} | {_cell('`' + _flow(key.default) + '`')} | {_cell(key.doc)} |"
            )
        lines.append("")
    return "\n".join(lines)


def _help(argv: list[str]) -> str:
    """What ``rlopt ARGV`` prints (``--help``), at a fixed width so the page does not depend on the
    terminal that builds it."""
    from rlopt.cli import main

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main(argv)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return out.getvalue().rstrip()


def cli_help_markdown() -> str:
    """``rlopt --help`` and ``rlopt COMMAND --help`` of every command, each in a text block."""
    top = _help(["--help"])
    commands = re.search(r"\{([a-z,]+)\}", top)
    assert commands, "rlopt --help lists no commands"
    blocks = []
    for argv in (["--help"], *([name, "--help"] for name in commands.group(1).split(","))):
        title = " ".join(["rlopt", *argv])
        blocks += [f"### `{title}`", "", "```text", _help(argv), "```", ""]
    return "\n".join(blocks)


def on_page_markdown(markdown: str, page: Page, **_: Any) -> str:
    """Fill the command-line page's ``--help`` marker."""
    if page.file.src_uri == CLI_PAGE:
        return markdown.replace(CLI_MARKER, cli_help_markdown())
    return markdown


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated keys page and the files under ``benchmarks/``."""
    files.append(File.generated(config, KEYS_PAGE, content=config_keys_markdown()))
    benchmarks = ROOT / "benchmarks"
    for path in sorted(benchmarks.rglob("*")):
        if path.is_file() and path.suffix in BENCHMARK_SUFFIXES:
            uri = path.relative_to(ROOT).as_posix()
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
