"""molpeg adapter for Chemprop v2: MolPeg inside Chemprop's own Lightning training loop.

Three ways in:

* Python — add :class:`MolPegCallback` to your ``lightning.pytorch.Trainer``::

      from molpeg_chemprop import MolPegCallback
      trainer = pl.Trainer(max_epochs=30, callbacks=[MolPegCallback(prune_ratio=0.6)])
      trainer.fit(mpnn, train_loader, val_loader)

* Chemprop's command line — ``chemprop train … --plugin molpeg --prune-ratio 0.6``
  (installed start-up hook, see :mod:`molpeg_chemprop.autohook`; disable with
  ``MOLPEG_DISABLE_CHEMPROP_HOOK=1``), or the explicit ``molpeg chemprop train …``.
* ``molpeg prune --backend chemprop`` (:class:`molpeg_chemprop.backend.ChempropBackend`).

This package is imported at interpreter start-up by the hook, so it imports nothing heavy
itself; ``MolPegCallback`` is loaded on first access.
"""

from typing import Any

__all__ = ["MolPegCallback"]


def __getattr__(name: str) -> Any:
    if name == "MolPegCallback":
        from molpeg_chemprop.callback import MolPegCallback

        return MolPegCallback
    raise AttributeError(f"module 'molpeg_chemprop' has no attribute {name!r}")
