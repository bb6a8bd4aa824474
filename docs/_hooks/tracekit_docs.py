"""MkDocs hook for the dspy-tracekit docs: generated and included content, with no extra packages.

- ``<!-- tracekit:config-reference -->`` on a page is replaced by the reference tables of the core's
  config keys, generated from ``dspy_tracekit.config.CORE_SCHEMA`` (key, type, default, environment
  variable, meaning) — so the docs cannot drift from the code.
- A line ``--8<-- "path/from/repo/root"`` is replaced by that file's text (the syntax of
  pymdown-extensions' snippets, which we do not depend on): the tutorial shows the example files the
  tests run, verbatim.
- A link from a page to a repository file outside ``docs/`` (a plugin's README, say) that exists is
  rendered as the file's repository path in code, since the site does not contain it; a link to a
  file that does not exist is left alone, so ``--strict`` still fails on it.
"""

from __future__ import annotations

import os
import re

MARKER = "<!-- tracekit:config-reference -->"
_SNIPPET = re.compile(r'^--8<-- "([^"]+)"\s*$', re.MULTILINE)
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s#]+)(#[^)\s]*)?\)")


def _type_name(typ) -> str:
    if isinstance(typ, tuple):
        return " or ".join(_type_name(t) for t in typ)
    return {"list": "list of str", "str": "str", "bool": "bool", "int": "int", "float": "float"}.get(
        typ.__name__, typ.__name__
    )


def _default(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def config_reference() -> str:
    """The ``[tool.dspy-tracekit]`` core keys as a Markdown table."""
    from dspy_tracekit.config import CORE_SCHEMA

    rows = [
        "| key | type | default | environment variable | meaning |",
        "|---|---|---|---|---|",
    ]
    for key, (typ, default, env, doc) in CORE_SCHEMA.items():
        cell = doc.replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(typ)} | {_default(default)} | `{env}` | {cell} |")
    return "\n".join(rows)


def on_page_markdown(markdown, page, config, files):
    root = os.path.dirname(config.config_file_path)

    def include(match: re.Match) -> str:
        with open(os.path.join(root, match.group(1)), encoding="utf-8") as fh:
            return fh.read().rstrip("\n")

    markdown = _SNIPPET.sub(include, markdown)
    if page is not None:
        docs_dir = os.path.abspath(config.docs_dir)
        page_dir = os.path.dirname(os.path.join(docs_dir, page.file.src_path))

        def outside(match: re.Match) -> str:
            target = match.group(2)
            if "://" in target or target.startswith(("mailto:", "/")):
                return match.group(0)
            path = os.path.normpath(os.path.join(page_dir, target))
            if path.startswith(docs_dir + os.sep) or not os.path.exists(path):
                return match.group(0)
            return f"{match.group(1)} (`{os.path.relpath(path, root)}` in the repository)"

        markdown = _LINK.sub(outside, markdown)
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, config_reference())
    return markdown
