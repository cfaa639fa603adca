"""Train a VAE on scikit-learn's 8x8 digits with the library's parts, step by step.

    python examples/vae_digits.py --epochs 100 --out runs/examples/vae-digits

The same as ``pyro-vi train``, written out: data, model and guide, SVI training, report.
"""

from __future__ import annotations

import argparse

import pyro
import pyro.optim
from pyro.infer import Trace_ELBO

from pyro_vi.architectures import mlp_vae
from pyro_vi.data import DynamicBinarization, load_digits
from pyro_vi.report import write_report
from pyro_vi.train import evaluate_loss, fit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/examples/vae-digits")
    parser.add_argument("--smoke", action="store_true", help="one quick epoch, for the tests")
    args = parser.parse_args(argv)
    pyro.set_rng_seed(0)

    # 1437 training and 360 test images, [N, 1, 8, 8] grey levels in [0, 1]. A fresh binary image
    # is drawn each time one is used, so the Bernoulli decoder is a proper likelihood.
    digits = load_digits()
    train, test = DynamicBinarization(digits.train), DynamicBinarization(digits.test)

    # p(z) = N(0, I_8), p(x|z) = Bernoulli(decoder(z)); q(z|x) = N(mu(x), diag sigma(x)^2).
    model, guide = mlp_vae(digits.image_shape, latent_dim=8, hidden=[256, 256])

    history = fit(
        model,
        guide,
        train,
        test_data=test,
        loss=Trace_ELBO(),
        optim=pyro.optim.Adam({"lr": 3e-3}),
        epochs=1 if args.smoke else args.epochs,
        device=args.device,
    )
    test_images = test.to(args.device)[range(len(test))]
    print(f"test ELBO: {-evaluate_loss(model, guide, test_images):.2f} nats per image")
    paths = write_report(args.out, model, guide, history, test_images)
    print(f"report written to {paths['metrics'].parent}")


if __name__ == "__main__":
    main()
