"""The ``pyro-vi`` command.

``pyro-vi train`` trains a VAE (by default on the embedded digits data) and writes a report folder:
``metrics.json``, ``samples.png``, ``reconstructions.png``, ``loss_curves.png``, ``checkpoint.pt``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields

from pyro_vi import data as datasets
from pyro_vi import estimators
from pyro_vi.job import ARCHITECTURES, BINARIZATIONS, TrainConfig, train_vae
from pyro_vi.models.likelihoods import LIKELIHOODS
from pyro_vi.nets import ACTIVATIONS


def _parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="pyro-vi", description="Variational inference for deep latent-variable models."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train a VAE and write a report folder",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument("--dataset", choices=datasets.DATASETS, default=defaults.dataset)
    train.add_argument(
        "--data-dir",
        default=defaults.data_dir,
        help="folder holding the dataset's folder (default: $PYRO_VI_DATA or "
        "~/.cache/pyro_vi); digits needs none",
    )
    train.add_argument(
        "--binarize",
        choices=BINARIZATIONS,
        default=defaults.binarize,
        help="'dynamic' draws fresh binary pixels each time an image is used",
    )
    train.add_argument("--architecture", choices=ARCHITECTURES, default=defaults.architecture)
    train.add_argument("--latent-dim", type=int, default=defaults.latent_dim)
    train.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=defaults.hidden,
        help="hidden layer sizes (conv: the dense layer's width)",
    )
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), default=defaults.activation)
    train.add_argument("--likelihood", choices=LIKELIHOODS, default=defaults.likelihood)
    train.add_argument(
        "--estimator",
        choices=sorted(estimators.ESTIMATORS),
        default=defaults.estimator,
        help="the bound trained on",
    )
    train.add_argument(
        "--num-particles",
        type=int,
        default=defaults.num_particles,
        help="particles K per datapoint (miwae/piwae: 1 x K)",
    )
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--learning-rate", "--lr", type=float, default=defaults.learning_rate)
    train.add_argument("--device", default=defaults.device, help="cpu, cuda or cuda:<index>")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--out", default=defaults.out, help="report folder")
    train.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide the progress bar"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyro-vi`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "train":
        names = {f.name for f in fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
        try:
            paths = train_vae(config)
        except (ValueError, TypeError, FileNotFoundError) as error:
            print(f"pyro-vi train: error: {error}", file=sys.stderr)
            return 2
        for kind, path in paths.items():
            print(f"{kind:>16}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
