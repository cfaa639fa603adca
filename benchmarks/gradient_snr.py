"""Gradient signal-to-noise ratio and variance of every IWAE-family estimator as K grows.

A small VAE (8x8 digits, 64-128-8 MLP encoder and its mirror decoder, tanh, Bernoulli) is
pre-trained for 20 epochs so that the guide is no longer at its initialisation, twice: with the
ELBO (a mode-seeking guide, narrower than the posterior) and with DReG at K = 10 (a guide fitted
to the IWAE bound, as in Tucker et al.'s experiments). Then, on one fixed binarized batch of test
images, each estimator's gradient is drawn repeatedly (``pyro_vi.evaluation.gradient_snr``) and
summarized per parameter group:

- ``guide``: the encoder's parameters (used only by the guide);
- ``model``: the decoder's parameters.

SNR_j = |E g_j| / std(g_j) per parameter entry (Rainforth et al. 2018), averaged over the
entries whose gradient varies (encoder weights of pixels that are 0 in every image of the batch
get exactly zero gradients and are left out); variance averaged over all entries. The data batch
is fixed, so the only randomness is the estimator's sampling, and every configuration starts
from the same seed (common random numbers: estimators that coincide give identical numbers).

Estimators and K (the total number of particles per datapoint, i.e. matched compute):

- ``elbo``, ``stl``, ``iwae``, ``dreg``: ``num_particles=K``;
- ``ciwae``: ``beta=0.5``, ``num_particles=K``;
- ``miwae``, ``piwae``: ``num_outer=M, num_inner=K/M`` with M the largest divisor of K up to 5
  (the rule of ``estimator_speed.py``): K = 1 -> (1, 1), 5 -> (5, 1), 10 -> (5, 2),
  50 -> (5, 10). MIWAE(5, 1) is the 5-particle ELBO; PIWAE(5, 1) trains the model on IWAE_5 and
  the guide on ELBO_5.

At K = 1 every estimator is the ELBO (iwae, ciwae, miwae, piwae) or STL (dreg); the lines start
from the same two points.

Expectation from the literature: IWAE's guide SNR falls like 1/sqrt(K) while its model SNR grows
(Rainforth et al. 2018); DReG's guide SNR does not fall (Tucker et al. 2018). An entry whose
true SNR is 0 reads about sqrt(2 / (pi R)) with R draws: that floor is in the JSON and the plot.

Run from the repository root:

    python benchmarks/gradient_snr.py                  # full CPU run, ~2-3 min on 2 cores
    python benchmarks/gradient_snr.py --device cuda
    python benchmarks/gradient_snr.py --quick --out /tmp/snr   # seconds; writes *_quick.*

Writes ``gradient_snr_<device>.json`` and ``gradient_snr_<device>.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pyro
import pyro.optim
import torch

from pyro_vi.architectures import mlp_vae
from pyro_vi.data import DynamicBinarization, load_digits
from pyro_vi.devices import resolve_device
from pyro_vi.estimators import get
from pyro_vi.evaluation import gradient_snr
from pyro_vi.train import fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import environment  # the sibling file: benchmarks/ is not a package

ESTIMATORS = ("elbo", "stl", "iwae", "dreg", "ciwae", "miwae", "piwae")
CIWAE_BETA = 0.5
LATENT_DIM = 8
HIDDEN = (128,)
#: Pre-training objectives: (name, options of pyro_vi.estimators.get).
PRETRAINING = (("elbo", {}), ("dreg", {"num_particles": 10}))
FULL = {"particles": (1, 5, 10, 50), "epochs": 20, "draws": 500, "batch": 100}
QUICK = {"particles": (1, 5), "epochs": 1, "draws": 10, "batch": 20}


def outer_inner(num_particles: int) -> tuple[int, int]:
    """(M, K/M) for MIWAE/PIWAE: M is the largest divisor of K up to 5."""
    outer = max(d for d in range(1, 6) if num_particles % d == 0)
    return outer, num_particles // outer


def estimator_options(name: str, num_particles: int) -> dict[str, Any]:
    """The options of ``pyro_vi.estimators.get(name, ...)`` for K particles in all."""
    if name in ("miwae", "piwae"):
        outer, inner = outer_inner(num_particles)
        return {"num_outer": outer, "num_inner": inner}
    if name == "ciwae":
        return {"beta": CIWAE_BETA, "num_particles": num_particles}
    return {"num_particles": num_particles}


def pretrain(
    objective: str, options: dict[str, Any], epochs: int, device: torch.device, seed: int
) -> tuple[Any, Any, dict[str, Any]]:
    """The VAE after ``epochs`` epochs of training on the digits' training split."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    digits = load_digits()
    model, guide = mlp_vae(digits.image_shape, latent_dim=LATENT_DIM, hidden=HIDDEN)
    start = time.perf_counter()
    history = fit(
        model,
        guide,
        DynamicBinarization(digits.train),
        test_data=DynamicBinarization(digits.test),
        loss=get(objective, **options),
        optim=pyro.optim.Adam({"lr": 3e-3}),
        epochs=epochs,
        batch_size=100,
        device=device,
        progress=False,
    )
    info = {
        "objective": objective,
        "options": options,
        "epochs": epochs,
        "optimizer": "Adam(lr=3e-3), batch 100",
        "final_train_bound": -history.train_loss[-1],
        "final_test_bound": -history.test_loss[-1],
        "seconds": time.perf_counter() - start,
    }
    return model, guide, info


def fixed_batch(size: int, device: torch.device, seed: int) -> torch.Tensor:
    """The first ``size`` test images, binarized once with a fixed generator."""
    generator = torch.Generator().manual_seed(seed)
    grey = load_digits().test[:size]
    return torch.bernoulli(grey, generator=generator).to(device)


def measure(
    model: Any,
    guide: Any,
    x: torch.Tensor,
    particles: tuple[int, ...],
    draws: int,
    seed: int,
    pretrained_with: str,
) -> list[dict[str, Any]]:
    rows = []
    for name in ESTIMATORS:
        for num_particles in particles:
            options = estimator_options(name, num_particles)
            start = time.perf_counter()
            stats = gradient_snr(get(name, **options), model, guide, x, num_draws=draws, seed=seed)
            rows.append(
                {
                    "pretrained_with": pretrained_with,
                    "estimator": name,
                    "K": num_particles,
                    "options": options,
                    "guide": stats["guide"].to_dict(),
                    "model": stats["model"].to_dict(),
                    "seconds": time.perf_counter() - start,
                }
            )
            print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row: dict[str, Any]) -> str:
    guide, model = row["guide"], row["model"]
    return (
        f"{row['estimator']:>6} {row['K']:>3}  {guide['mean_snr']:>9.4f} "
        f"{guide['mean_variance']:>11.3e}  {model['mean_snr']:>9.4f} "
        f"{model['mean_variance']:>11.3e}  {row['seconds']:>6.1f}s"
    )


HEADER = "estimator K   guide SNR guide var    model SNR   model var      time\n" + "-" * 67


def plot(
    rows: list[dict[str, Any]], pretrained: list[str], floor: float, path: Path, title: str
) -> None:
    """Mean SNR against K, log-log: a row per pre-training objective, guide and model columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        len(pretrained), 2, figsize=(10, 3.8 * len(pretrained)), sharex=True, squeeze=False
    )
    for row, objective in enumerate(pretrained):
        for column, group in enumerate(("guide", "model")):
            axis = axes[row, column]
            for name in ESTIMATORS:
                mine = [
                    r for r in rows if r["estimator"] == name and r["pretrained_with"] == objective
                ]
                axis.plot(
                    [r["K"] for r in mine],
                    [r[group]["mean_snr"] for r in mine],
                    marker="o",
                    label=name,
                    linestyle="--" if name in ("miwae", "piwae") else "-",
                )
            axis.axhline(floor, color="grey", linewidth=0.8, linestyle=":")
            network = "encoder" if group == "guide" else "decoder"
            axis.set_title(f"{group} ({network}), VAE pre-trained with {objective}", fontsize=10)
            axis.set_ylabel("mean SNR  |E g| / std g")
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.grid(True, which="both", alpha=0.3)
        axes[row, 0].annotate("zero-signal floor", (1, floor), fontsize=7, color="grey")
    for column in (0, 1):
        axes[-1, column].set_xlabel("K (particles per datapoint)")
    axes[0, 0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def strict(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None: strict JSON, readable everywhere
    (a group whose every gradient entry is constant has no mean SNR)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict(item) for item in value]
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast run (K in 1, 5; 10 draws)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index>")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    settings = dict(QUICK if args.quick else FULL)
    start = time.perf_counter()

    x = fixed_batch(settings["batch"], device, args.seed)
    rows, trainings = [], []
    for objective, options in PRETRAINING:
        model, guide, training = pretrain(objective, options, settings["epochs"], device, args.seed)
        trainings.append(training)
        print(
            f"\npre-trained with {objective} for {training['epochs']} epochs in "
            f"{training['seconds']:.1f}s: test bound {training['final_test_bound']:.2f} nats "
            "per image"
        )
        print(HEADER)
        rows += measure(
            model, guide, x, settings["particles"], settings["draws"], args.seed, objective
        )
    floor = math.sqrt(2 / (math.pi * settings["draws"]))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"gradient_snr_{device.type}" + ("_quick" if args.quick else "")
    report = {
        "benchmark": "gradient_snr",
        "environment": environment(device),
        "settings": {
            **settings,
            "quick": args.quick,
            "seed": args.seed,
            "model": f"mlp_vae((1, 8, 8), latent_dim={LATENT_DIM}, hidden={HIDDEN}), tanh, "
            "Bernoulli",
            "data": f"first {settings['batch']} digits test images, binarized once (seed "
            f"{args.seed}); the gradient is of minus the bound summed over the batch",
            "groups": "guide = encoder parameters, model = decoder parameters",
            "pretraining": [f"{name} {options}" for name, options in PRETRAINING],
            "snr": "per entry |mean| / std over the draws, averaged over entries whose "
            "gradient varies; variance averaged over all entries",
            "miwae_piwae": "num_outer = largest divisor of K up to 5, num_inner = K / num_outer",
            "ciwae_beta": CIWAE_BETA,
        },
        "pretraining": trainings,
        "snr_floor": floor,
        "results": rows,
        "seconds": time.perf_counter() - start,
    }
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(strict(report), indent=2, allow_nan=False) + "\n")
    title = (
        f"Gradient SNR, digits VAE after {settings['epochs']} epochs; batch {settings['batch']}, "
        f"{settings['draws']} draws per point, {device.type}"
    )
    pretrained = [name for name, _ in PRETRAINING]
    plot(rows, pretrained, floor, out / f"{stem}.png", title)
    print(f"wrote {json_path} and {stem}.png in {report['seconds']:.0f}s")


if __name__ == "__main__":
    main()
