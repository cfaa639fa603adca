"""A VQ-VAE (van den Oord et al. 2017) on the 8x8 digits: a discrete latent from a learned codebook.

    python examples/vq_vae.py                          # ~15 s on 2 cores
    python examples/vq_vae.py --epochs 300 --device cuda

Each image is encoded as 4 vectors, each snapped to its nearest of 32 learned code vectors
(``configs/vq_vae_digits.toml``). With a uniform prior over codes and a one-hot posterior, the
ELBO is log p(x | z_q(x)) - n log K: the reconstruction term minus a constant KL of 4 log 32 nats.
The codebook perplexity, exp(entropy of code use), is the effective number of codes in use:
1 means the codebook collapsed to a single code, 32 that all are used equally.
Writes the run folder, with ``reconstructions.png`` (test inputs above their reconstructions).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from pyro_vi.runs.training import train_spec
from pyro_vi.spec import load_spec

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "vq_vae_digits.toml"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's (150)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/examples/vq-vae-digits")
    parser.add_argument("--smoke", action="store_true", help="seconds: 2 epochs, 300 images")
    args = parser.parse_args(argv)

    overrides = [f"training.device={args.device}"]
    if args.epochs is not None:
        overrides.append(f"training.epochs={args.epochs}")
    if args.smoke:
        overrides += ["training.epochs=2", "data.limit=300", "training.eval_samples=10"]
    spec = load_spec(CONFIG, overrides)
    run = train_spec(spec, args.out, overwrite=True, progress=not args.smoke)

    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    kl = spec.model["num_latents"] * math.log(spec.model["num_codes"])
    print(f"test ELBO:            {metrics['test_elbo']:.2f} nats per image")
    print(f"  = log p(x | z_q):   {metrics['reconstruction_log_likelihood']:.2f}")
    print(f"  - n log K:          {kl:.2f}")
    codes = f"{metrics['codebook_perplexity']:.1f} of {metrics['codebook_size']}"
    print(f"codebook perplexity:  {codes} codes in use")
    print(f"reconstructions:      {run / 'reconstructions.png'}")


if __name__ == "__main__":
    main()
