"""molpeg plugin entry point for Chemprop (registered in the ``molpeg`` entry-point group).

Importing this module must not import chemprop: hook implementations import it lazily.
"""

from molpeg_chemprop.hooks import (
    molpeg_cli_commands,
    molpeg_create_reference,
    molpeg_model_outputs,
    molpeg_register_backends,
    molpeg_safe_globals,
)

__all__ = [
    "molpeg_cli_commands",
    "molpeg_create_reference",
    "molpeg_model_outputs",
    "molpeg_register_backends",
    "molpeg_safe_globals",
]
