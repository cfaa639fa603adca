"""A conditional VAE on the 8x8 digits: ask for a digit, get one.

    python examples/cvae_digits.py                             # ~15 s on 2 cores
    python examples/cvae_digits.py --labels 3 3 7 7 --out runs/cvae

The model of ``configs/cvae_digits.toml`` is p(x | z, y) p(z) with the label y given to the
decoder (and to the encoder, q(z | x, y)). The latent then holds the style (slant, thickness) and
the label the identity, so decoding prior draws z ~ N(0, I) with a chosen y generates that digit.
After training, the run is loaded back from its folder (as ``pyro-vi sample RUN --labels ...``
does) and ``chosen_digits.png`` gets one row of 8 samples per requested label.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyro

from pyro_vi.runs import figures
from pyro_vi.runs.folder import load_run
from pyro_vi.runs.training import train_spec
from pyro_vi.spec import load_spec

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cvae_digits.toml"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=list(range(10)), choices=range(10))
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's (150)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/examples/cvae-digits")
    parser.add_argument("--smoke", action="store_true", help="seconds: 1 epoch, 300 images")
    args = parser.parse_args(argv)

    overrides = [f"training.device={args.device}"]
    if args.epochs is not None:
        overrides.append(f"training.epochs={args.epochs}")
    if args.smoke:
        overrides += ["training.epochs=1", "data.limit=300", "training.eval_samples=10"]
    spec = load_spec(CONFIG, overrides)
    path = train_spec(spec, args.out, overwrite=True, progress=not args.smoke)
    metrics = json.loads((path / "metrics.json").read_text())["metrics"]
    log_px = next(v for k, v in metrics.items() if k.startswith("test_log_likelihood"))
    print(f"test ELBO {metrics['test_elbo']:.2f}, log p(x | y) {log_px:.2f} nats per image")

    # Load the trained model back from its folder, and draw the requested digits.
    run = load_run(path, device=args.device)
    pyro.set_rng_seed(0)
    like = run.data.test[0][:1].to(run.device)  # one image: fixes the shape and device
    grid = figures.sample_grid(run.built, like, labels=args.labels)
    written = figures.save(grid, path / "chosen_digits.png")
    print(f"samples of {args.labels}, one row each: {written}")


if __name__ == "__main__":
    main()
