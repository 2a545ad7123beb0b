"""Every use of a private Lightning or Chemprop attribute, in one version-checked place.

MolPeg's Chemprop adapter needs five things neither library offers publicly:

* Lightning's request for the training loader (``trainer.fit_loop._data_source``), to serve
  the pruned loader in its place;
* its distributed-sampler switch (``trainer._accelerator_connector``), so that Lightning does
  not wrap the pruning sampler, which shards itself across ranks;
* loading the training data early (``trainer.fit_loop.setup_data()``, a method of the private
  fit loop), when the pruner needs the dataset size before Lightning asked for it;
* Chemprop's element-wise loss (``ChempropMetric._calc_unreduced_loss``), the per-task loss
  before its reduction over the batch;
* an MPNN without its trainer (``LightningModule._trainer`` / ``_fabric``), to deep-copy it.

These are tied to the library versions below: every function first calls
:func:`check_versions`, which fails with a clear message on any other version.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from molpeg_plugins.errors import MolPegError

#: Versions whose private attributes this module was written against and tested with.
SUPPORTED = {"lightning": SpecifierSet(">=2.2,<2.7"), "chemprop": SpecifierSet(">=2.1,<2.4")}


@functools.cache
def check_versions() -> None:
    """Refuse a Lightning or Chemprop release outside :data:`SUPPORTED`.

    Raises:
        MolPegError: a library is missing or its version is outside the supported range.
    """
    for name, supported in SUPPORTED.items():
        try:
            installed = version(name)
        except PackageNotFoundError as error:
            raise MolPegError(f"molpeg's Chemprop adapter needs {name} {supported}") from error
        if Version(installed) not in supported:
            raise MolPegError(
                f"molpeg's Chemprop adapter reaches into {name} internals written for "
                f"{name} {supported}; {name} {installed} is installed. Install a supported "
                "version, or a molpeg release made for it."
            )


def serve_train_dataloader(trainer: Any, wrap: Callable[[Any], Any]) -> None:
    """Make Lightning train on ``wrap(loader)`` whenever it (re)loads the training loader.

    Idempotent: a request already wrapped by molpeg is left alone.
    """
    check_versions()
    source = trainer.fit_loop._data_source
    request = source.dataloader
    if getattr(request, "_molpeg", False):
        return

    def serve() -> Any:
        return wrap(request())

    serve._molpeg = True  # type: ignore[attr-defined]
    source.dataloader = serve


def disable_distributed_sampler(trainer: Any) -> None:
    """Stop Lightning from wrapping the training sampler in a ``DistributedSampler``."""
    check_versions()
    trainer._accelerator_connector.use_distributed_sampler = False


def load_train_data(trainer: Any) -> None:
    """Have Lightning request the training loader now (before it would by itself)."""
    check_versions()
    trainer.fit_loop.setup_data()


def criterion_unreduced_loss(
    criterion: Any,
    preds: Any,
    targets: Any,
    mask: Any,
    weights: Any,
    lt_mask: Any,
    gt_mask: Any,
) -> Any:
    """Chemprop criterion's ``(batch, tasks)`` loss, before its reduction over the batch."""
    check_versions()
    return type(criterion)._calc_unreduced_loss(
        criterion, preds, targets, mask, weights, lt_mask, gt_mask
    )


@contextmanager
def detached_from_trainer(model: Any) -> Iterator[Any]:
    """The LightningModule ``model`` without its trainer and fabric (restored on exit)."""
    check_versions()
    trainer, fabric = model.__dict__.get("_trainer"), model.__dict__.get("_fabric")
    model._trainer, model._fabric = None, None
    try:
        yield model
    finally:
        model._trainer, model._fabric = trainer, fabric
