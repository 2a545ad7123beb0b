"""Start-up hook behind ``chemprop train --plugin molpeg`` (imported by ``molpeg_chemprop.pth``).

It does nothing unless ``--plugin`` (or one of molpeg's own options, to explain that they
need ``--plugin molpeg``) is on the command line and ``MOLPEG_DISABLE_CHEMPROP_HOOK`` is not
set; only then it registers a post-import hook (``wrapt``) that patches
``chemprop.cli.main`` when — and if — that module is imported. No other module is imported
here, so every other Python process starts as before.
"""

import os
import sys

# The prefixes of molpeg's ``chemprop train`` options (``chemprop_cli.OPTIONS`` has them all).
FLAG_PREFIXES = (
    "--plugin",
    "--prune-",
    "--ema-momentum",
    "--keep-invalid-smiles",
    "--trust-checkpoint",
)


def install() -> bool:
    """Register the post-import hook if this process asked for a plugin; return whether it did."""
    if os.environ.get("MOLPEG_DISABLE_CHEMPROP_HOOK", "").strip().lower() in {
        "1",
        "true",
        "yes",
        "on",
    }:
        return False
    argv = getattr(sys, "argv", None) or []
    if not any(a.startswith(FLAG_PREFIXES) for a in argv[1:]):
        return False
    try:
        import wrapt
    except ImportError:
        return False
    wrapt.register_post_import_hook(_patch_chemprop, "chemprop.cli.main")
    return True


def _patch_chemprop(module: object) -> None:
    from molpeg_chemprop.chemprop_cli import on_import

    on_import(module)  # type: ignore[arg-type]


install()
