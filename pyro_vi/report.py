"""A run's report: metrics JSON and PNG figures of samples, reconstructions and loss curves.

Samples and reconstructions are read off Pyro traces, so they work for any model whose observed
site (``"x"`` by default) is an image distribution with a ``mean``: the figures show that mean
(for a Bernoulli decoder, the pixel probabilities), not a noisy draw.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from pyro import poutine

from pyro_vi._checks import check_int
from pyro_vi.train import History


def _observed_mean(trace: poutine.Trace, site: str) -> torch.Tensor:
    if site not in trace.nodes:
        raise ValueError(
            f"observed_site={site!r} is not a sample site of the model; its sites are "
            f"{[name for name, node in trace.nodes.items() if node['type'] == 'sample']}"
        )
    return trace.nodes[site]["fn"].mean.detach()


@torch.no_grad()
def reconstruct(
    model: Callable, guide: Callable, x: torch.Tensor, observed_site: str = "x"
) -> torch.Tensor:
    """E[x' | z] with z ~ q(z | x): the decoder's mean for a posterior draw, shaped like ``x``."""
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    return _observed_mean(model_trace, observed_site).reshape(x.shape)


@torch.no_grad()
def sample_prior(model: Callable, like: torch.Tensor, observed_site: str = "x") -> torch.Tensor:
    """E[x | z] with z ~ p(z): one decoder mean per row of ``like`` (whose values are unused).

    ``like`` only fixes the batch size, shape, dtype and device; the observed site is
    unconditioned so that the model runs generatively.
    """
    trace = poutine.trace(poutine.uncondition(model)).get_trace(like)
    return _observed_mean(trace, observed_site).reshape(like.shape)


def image_grid(images: torch.Tensor, columns: int, title: str | None = None) -> Figure:
    """A figure showing ``images`` ``[N, C, H, W]`` (C = 1 or 3, values in [0, 1]) in a grid.

    The images are tiled into one mosaic with a one-pixel border and drawn with a single
    ``imshow``: one subplot per image would cost matplotlib a second for a 64-image grid.
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
    columns = min(8, count)
    count -= count % columns  # whole rows only
    inputs = test_x[:count]
    recon = reconstruct(model, guide, inputs)
    # Alternate a row of inputs with the row of their reconstructions.
    pairs = torch.stack(
        [
            inputs.reshape(-1, columns, *inputs.shape[1:]),
            recon.reshape(-1, columns, *inputs.shape[1:]),
        ],
        dim=1,
    )
    paths = {
        "metrics": out / "metrics.json",
        "samples": out / "samples.png",
        "reconstructions": out / "reconstructions.png",
        "loss_curves": out / "loss_curves.png",
    }
    image_grid(
        sample_prior(model, inputs), columns, "Samples from the model (decoder means)"
    ).savefig(paths["samples"], dpi=100)
    image_grid(
        pairs.reshape(-1, *inputs.shape[1:]),
        columns,
        "Test inputs (odd rows) and reconstructions (even rows)",
    ).savefig(paths["reconstructions"], dpi=100)
    loss_curves(history).savefig(paths["loss_curves"], dpi=100)
    payload = {"history": history.to_dict(), "config": config or {}, "metrics": metrics or {}}
    paths["metrics"].write_text(json.dumps(payload, indent=2))
    return paths
