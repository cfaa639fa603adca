"""The figures of a run folder: which ones its model kind draws, written as PNG files.

The drawing is :mod:`pyro_vi.report`'s (the package's one figure module); which figures a run
gets, and with which latent sites and labels, is its model kind's choice
(:meth:`~pyro_vi.spec.kinds.ModelKind.figures`): an autoencoder has no prior to sample, a
conditional VAE samples chosen labels, a two-layer VAE interpolates in ``z1`` and scatters
``z2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from pyro_vi.report import save
from pyro_vi.spec import Built

__all__ = ["sample_grid", "save", "write_figures"]


def write_figures(
    path: Path,
    built: Built,
    test: tuple[torch.Tensor, ...],
    test_labels: torch.Tensor | None,
    labels: list[int] | None = None,
    num_images: int = 32,
) -> dict[str, Path]:
    """Draw a trained run's figures and write them into ``path`` as ``<name>.png``.

    Arguments:
        path: The folder to write into.
        built: The run's model and guide; drawn as its kind judges them
            (:meth:`~pyro_vi.spec.Built.for_evaluation`).
        test: The model's arguments for the test set.
        test_labels: Labels to colour the latent scatter plot by, or ``None``.
        labels: The labels a conditional model generates, one row each.
        num_images: Images per grid.

    Returns:
        The paths written, by figure name.
    """
    judged = built.for_evaluation()
    drawn = judged.spec.kind.figures(judged, test, test_labels, labels, num_images)
    return {name: save(figure, Path(path) / f"{name}.png") for name, figure in drawn.items()}


def sample_grid(built: Built, like: torch.Tensor, labels: Sequence[int] | None = None) -> Figure:
    """Prior samples of a trained run in a grid; a conditional model draws one row per label in
    ``labels`` (default: every label)."""
    judged = built.for_evaluation()
    return judged.spec.kind.sample_grid(judged, like, None if labels is None else list(labels))
