"""Generated and included content of the dspy-tracekit docs, committed so the Markdown reads the same
on a code host as on the site; and the MkDocs hook that builds the site (no extra packages).

- A region ``<!-- tracekit:config-reference -->`` … ``<!-- /tracekit:config-reference -->`` holds the
  reference table of the core's config keys, generated from ``dspy_tracekit.config.CORE_SCHEMA`` (key,
  type, default, environment variable, meaning) — so the docs cannot drift from the code.
- A region ``<!-- tracekit:include path/from/repo/root -->`` … ``<!-- /tracekit:include -->`` holds that
  file's text in a fenced block: the tutorial shows the example files the tests run, verbatim.
- ``python docs/_hooks/tracekit_docs.py`` rewrites every page's regions from the sources;
  ``tests/test_docs_generated.py`` fails when a committed region is stale.
- A link from a page to a repository file outside ``docs/`` (a plugin's README, say) that exists is
  rendered as the file's repository path in code, since the site does not contain it; a link to a
  file that does not exist is left alone, so ``--strict`` still fails on it.
"""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARKER = "<!-- tracekit:config-reference -->"
END_MARKER = "<!-- /tracekit:config-reference -->"
_CONFIG_REGION = re.compile(re.escape(MARKER) + r"\n.*?" + re.escape(END_MARKER), re.DOTALL)
_INCLUDE_REGION = re.compile(r"<!-- tracekit:include (\S+) -->\n.*?<!-- /tracekit:include -->", re.DOTALL)
_LANGUAGES = {".py": "python", ".toml": "toml", ".sh": "bash", ".md": "markdown"}
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


def include_block(path: str, root: str = ROOT) -> str:
    """The fenced block of a repository file, as the include region holds it."""
    with open(os.path.join(root, path), encoding="utf-8") as fh:
        text = fh.read().rstrip("\n")
    language = _LANGUAGES.get(os.path.splitext(path)[1], "")
    return f"```{language}\n{text}\n```"


def regenerate(markdown: str, root: str = ROOT) -> str:
    """The page with every generated region rewritten from its source."""
    markdown = _INCLUDE_REGION.sub(
        lambda m: f"<!-- tracekit:include {m.group(1)} -->\n{include_block(m.group(1), root)}\n"
        "<!-- /tracekit:include -->",
        markdown,
    )
    return _CONFIG_REGION.sub(lambda m: f"{MARKER}\n{config_reference()}\n{END_MARKER}", markdown)


def pages(root: str = ROOT) -> list[str]:
    """README.md and every Markdown page under docs/."""
    found = [os.path.join(root, "README.md")]
    for folder, _dirs, files in os.walk(os.path.join(root, "docs")):
        found.extend(os.path.join(folder, f) for f in sorted(files) if f.endswith(".md"))
    return sorted(found)


def on_page_markdown(markdown, page, config, files):
    root = os.path.dirname(config.config_file_path)
    markdown = regenerate(markdown, root)
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
    return markdown


if __name__ == "__main__":  # rewrite the committed regions: python docs/_hooks/tracekit_docs.py
    for path in pages():
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        fresh = regenerate(text)
        if fresh != text:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(fresh)
            print(f"updated {os.path.relpath(path, ROOT)}")
