"""Figures of a trained run: samples, reconstructions, latent interpolation, latent scatter.

Every figure reads decoder *means* off Pyro traces (for a Bernoulli decoder, the pixel
probabilities), so it works for any model the spec builds: the observed site is ``"x"`` and the
latent the decoder reads is ``Built.decoder_site``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from pyro import poutine

from pyro_vi.evaluation import posterior_mean
from pyro_vi.report import image_grid
from pyro_vi.spec import Built

#: Columns of every image grid.
COLUMNS = 8
#: Guide draws per posterior mean when it has no closed form (flows): plenty for a plot.
FIGURE_SAMPLES = 100


def _observed_mean(trace: poutine.Trace, like: torch.Tensor) -> torch.Tensor:
    return trace.nodes["x"]["fn"].mean.detach().reshape(like.shape)


@torch.no_grad()
def prior_samples(
    built: Built, like: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Decoder means for draws from the prior, one per row of ``like`` (values unused).

    A conditional model generates ``labels`` (required for it, one per row).
    """
    args = (like,) if labels is None else (like, labels)
    trace = poutine.trace(poutine.uncondition(built.model)).get_trace(*args)
    return _observed_mean(trace, like)


@torch.no_grad()
def reconstructions(built: Built, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Decoder means for z ~ q(z | x): one reconstruction per datapoint of ``args[0]``."""
    guide_trace = poutine.trace(built.guide).get_trace(*args)
    trace = poutine.trace(poutine.replay(built.model, trace=guide_trace)).get_trace(*args)
    return _observed_mean(trace, args[0])


@torch.no_grad()
def decode(built: Built, codes: torch.Tensor, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Decoder means with the decoder's latent set to ``codes`` ``[B, ...]``; ``args`` (B rows)
    fix shapes and, for a conditional model, the labels."""
    conditioned = poutine.condition(built.model, data={built.decoder_site: codes})
    return _observed_mean(poutine.trace(conditioned).get_trace(*args), args[0])


def interpolate(
    built: Built, first: tuple[torch.Tensor, ...], second: tuple[torch.Tensor, ...], steps: int
) -> torch.Tensor:
    """Images along the straight line between the posterior means of two datapoints.

    Arguments:
        first, second: One datapoint each, as the model's arguments with a batch of 1.
        steps: Points on the line, both ends included.

    Returns:
        ``[steps, *image_shape]``; a conditional model keeps the first datapoint's label.
    """
    site = built.decoder_site
    ends = [
        posterior_mean(built.model, built.guide, *args, site=site, num_samples=FIGURE_SAMPLES)[0]
        for args in (first, second)
    ]
    weights = torch.linspace(0, 1, steps, device=ends[0].device, dtype=ends[0].dtype)
    weights = weights.reshape(-1, *([1] * ends[0].dim()))
    codes = (1 - weights) * ends[0] + weights * ends[1]
    args = tuple(item.expand(steps, *item.shape[1:]) for item in first)
    return decode(built, codes, args)


def sample_grid(built: Built, like: torch.Tensor, labels: Sequence[int] | None = None) -> Figure:
    """Prior samples in a grid; a conditional model draws one row per label in ``labels``."""
    if built.spec.model.get("conditional"):
        chosen = list(range(built.info.num_classes or 1)) if labels is None else list(labels)
        label_tensor = torch.tensor(chosen, device=like.device).repeat_interleave(COLUMNS)
        images = prior_samples(
            built, like[:1].expand(len(label_tensor), *like.shape[1:]), label_tensor
        )
        title = f"Samples of the labels {chosen}, one row each"
    else:
        images = prior_samples(built, like)
        title = "Samples from the model (decoder means)"
    return image_grid(_visible(images), COLUMNS, title)


def reconstruction_grid(built: Built, args: tuple[torch.Tensor, ...]) -> Figure:
    """Test inputs (odd rows) above their reconstructions (even rows)."""
    inputs = args[0]
    count = len(inputs) - len(inputs) % COLUMNS
    args = tuple(item[:count] for item in args)
    recon = reconstructions(built, args)
    pairs = torch.stack(
        [
            args[0].reshape(-1, COLUMNS, *inputs.shape[1:]),
            recon.reshape(-1, COLUMNS, *inputs.shape[1:]),
        ],
        dim=1,
    ).reshape(-1, *inputs.shape[1:])
    return image_grid(_visible(pairs), COLUMNS, "Test inputs (odd rows) and reconstructions")


def interpolation_grid(
    built: Built, args: tuple[torch.Tensor, ...], pairs: int = 4, steps: int = 10
) -> Figure:
    """One row per pair of test images: the first, the decoded path between them, the second."""
    rows = []
    for row in range(min(pairs, len(args[0]) // 2)):
        first = tuple(item[2 * row : 2 * row + 1] for item in args)
        second = tuple(item[2 * row + 1 : 2 * row + 2] for item in args)
        path = interpolate(built, first, second, steps)
        rows.append(torch.cat([first[0], path, second[0]]))
    return image_grid(
        _visible(torch.cat(rows)),
        steps + 2,
        f"Interpolation in {built.decoder_site}: input, {steps} decoded points, input",
    )


def latent_scatter(
    built: Built, args: tuple[torch.Tensor, ...], labels: torch.Tensor | None
) -> Figure:
    """Posterior means of the test data in 2-D, coloured by label (PCA when the latent is wider)."""
    site = "z2" if len(built.spec.latent_dims) == 2 else built.decoder_site
    codes = posterior_mean(
        built.model, built.guide, *args, site=site, num_samples=FIGURE_SAMPLES, batch_size=500
    )
    points = codes.flatten(1).double().cpu().numpy()
    width = points.shape[1]
    if width > 2 and np.ptp(points, axis=0).max() == 0:
        # Every datapoint has the same code (a collapsed posterior): nothing for PCA to find.
        points = np.zeros((len(points), 2))
        how = f"all {width}-dim posterior means are equal"
    elif width > 2:
        from sklearn.decomposition import PCA

        points = PCA(n_components=2, random_state=0).fit_transform(points)
        how = f"posterior means, first two principal components of {width} dims"
    elif width == 2:
        how = "posterior means"
    else:
        points = np.column_stack([points[:, 0], np.zeros(len(points))])
        how = "posterior means (1-dim)"
    figure = Figure(figsize=(6, 5))
    axis = figure.add_subplot(1, 1, 1)
    colours = None if labels is None else labels[: len(points)].cpu().numpy()
    # Unlabelled data (binarized MNIST) gets one colour: a colormap without values warns.
    cmap = None if colours is None else "tab10"
    scatter = axis.scatter(points[:, 0], points[:, 1], c=colours, cmap=cmap, s=6, alpha=0.8)
    if colours is not None:
        figure.colorbar(scatter, ax=axis, label="label")
    axis.set_title(f"Test data in latent space {site}\n{how}", fontsize=10)
    return figure


def _visible(images: torch.Tensor) -> torch.Tensor:
    """Images for display: a categorical or Gaussian decoder's mean may leave [0, 1] slightly."""
    return images.detach().float().clamp(0, 1).cpu()


def save(figure: Figure, path: Path) -> Path:
    """Write a figure as PNG and return its path."""
    figure.savefig(path, dpi=100)
    return path
