"""Every configuration key with its type, default and one-line docstring (``rlopt config --keys``).

Dataclass fields have no runtime docstrings: the string literal under each field of
:mod:`rlopt.config.schema` is read from the module's source with :mod:`ast`, and the types and
defaults from :func:`dataclasses.fields` (the annotations are strings: ``from __future__ import
annotations``).
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass
from typing import Any

from rlopt.config import schema
from rlopt.config.schema import Config


@dataclass(frozen=True)
class ConfigKey:
    """One leaf of the configuration."""

    key: str
    """Dotted key, as an override spells it (``actor.optim.lr`` is inside ``actor.optim``)."""
    type: str
    """The field's annotation as written in the schema."""
    default: Any
    """The schema's default (an empty ``optim`` means the agent's default)."""
    doc: str
    """The field's docstring on one line (a docstring wrapped over lines is joined)."""


def field_docstrings(module_source: str) -> dict[tuple[str, str], str]:
    """``{(class name, field name): docstring}`` of every annotated class attribute followed by a
    string literal, in ``module_source``."""
    docs: dict[tuple[str, str], str] = {}
    for node in ast.walk(ast.parse(module_source)):
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for stmt, following in zip(body, body[1:]):
            is_doc = (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            )
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and is_doc:
                docs[(node.name, stmt.target.id)] = inspect.cleandoc(following.value.value)
    return docs


def _default(item: Field[Any]) -> Any:
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    return None


def config_keys() -> list[ConfigKey]:
    """Every leaf key of :class:`Config`, in schema order, sections expanded."""
    docs = field_docstrings(inspect.getsource(schema))
    out: list[ConfigKey] = []

    def walk(cls: type, prefix: str) -> None:
        for item in fields(cls):
            default = _default(item)
            if is_dataclass(default):
                walk(type(default), f"{prefix}{item.name}.")
                continue
            doc = docs.get((cls.__name__, item.name), "")
            out.append(ConfigKey(f"{prefix}{item.name}", str(item.type), default, " ".join(doc.split())))

    walk(Config, "")
    return out


def format_keys(keys: list[ConfigKey]) -> str:
    """One line per key: ``key  type  default  docstring``, in aligned columns (defaults as YAML
    flow values: ``null``, ``true``, ``[64, 64]``, ``{}``)."""
    import yaml

    rows = [(k.key, k.type, yaml.safe_dump(k.default, default_flow_style=True).strip().removesuffix("\n..."), k.doc)
            for k in keys]  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    header = ("key", "type", "default", "description")
    widths = [max(w, len(h)) for w, h in zip(widths, header)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3]
             for row in (header, *rows)]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines) + "\n"
