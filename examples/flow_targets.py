"""Fit every posterior family to 2-D target densities, and see which shapes each can take.

    python examples/flow_targets.py                      # 4 targets x 8 families, ~3 min on 2 cores
    python examples/flow_targets.py --targets ring --families diagonal,spline_ar --steps 3000
    python examples/flow_targets.py --estimator stl      # STL where the family allows it

Each target of :mod:`pyro_vi.models.targets` is a Pyro model with one global latent ``"z"`` in
R^2 whose joint log-density is the target's unnormalized log p~(z). Each family of
:mod:`pyro_vi.guides.families` becomes a guide q(z) through :class:`AmortizedGuide` (a global
latent gets the family with a learned constant context) and is fitted by SVI, maximizing

    ELBO(q) = E_q[log p~(z) - log q(z)] = log Z - KL(q || p).

The ELBO is then estimated with many draws of q, together with the IWAE bound of the same draws,
log (1/N) sum_n p~(z_n) / q(z_n), which approaches log Z from below as q covers p. Where log Z is
known, log Z - ELBO is the fitted guide's KL(q || p): 0 for a perfect fit.

Writes to ``--out``: ``flow_targets.png`` (rows: targets; columns: the true density, then each
family's samples with its ELBO and gap in the title) and ``flow_targets.json``; prints a table.

The estimators ``stl`` (and ``dreg``) score a detached copy of each draw, which flows without a
closed-form inverse (planar, radial, sylvester) cannot do: with ``--estimator stl`` those
families are fitted with the ELBO instead, and the JSON records which estimator each fit used.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyro
import pyro.optim
import torch
from pyro.infer import SVI
from torch import nn

from pyro_vi.devices import environment
from pyro_vi.estimators import compute_log_weights, get
from pyro_vi.guides.amortized import AmortizedGuide
from pyro_vi.guides.families import FAMILIES
from pyro_vi.models.targets import TARGETS, Target, get_target

DEFAULT_FAMILIES = (
    "diagonal",
    "full_rank",
    "mixture",
    "planar",
    "iaf",
    "spline_ar",
    "affine_coupling",
    "sylvester",
)
ESTIMATORS = ("elbo", "stl")


def global_guide(target: Target, family: str) -> tuple[Callable[[], dict], AmortizedGuide]:
    """A guide q(z) for a target's data-less model, built from :class:`AmortizedGuide`.

    ``AmortizedGuide`` reads a data tensor at every call (for its encoder, and for the device and
    dtype of what it builds), and the targets' models take no data. So the guide sees the model
    through a one-argument view, ``anchored(anchor) = target.model()``, and is called with a
    constant ``[1, 1]`` anchor and an identity encoder: ``"z"`` lies outside every plate, so the
    family is conditioned on a learned constant context and the anchor's value is never used.

    Returns:
        ``(guide, inner)``: the guide, taking no arguments like the model, and the
        ``AmortizedGuide`` inside it (whose parameters exist after the first call).
    """
    anchor = torch.zeros(1, 1)

    def anchored(anchor: torch.Tensor) -> torch.Tensor:
        return target.model()

    inner = AmortizedGuide(anchored, encoder=nn.Identity(), family=family)

    def guide() -> dict:
        return inner(anchor)

    return guide, inner


def estimator_for(family: str, requested: str) -> str:
    """``requested``, or ``"elbo"`` where the family cannot score a detached draw (STL)."""
    if requested == "stl" and not FAMILIES[family].has_tractable_inverse:
        return "elbo"
    return requested


def fit_one(
    target: Target, family: str, args: argparse.Namespace
) -> tuple[dict[str, Any], torch.Tensor]:
    """Fit one family to one target; return its summary and draws from the fitted q."""
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    guide, inner = global_guide(target, family)
    estimator = estimator_for(family, args.estimator)
    # Adam with the learning rate decayed geometrically to 10 % over the run: large steps find
    # the shape, small ones let the Monte Carlo noise of the gradient average out at the end.
    optim = pyro.optim.ClippedAdam({"lr": args.lr, "lrd": 0.1 ** (1 / max(args.steps, 1))})
    svi = SVI(target.model, guide, optim, loss=get(estimator, num_particles=args.num_particles))
    losses, step_seconds = [], []
    for _ in range(args.steps):
        start = time.perf_counter()
        losses.append(svi.step())
        step_seconds.append(time.perf_counter() - start)

    with torch.no_grad():
        weights = compute_log_weights(
            target.model, guide, (), {}, num_particles=args.eval_particles, plate_nesting=0
        )
    log_w = weights.log_w[:, 0].double()
    draws = weights.guide_trace.nodes["z"]["value"].detach()
    elbo = float(log_w.mean())
    iwae = float(torch.logsumexp(log_w, dim=0) - math.log(len(log_w)))
    summary = {
        "family": family,
        "estimator": estimator,
        "elbo": elbo,
        "elbo_stderr": float(log_w.std() / math.sqrt(len(log_w))),
        "iwae": iwae,
        "log_normalizer": target.log_normalizer,
        "gap": None if target.log_normalizer is None else target.log_normalizer - elbo,
        "parameters": sum(p.numel() for p in inner.parameters()),
        "seconds": sum(step_seconds),
        # The median: the first step also builds the guide, and the machine may be shared.
        "ms_per_step": 1e3 * statistics.median(step_seconds),
        # Minus the training loss, averaged over blocks of steps: the learning curve, compact.
        "train_elbo_curve": [-sum(block) / len(block) for block in _blocks(losses, 50)],
    }
    return summary, draws


def _blocks(values: list[float], size: int) -> list[list[float]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def plot(
    results: dict[str, list[dict[str, Any]]],
    draws: dict[tuple[str, str], torch.Tensor],
    families: Sequence[str],
    path: Path,
    resolution: int,
) -> None:
    """One figure: a row per target, the true density then each family's draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = len(results), len(families) + 1
    figure, axes = plt.subplots(
        rows, columns, figsize=(2.3 * columns, 2.4 * rows), squeeze=False, layout="constrained"
    )
    for row, (name, fits) in enumerate(results.items()):
        target = get_target(name)
        first, second, log_density = target.grid(resolution)
        # Log-density, clipped 8 nats below the mode: the funnel's mass spreads over a neck and
        # a mouth whose densities differ by orders of magnitude, which a linear scale hides.
        top = float(log_density.max())
        shade = log_density.clamp(min=top - 8).T.numpy()  # contour wants [y, x]
        outline = (log_density - top).T.numpy()
        axes[row, 0].contourf(first.numpy(), second.numpy(), shade, levels=20, cmap="viridis")
        axes[row, 0].set_title(
            f"{name}: log p(z)\nlog Z = {_fmt(target.log_normalizer)}", fontsize=8
        )
        axes[row, 0].set_ylabel(target.description, fontsize=8)
        for column, fit in enumerate(fits, start=1):
            axis = axes[row, column]
            z = draws[name, fit["family"]].numpy()
            axis.hist2d(z[:, 0], z[:, 1], bins=80, range=target.bounds, cmap="viridis")
            # The target's outline over the draws (1, 3 and 6 nats below its mode): where q
            # misses mass, or puts it where p has none.
            axis.contour(
                first.numpy(),
                second.numpy(),
                outline,
                levels=[-6.0, -3.0, -1.0],
                colors="w",
                linewidths=0.4,
                linestyles="solid",
            )
            gap = "" if fit["gap"] is None else f", gap {fit['gap']:.2f}"
            axis.set_title(f"{fit['family']}\nELBO {fit['elbo']:.2f}{gap}", fontsize=8)
        for axis in axes[row]:
            (low1, high1), (low2, high2) = target.bounds
            axis.set_xlim(low1, high1)
            axis.set_ylim(low2, high2)
            axis.tick_params(labelsize=6)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _strict(value: Any) -> Any:
    """``value`` with NaN and infinities (a diverged fit) as ``None``: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    return value


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.3f}"


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    """The ELBOs as a fixed-width text table."""
    lines = [
        f"{'target':<10} {'family':<16} {'est':<4} {'ELBO':>8} {'+-':>6} {'IWAE':>8} "
        f"{'log Z':>8} {'gap':>7} {'params':>7} {'ms/step':>8}"
    ]
    for name, fits in results.items():
        for fit in fits:
            gap = "" if fit["gap"] is None else f"{fit['gap']:.3f}"
            lines.append(
                f"{name:<10} {fit['family']:<16} {fit['estimator']:<4} {fit['elbo']:>8.3f} "
                f"{fit['elbo_stderr']:>6.3f} {fit['iwae']:>8.3f} {_fmt(fit['log_normalizer']):>8} "
                f"{gap:>7} {fit['parameters']:>7} {fit['ms_per_step']:>8.2f}"
            )
    return "\n".join(lines)


def _names(choices: Sequence[str], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if not names or unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {unknown or text!r}; choose from {', '.join(sorted(choices))}"
            )
        return names

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--targets", type=_names(tuple(TARGETS), "target"), default=list(TARGETS),
        help="comma-separated targets (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--families", type=_names(tuple(FAMILIES), "family"), default=list(DEFAULT_FAMILIES),
        help=f"comma-separated families (default: {','.join(DEFAULT_FAMILIES)})",
    )  # fmt: skip
    parser.add_argument("--estimator", choices=ESTIMATORS, default="elbo")
    parser.add_argument("--steps", type=int, default=1200, help="SVI steps per fit")
    parser.add_argument("--num-particles", type=int, default=32, help="draws per SVI step")
    parser.add_argument("--lr", type=float, default=5e-3, help="initial Adam learning rate")
    parser.add_argument(
        "--eval-particles", type=int, default=20000, help="draws for the final ELBO and plot"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (2-D tensors gain nothing from more)"
    )
    parser.add_argument("--out", default="runs/flow-targets")
    parser.add_argument(
        "--smoke", action="store_true", help="seconds: one target, two families, 20 steps"
    )
    args = parser.parse_args(argv)
    for option in ("steps", "num_particles", "eval_particles", "threads"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1")
    if args.smoke:
        args.targets, args.families = ["banana"], ["diagonal", "planar"]
        args.steps, args.eval_particles = 20, 1000
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Fit, print, plot and write what :func:`main`'s arguments ask for."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {}
    draws: dict[tuple[str, str], torch.Tensor] = {}
    for name in args.targets:
        target = get_target(name)
        results[name] = []
        for family in args.families:
            summary, samples = fit_one(target, family, args)
            results[name].append(summary)
            draws[name, family] = samples
            print(
                f"{name:<10} {family:<16} ELBO {summary['elbo']:8.3f}  "
                f"({summary['seconds']:.1f} s)",
                flush=True,
            )

    print()
    print(table(results))
    plot(results, draws, args.families, out / "flow_targets.png", 60 if args.smoke else 200)
    report = {
        "settings": {key: value for key, value in vars(args).items() if key not in ("out",)},
        "environment": environment("cpu"),
        "results": results,
    }
    (out / "flow_targets.json").write_text(json.dumps(_strict(report), indent=1))
    print(f"\nwrote {out / 'flow_targets.png'} and {out / 'flow_targets.json'}")
    return report


if __name__ == "__main__":
    main()
