"""Figures of a trained model and guide, and a run's report: the package's one figure module.

Every figure reads decoder *means* off Pyro traces (for a Bernoulli decoder, the pixel
probabilities, not a noisy draw), so it works for any model whose observed site (``"x"`` by
default) is an image distribution with a ``mean``, and any guide of it:

=============================  ========================================================
function                       what
=============================  ========================================================
:func:`sample_grid`            prior samples; a conditional model one row per label
:func:`reconstruction_grid`    test inputs above their reconstructions
:func:`interpolation_grid`     decoded points on the line between two posterior means
:func:`latent_scatter`         posterior means in 2-D (PCA when wider), by label
:func:`loss_curves`            train and test loss per epoch
:func:`image_grid`             any images in a grid
:func:`write_report`           ``metrics.json`` and the first three figures of a pair
=============================  ========================================================

Extra model arguments (a conditional model's labels) follow the data: the functions take the
model's arguments as a tuple ``args = (x, ...)``. A run folder's figures are chosen by the
run's model kind (:meth:`~pyro_vi.spec.kinds.ModelKind.figures`) and written by
:mod:`pyro_vi.runs.figures`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from pyro import poutine

from pyro_vi._checks import check_int
from pyro_vi.evaluation import posterior_mean
from pyro_vi.records import summary_record, write_json
from pyro_vi.train import History

__all__ = [
    "COLUMNS",
    "decode",
    "image_grid",
    "interpolate",
    "interpolation_grid",
    "latent_scatter",
    "loss_curves",
    "reconstruct",
    "reconstruction_grid",
    "sample_grid",
    "sample_prior",
    "save",
    "write_report",
]

#: Columns of every image grid (fewer when there are fewer images).
COLUMNS = 8
#: Guide draws per posterior mean when it has no closed form (flows): plenty for a plot.
FIGURE_SAMPLES = 100
#: Datapoints in a latent scatter plot.
SCATTER_POINTS = 2000


def _observed_mean(trace: poutine.Trace, site: str, like: torch.Tensor) -> torch.Tensor:
    if site not in trace.nodes:
        raise ValueError(
            f"observed_site={site!r} is not a sample site of the model; its sites are "
            f"{[name for name, node in trace.nodes.items() if node['type'] == 'sample']}"
        )
    return trace.nodes[site]["fn"].mean.detach().reshape(like.shape)


# -- images from a model and guide ------------------------------------------------------------


@torch.no_grad()
def reconstruct(
    model: Callable, guide: Callable, x: torch.Tensor, *args: Any, observed_site: str = "x"
) -> torch.Tensor:
    """E[x' | z] with z ~ q(z | x): the decoder's mean for a posterior draw, shaped like ``x``.

    ``args`` are the model's further arguments (a conditional model's labels).
    """
    guide_trace = poutine.trace(guide).get_trace(x, *args)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, *args)
    return _observed_mean(model_trace, observed_site, x)


@torch.no_grad()
def sample_prior(
    model: Callable, like: torch.Tensor, *args: Any, observed_site: str = "x"
) -> torch.Tensor:
    """E[x | z] with z ~ p(z): one decoder mean per row of ``like`` (whose values are unused).

    ``like`` only fixes the batch size, shape, dtype and device; the observed site is
    unconditioned so that the model runs generatively. ``args`` are the model's further
    arguments (a conditional model's labels, one per row).
    """
    trace = poutine.trace(poutine.uncondition(model)).get_trace(like, *args)
    return _observed_mean(trace, observed_site, like)


@torch.no_grad()
def decode(
    model: Callable, site: str, codes: torch.Tensor, args: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """Decoder means with the latent ``site`` set to ``codes`` ``[B, ...]``; ``args`` (B rows)
    fix shapes and, for a conditional model, the labels."""
    conditioned = poutine.condition(model, data={site: codes})
    return _observed_mean(poutine.trace(conditioned).get_trace(*args), "x", args[0])


def interpolate(
    model: Callable,
    guide: Callable,
    first: tuple[torch.Tensor, ...],
    second: tuple[torch.Tensor, ...],
    steps: int,
    site: str = "z",
) -> torch.Tensor:
    """Images along the straight line between the posterior means of two datapoints.

    Arguments:
        model, guide: The pair.
        first, second: One datapoint each, as the model's arguments with a batch of 1.
        steps: Points on the line, both ends included.
        site: The latent the line runs in (the one the decoder reads).

    Returns:
        ``[steps, *image_shape]``; a conditional model keeps the first datapoint's label.
    """
    ends = [
        posterior_mean(model, guide, *args, site=site, num_samples=FIGURE_SAMPLES)[0]
        for args in (first, second)
    ]
    weights = torch.linspace(0, 1, steps, device=ends[0].device, dtype=ends[0].dtype)
    weights = weights.reshape(-1, *([1] * ends[0].dim()))
    codes = (1 - weights) * ends[0] + weights * ends[1]
    args = tuple(item.expand(steps, *item.shape[1:]) for item in first)
    return decode(model, site, codes, args)


# -- figures ----------------------------------------------------------------------------------


def image_grid(images: torch.Tensor, columns: int, title: str | None = None) -> Figure:
    """A figure showing ``images`` ``[N, C, H, W]`` (C = 1 or 3, values in [0, 1]) in a grid.

    The images are tiled into one mosaic with a one-pixel border and drawn with a single
    ``imshow``: one subplot per image would cost matplotlib a second for a 64-image grid. Values
    outside [0, 1] (a categorical or Gaussian decoder's mean may leave it slightly) are clipped.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape [N, 1 or 3, H, W], got {tuple(images.shape)}")
    columns = check_int("columns", columns, minimum=1)
    count, channels, height, width = images.shape
    rows = math.ceil(count / columns)
    pad = 1
    mosaic = torch.ones(channels, rows * (height + pad) + pad, columns * (width + pad) + pad)
    for i, image in enumerate(images.detach().cpu().float().clamp(0, 1)):
        top = pad + (i // columns) * (height + pad)
        left = pad + (i % columns) * (width + pad)
        mosaic[:, top : top + height, left : left + width] = image
    scale = max(0.5, min(1.0, 28 / max(height, width))) * 0.8
    figure = Figure(figsize=(columns * scale + 0.4, rows * scale + (0.5 if title else 0.2)))
    axis = figure.add_axes((0.02, 0.02, 0.96, 0.96 - (0.5 / (rows * scale + 0.5) if title else 0)))
    if channels == 1:
        axis.imshow(mosaic[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        axis.imshow(mosaic.permute(1, 2, 0).numpy(), interpolation="nearest")
    axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def sample_grid(
    model: Callable,
    like: torch.Tensor,
    labels: Sequence[int] | None = None,
    columns: int = COLUMNS,
) -> Figure:
    """Prior samples in a grid, one per row of ``like``; with ``labels``, a conditional model
    draws one row of ``columns`` samples per label."""
    if labels is None:
        images = sample_prior(model, like)
        title = "Samples from the model (decoder means)"
    else:
        chosen = list(labels)
        label_tensor = torch.tensor(chosen, device=like.device).repeat_interleave(columns)
        images = sample_prior(
            model, like[:1].expand(len(label_tensor), *like.shape[1:]), label_tensor
        )
        title = f"Samples of the labels {chosen}, one row each"
    return image_grid(images, min(columns, len(images)), title)


def reconstruction_grid(
    model: Callable, guide: Callable, args: tuple[torch.Tensor, ...], columns: int = COLUMNS
) -> Figure:
    """Test inputs (odd rows) above their reconstructions (even rows), whole rows only."""
    inputs = args[0]
    columns = min(columns, len(inputs))
    count = len(inputs) - len(inputs) % columns
    args = tuple(item[:count] for item in args)
    recon = reconstruct(model, guide, *args)
    pairs = torch.stack(
        [
            args[0].reshape(-1, columns, *inputs.shape[1:]),
            recon.reshape(-1, columns, *inputs.shape[1:]),
        ],
        dim=1,
    ).reshape(-1, *inputs.shape[1:])
    return image_grid(pairs, columns, "Test inputs (odd rows) and reconstructions (even rows)")


def interpolation_grid(
    model: Callable,
    guide: Callable,
    args: tuple[torch.Tensor, ...],
    site: str = "z",
    pairs: int = 4,
    steps: int = 10,
) -> Figure:
    """One row per pair of test images: the first, the decoded path between them, the second.

    Raises:
        ValueError: fewer than two datapoints in ``args``.
    """
    if len(args[0]) < 2:
        raise ValueError(f"an interpolation needs at least 2 datapoints, got {len(args[0])}")
    rows = []
    for row in range(min(pairs, len(args[0]) // 2)):
        first = tuple(item[2 * row : 2 * row + 1] for item in args)
        second = tuple(item[2 * row + 1 : 2 * row + 2] for item in args)
        path = interpolate(model, guide, first, second, steps, site)
        rows.append(torch.cat([first[0], path, second[0]]))
    return image_grid(
        torch.cat(rows),
        steps + 2,
        f"Interpolation in {site}: input, {steps} decoded points, input",
    )


def latent_scatter(
    model: Callable,
    guide: Callable,
    args: tuple[torch.Tensor, ...],
    labels: torch.Tensor | None,
    site: str = "z",
) -> Figure:
    """Posterior means of ``site`` in 2-D, coloured by label (PCA when the latent is wider)."""
    codes = posterior_mean(
        model, guide, *args, site=site, num_samples=FIGURE_SAMPLES, batch_size=500
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


def loss_curves(history: History, title: str | None = None) -> Figure:
    """Train and test loss (minus the bound) per epoch, nats per datapoint."""
    figure = Figure(figsize=(6, 4))
    axis = figure.add_subplot(1, 1, 1)
    epochs = range(1, history.epochs + 1)
    axis.plot(epochs, history.train_loss, label="train")
    if history.test_loss:
        axis.plot(range(1, len(history.test_loss) + 1), history.test_loss, label="test")
    axis.set_xlabel("epoch")
    axis.set_ylabel("nats per datapoint")
    axis.set_title(title or f"Loss (minus the {history.bound} bound)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def save(figure: Figure, path: str | Path) -> Path:
    """Write a figure as PNG and return its path."""
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path


# -- a report ---------------------------------------------------------------------------------


def write_report(
    out_dir: str | Path,
    model: Callable,
    guide: Callable,
    history: History,
    test_x: torch.Tensor,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    num_images: int = 32,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``samples.png``, ``reconstructions.png`` and ``loss_curves.png``.

    Arguments:
        out_dir: Folder to write into (created if missing).
        model, guide: The trained pair; the model's observed site is ``"x"``.
        history: From :func:`pyro_vi.train.fit`.
        test_x: Test images ``[N, C, H, W]``; the first ones are reconstructed.
        config: The settings of the run, stored in the metrics file.
        metrics: Further numbers to store (e.g. a final log-likelihood estimate).
        num_images: Images per figure.

    Returns:
        The paths written, by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    count = min(check_int("num_images", num_images, minimum=1), len(test_x))
    inputs = test_x[:count]
    paths = {
        "metrics": out / "metrics.json",
        "samples": out / "samples.png",
        "reconstructions": out / "reconstructions.png",
        "loss_curves": out / "loss_curves.png",
    }
    save(sample_grid(model, inputs), paths["samples"])
    save(reconstruction_grid(model, guide, (inputs,)), paths["reconstructions"])
    save(loss_curves(history), paths["loss_curves"])
    write_json(paths["metrics"], summary_record(metrics or {}, history, config or {}))
    return paths
