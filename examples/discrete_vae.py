"""Binary latents trained four ways, all judged on the same discrete model's bound.

    python examples/discrete_vae.py --data-dir ~/data   # fixed binarized MNIST, ~2 min on 2 cores
    python examples/discrete_vae.py --epochs 10 --device cuda
    python examples/discrete_vae.py --smoke             # seconds (8x8 digits without MNIST)

A sigmoid belief net (:class:`~pyro_vi.models.sbn.SigmoidBeliefNet`): z in {0, 1}^D with a learned
Bernoulli prior, x | z Bernoulli pixels from an MLP decoder, and its amortized guide q(z | x) =
Bernoulli(sigmoid(encoder(x))) (:class:`~pyro_vi.guides.bernoulli.BernoulliGuide`). The same
network, seed, minibatches and optimizer, trained by

- ``score``: the one-sample ELBO with score-function (REINFORCE) gradients for z, a running
  baseline and Rao-Blackwellization (``get("elbo")``: z has no ``rsample``);
- ``vimco``: the IWAE bound with K = 5 and VIMCO's leave-one-out signals (Mnih & Rezende 2016);
- ``concrete``: the binary Concrete relaxation, prior and guide at temperature 2/3, reparameterized
  one-sample ELBO (Maddison et al. 2017; Jang et al. 2017) -- the bound of a different, relaxed
  model, with gradients biased for the discrete one;
- ``straight-through``: the same relaxed densities, the decoder reading the hard code 1[y > 0]
  with the gradient of sigmoid(y): a true bound on the discrete log p(x), a biased gradient.

The relaxed variants train the same parameters as the discrete model, so every variant is then
evaluated as the *discrete* model (``model.discrete()``, ``guide.discrete()``): its test ELBO
and IWAE-K log-likelihood. Writes ``results.json`` and ``results.md`` to ``--out``.
``benchmarks/discrete_latents.py`` measures the same four against steps, seconds and gradient
variance.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyro
import pyro.optim
import torch

from pyro_vi.data import DatasetNotFoundError, load, load_digits
from pyro_vi.estimators import get
from pyro_vi.evaluation import log_likelihood
from pyro_vi.guides.bernoulli import BernoulliGuide
from pyro_vi.models.sbn import SigmoidBeliefNet
from pyro_vi.nets import MLPDecoder, MLPEncoder
from pyro_vi.train import evaluate_loss, fit

#: name -> (relaxation, estimator name, estimator options)
VARIANTS = {
    "score": ("none", "elbo", {"num_particles": 1}),
    "vimco": ("none", "vimco", {"num_particles": 5}),
    "concrete": ("concrete", "elbo", {"num_particles": 1}),
    "straight-through": ("straight_through", "elbo", {"num_particles": 1}),
}
TEMPERATURE = 2.0 / 3.0


def load_images(data_dir: str | None, smoke: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(train, test, description): fixed binarized MNIST, or under ``--smoke`` without it the
    digits binarized once with a fixed generator."""
    try:
        data = load("binarized-mnist", data_dir)
        return data.train, data.test, "fixed binarized MNIST"
    except DatasetNotFoundError:
        if not smoke:
            raise
    print("note: binarized MNIST not found; --smoke uses the embedded 8x8 digits")
    digits = load_digits()
    generator = torch.Generator().manual_seed(0)
    train = torch.bernoulli(digits.train, generator=generator)
    test = torch.bernoulli(digits.test, generator=generator)
    return train, test, "8x8 digits, binarized once"


def build(shape: tuple[int, ...], latent_dim: int, hidden: int, relaxation: str):
    """The SBN and its guide; a relaxation gets temperature 2/3 for prior and guide."""
    temperature = None if relaxation == "none" else TEMPERATURE
    decoder = MLPDecoder(latent_dim, [hidden], shape)
    model = SigmoidBeliefNet(
        decoder, latent_dim, data_shape=shape, relaxation=relaxation, temperature=temperature
    )
    guide = BernoulliGuide(MLPEncoder(shape, [hidden]), latent_dim, temperature=temperature)
    return model, guide


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="holds binarized-mnist/")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--latent-dim", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-samples", type=int, default=100, help="K of the IWAE-K")
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/examples/discrete-vae")
    parser.add_argument("--smoke", action="store_true", help="seconds: 1 epoch of 300 images")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.latent_dim, args.hidden = 1, 16, 32
        args.eval_samples, args.eval_images = 10, 100

    train, test, description = load_images(args.data_dir, args.smoke)
    if args.smoke:
        train = train[:300]
    test = test[: args.eval_images].to(args.device)
    shape = tuple(train.shape[1:])
    rows = []
    for name in args.variants:
        relaxation, estimator, options = VARIANTS[name]
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)  # the same initial weights and minibatches for every variant
        model, guide = build(shape, args.latent_dim, args.hidden, relaxation)
        start = time.perf_counter()
        history = fit(
            model,
            guide,
            train,
            loss=get(estimator, **options),
            optim=pyro.optim.Adam({"lr": args.lr}),
            epochs=args.epochs,
            batch_size=args.batch_size,
            device=args.device,
            seed=args.seed,
            progress=not args.smoke,
        )
        seconds = time.perf_counter() - start
        # Judge every variant as the discrete model: the relaxed ones share its parameters.
        discrete_model, discrete_guide = model.discrete(), guide.discrete()
        pyro.set_rng_seed(args.seed)
        elbo = -evaluate_loss(discrete_model, discrete_guide, test, get("elbo", num_particles=10))
        ll = log_likelihood(
            discrete_model, discrete_guide, test, num_samples=args.eval_samples, batch_size=500
        )
        rows.append(
            {
                "variant": name,
                "relaxation": relaxation,
                "estimator": f"{estimator}({options})",
                "train_objective": -history.train_loss[-1],
                "test_elbo": elbo,
                f"test_log_likelihood_iwae_{args.eval_samples}": float(ll.mean()),
                "training_seconds": seconds,
            }
        )
        print(
            f"{name:>16}: trained objective {rows[-1]['train_objective']:8.2f}, discrete test "
            f"ELBO {elbo:8.2f}, IWAE-{args.eval_samples} {float(ll.mean()):8.2f} nats "
            f"({seconds:.0f} s)"
        )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {key: value for key, value in vars(args).items() if key != "out"}
    payload = {"data": description, "settings": settings, "rows": rows}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    key = f"test_log_likelihood_iwae_{args.eval_samples}"
    lines = [
        f"Sigmoid belief net, {args.latent_dim} binary latents, {description}; bounds of the "
        f"discrete model on {len(test)} test images, nats per image.",
        "",
        f"| variant | trained objective | discrete test ELBO | IWAE-{args.eval_samples} | s |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['variant']} | {r['train_objective']:.2f} | {r['test_elbo']:.2f} | {r[key]:.2f} | "
        f"{r['training_seconds']:.0f} |"
        for r in rows
    ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")


if __name__ == "__main__":
    main()
