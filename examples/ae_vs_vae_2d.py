"""Autoencoder against VAE on 2-D Gaussian data through a 1-D bottleneck: the classic picture.

    python examples/ae_vs_vae_2d.py                 # ~20 s on one CPU core
    python examples/ae_vs_vae_2d.py --smoke         # seconds
    python examples/ae_vs_vae_2d.py --out figures   # where the figure and numbers go

The data are x ~ N(0, I_2). Both models use the same networks, a 2-64-64 encoder and a
1-64-64-2 decoder (tanh), the same data, optimizer and steps, and the same initial weights:

- The autoencoder (``pyro_vi.models.autoencoder``: a flat "prior" and a point-mass guide at the
  code enc(x)) with a fixed-scale Gaussian decoder: minus its "ELBO" is the squared
  reconstruction error / 2, the textbook autoencoder. Its outputs dec(enc(x)) are a function of
  one number, so every reconstruction lies on the curve {dec(c) : c in R}. It has no prior:
  "generating" with it means decoding codes picked by hand (here, drawn from a Gaussian fitted
  to the training codes), and those land on the same curve.
- The VAE (``pyro_vi.models.vae.VAE``): z ~ N(0, 1), x | z ~ N(dec(z), diag(sigma^2)) with sigma
  learned (the ``gaussian`` likelihood), and an amortized diagonal-Gaussian guide. Its decoder
  means lie on a curve too (a short one, or a point, if the latent goes unused: N(0, I) data is
  explained by the noise alone as well), but its samples x ~ p(x) = int p(z) p(x | z) dz carry
  the learned noise, and they fill the plane like the data.

Writes ``ae_vs_vae_2d.png`` (one row per model: data, reconstructions, samples) and
``results.json`` into ``--out`` (default ``runs/examples/ae-vs-vae-2d``), and prints, for each
model, the reconstruction error and the energy distance between its samples and fresh data
(zero when two distributions agree; Szekely & Rizzo 2013).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyro
import pyro.optim
import torch
from matplotlib.figure import Figure
from pyro import poutine

from pyro_vi.guides.amortized import AmortizedGuide
from pyro_vi.models.autoencoder import Autoencoder, AutoencoderGuide
from pyro_vi.models.likelihoods import FixedGaussianLikelihood, GaussianLikelihood
from pyro_vi.models.vae import VAE
from pyro_vi.nets import MLPDecoder, MLPEncoder
from pyro_vi.train import fit

HIDDEN = [64, 64]
DATA_SHAPE = (2,)


def build_autoencoder() -> tuple[Autoencoder, AutoencoderGuide]:
    decoder = MLPDecoder(1, HIDDEN, DATA_SHAPE)
    model = Autoencoder(decoder, latent_dim=1, likelihood=FixedGaussianLikelihood(1.0))
    return model, AutoencoderGuide(MLPEncoder(DATA_SHAPE, HIDDEN), latent_dim=1)


def build_vae() -> tuple[VAE, AmortizedGuide]:
    decoder = MLPDecoder(1, HIDDEN, DATA_SHAPE)
    model = VAE(decoder, latent_dim=1, likelihood=GaussianLikelihood(DATA_SHAPE))
    return model, AmortizedGuide(model, encoder=MLPEncoder(DATA_SHAPE, HIDDEN))


@torch.no_grad()
def reconstructions(model, guide, x: torch.Tensor) -> torch.Tensor:
    """Decoder means at z ~ q(z | x) (for the autoencoder, at its code): one per datapoint."""
    guide_trace = poutine.trace(guide).get_trace(x)
    trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    return trace.nodes["x"]["fn"].mean


@torch.no_grad()
def vae_samples(model: VAE, like: torch.Tensor) -> torch.Tensor:
    """x ~ p(x): z from the prior, then x from the likelihood (noise included)."""
    trace = poutine.trace(poutine.uncondition(model)).get_trace(like)
    return trace.nodes["x"]["value"]


@torch.no_grad()
def autoencoder_outputs(
    model: Autoencoder, guide: AutoencoderGuide, train: torch.Tensor, num: int
) -> torch.Tensor:
    """Decoded codes drawn from a Gaussian fitted to the training codes (there is no prior)."""
    codes = guide.encode(train)
    drawn = codes.mean(0) + codes.std(0) * torch.randn(num, 1, dtype=codes.dtype)
    return model.decoder(drawn)


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """2 E|A - B| - E|A - A'| - E|B - B'|: zero exactly when the two distributions agree."""
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


def draw(rows: dict[str, list[tuple[str, torch.Tensor]]], data: torch.Tensor) -> Figure:
    figure = Figure(figsize=(10, 3.4 * len(rows)))
    axes = figure.subplots(len(rows), 3, squeeze=False)
    for row, (model_name, panels) in zip(axes, rows.items(), strict=True):
        for axis, (title, points) in zip(row, [("data", data), *panels], strict=True):
            points = points.cpu().numpy()
            axis.scatter(points[:, 0], points[:, 1], s=4, alpha=0.5)
            axis.set_title(f"{model_name}\n{title}", fontsize=10)
            axis.set_xlim(-4, 4)
            axis.set_ylim(-4, 4)
            axis.set_aspect("equal")
    figure.suptitle("N(0, I) in 2-D through a 1-D bottleneck")
    figure.tight_layout()
    return figure


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200, help="passes over the training data")
    parser.add_argument("--num-data", type=int, default=2000, help="training points")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/examples/ae-vs-vae-2d", help="output folder")
    parser.add_argument("--smoke", action="store_true", help="seconds: 3 epochs, 300 points")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.num_data = 3, 300

    generator = torch.Generator().manual_seed(args.seed)
    train = torch.randn(args.num_data, 2, generator=generator)
    test = torch.randn(1000, 2, generator=generator)

    pyro.set_rng_seed(args.seed)
    results, rows = {}, {}
    for name, build in (("autoencoder", build_autoencoder), ("VAE", build_vae)):
        torch.manual_seed(args.seed)  # the same initial weights for both models
        model, guide = build()
        history = fit(
            model,
            guide,
            train,
            test_data=test,
            epochs=args.epochs,
            batch_size=100,
            optim=pyro.optim.Adam({"lr": args.lr}),
            progress=not args.smoke,
        )
        for module in (model, guide):
            module.eval()
        recon = reconstructions(model, guide, test)
        if name == "VAE":
            samples = vae_samples(model, test)
            sample_title = "samples x ~ p(x)"
        else:
            samples = autoencoder_outputs(model, guide, train, len(test))
            sample_title = "random codes, decoded (no prior)"
        rows[name] = [("reconstructions", recon), (sample_title, samples)]
        results[name] = {
            "reconstruction_mse": float((recon - test).pow(2).sum(-1).mean()),
            "sample_energy_distance": energy_distance(samples, test),
            "test_loss": history.test_loss[-1],
        }
        if name == "VAE":
            results[name]["decoder_scale"] = model.likelihood.scale.tolist()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure_path = out / "ae_vs_vae_2d.png"
    draw(rows, test).savefig(figure_path, dpi=100)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    print(f"{'':12} {'recon. MSE':>11} {'energy distance to data':>24}")
    for name, numbers in results.items():
        mse, energy = numbers["reconstruction_mse"], numbers["sample_energy_distance"]
        print(f"{name:12} {mse:11.3f} {energy:24.4f}")
    print(f"VAE decoder scale (learned): {results['VAE']['decoder_scale']}")
    print(f"figure: {figure_path}")


if __name__ == "__main__":
    main()
