"""``molpeg chemprop train …``: Chemprop's own ``train`` with MolPeg switched on.

The explicit, no-magic form of ``chemprop train --plugin molpeg``: the same Chemprop
options plus molpeg's (``--prune-ratio``, ``--prune-strategy``, ``--ema-momentum``,
``--prune-warmup-epochs``, ``--prune-anneal-epochs``, ``--prune-rescale``, ``--prune-seed``,
``--keep-invalid-smiles``, ``--trust-checkpoint``), forwarded to Chemprop's command line
with molpeg's patch applied in this process (no start-up hook involved).

The group is added to the ``molpeg`` application by the ``molpeg_cli_commands`` hook of
:mod:`molpeg_chemprop.plugin`; Chemprop itself is imported only when the command runs.
"""

from __future__ import annotations

import importlib.util

import typer

chemprop_app = typer.Typer(help="Run Chemprop's own commands with molpeg's data pruning.")


@chemprop_app.command(
    "train",
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
    add_help_option=False,
)
def train(ctx: typer.Context) -> None:
    """Train a Chemprop model with MolPeg pruning (all `chemprop train` options apply).

    Example: molpeg chemprop train -i bbbp.csv -t classification -o out --prune-ratio 0.6.
    `molpeg chemprop train --help` shows Chemprop's help including molpeg's option group.
    """
    if importlib.util.find_spec("chemprop") is None:
        typer.echo("error: chemprop is not installed; pip install 'molpeg[chemprop]'", err=True)
        raise typer.Exit(2)
    from molpeg_chemprop.chemprop_cli import run_train

    raise typer.Exit(run_train(ctx.args))
