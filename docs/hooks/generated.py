"""MkDocs hook: page content generated from the code at build time, so it cannot drift.

* ``<!-- molpeg-cli-reference -->``: the command-line reference of the Typer app.
* ``<!-- molpeg-chemprop-options -->``: the options ``--plugin molpeg`` adds to Chemprop.
* ``<!-- molpeg-benchmark-plot -->``: the headline plot of ``benchmarks/report.py``, once
  it exists.

Markers are replaced before the Markdown is parsed. The CLI reference is the Markdown that
``typer … utils docs`` would print for the ``molpeg`` app (every command, argument, option and
default); Rich markup in epilogs (``[bold]…[/bold]``) becomes Markdown bold and indented
example lines become a console block.
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "<!-- molpeg-cli-reference -->"
CHEMPROP_MARKER = "<!-- molpeg-chemprop-options -->"
PLOT_MARKER = "<!-- molpeg-benchmark-plot -->"
RICH_BOLD = re.compile(r"\[bold\](.*?)\[/bold\]")
RICH_TAG = re.compile(r"\[/?(?:bold|italic|dim|red|green|yellow|cyan|blue)\]")


def cli_markdown() -> str:
    """The Markdown reference of the ``molpeg`` app, one heading per command."""
    import typer
    from typer.cli import get_docs_for_click

    from molpeg_plugins.cli import app

    command = typer.main.get_command(app)
    ctx = typer.Context(command, info_name="molpeg")
    text = get_docs_for_click(obj=command, ctx=ctx, name="molpeg", indent=1)
    return tidy(text)


def chemprop_options_markdown() -> str:
    """Table of the options ``--plugin molpeg`` adds to ``chemprop train``, from the adapter.

    Read from :data:`molpeg_chemprop.chemprop_cli.OPTIONS` (that module imports no Chemprop).
    """
    from molpeg_chemprop.chemprop_cli import OPTIONS

    lines = ["| option | default | meaning |", "|---|---|---|"]
    for flags, kwargs in OPTIONS.values():
        kind = {float: " X", int: " N"}.get(kwargs.get("type"), " NAME")
        metavar = "" if kwargs.get("action") == "store_true" else kind
        default = kwargs.get("default")
        shown = (
            "off"
            if kwargs.get("action") == "store_true"
            else ("—" if default is None else f"`{default}`")
        )
        meaning = str(kwargs.get("help", "")).replace("|", "\\|")
        lines.append(f"| `{', '.join(flags)}{metavar}` | {shown} | {meaning} |")
    return "\n".join(lines) + "\n"


def benchmark_plot_markdown(docs_dir: str) -> str:
    """The headline plot written by ``benchmarks/report.py``, or nothing before it exists.

    Prefers the ``paper`` tier over ``quick`` and HIV over other datasets
    (``docs/img/benchmark_{tier}_{dataset}.png``).
    """
    from pathlib import Path

    plots = sorted((Path(docs_dir) / "img").glob("benchmark_*.png"))
    if not plots:
        return ""

    def rank(path: Path) -> tuple[int, int, str]:
        name = path.stem
        return ("_paper_" not in f"{name}_", "hiv" not in name.lower(), name)

    best = min(plots, key=rank)
    return (
        f"![Test metric against the fraction of training data pruned, per method, mean and "
        f"standard deviation over seeds](img/{best.name})\n\n"
        f"*Test metric against the fraction of training data pruned (error bars: standard "
        f"deviation over seeds; grey band: the full-data runs); details and every other "
        f"dataset on the [Benchmarks](benchmarks.md) page.*\n"
    )


def tidy(text: str) -> str:
    """Turn Rich markup into Markdown and indented example lines into console blocks."""
    out: list[str] = []
    block: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        example = line.startswith("  ") and line.strip() and line.lstrip()[:1] not in "*-"
        if example and not in_fence:
            block.append(line.strip())
            continue
        if block:
            out += ["", "```console", *(f"$ {b}" for b in block), "```", ""]
            block = []
        if not in_fence:
            line = RICH_TAG.sub("", RICH_BOLD.sub(r"**\1**", line))
        out.append(line)
    if block:
        out += ["", "```console", *(f"$ {b}" for b in block), "```", ""]
    return "\n".join(out) + "\n"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace the markers with the generated reference and option table."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cli_markdown())
    if PLOT_MARKER in markdown:
        markdown = markdown.replace(
            PLOT_MARKER, benchmark_plot_markdown(kwargs["config"]["docs_dir"])
        )
    if CHEMPROP_MARKER in markdown:
        markdown = markdown.replace(CHEMPROP_MARKER, chemprop_options_markdown())
    return markdown
