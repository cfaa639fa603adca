"""Epoch time of plain VAE training: pyro_vi's ``fit`` beside pythae's trainer and a hand-written
PyTorch loop, on the same data, the same network and the same objective.

The network is the one-layer architecture of Burda et al. (784-200-200-50, tanh), the batch 100,
Adam with lr 1e-3, fixed binarized MNIST (50,000 training images). pythae's ``VAE`` with
``reconstruction_loss="bce"`` maximizes

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || N(0, I))

with one reparameterized sample and the KL in closed form; pyro_vi's ``meanfield`` estimator is
the same objective, and ``elbo`` the same bound with the KL estimated by the sample too. The
hand-written loop (the issue's reference) computes the ``meanfield`` objective in plain torch.

Each variant trains ``--epochs`` epochs per round, in ``--rounds`` rounds whose order rotates
(interleaved, because this machine is shared: the ratios within a round are what count). An
epoch's time is the wall-clock between the ends of consecutive epochs, so it includes
everything each library does per epoch (its data loading, logging, non-finite checks); the first
epoch of every round is dropped (it pays set-up, and for the compiled variant compilation).
Every variant uses the same number of torch threads (``--threads``).

pythae is an optional extra (``pip install pythae``); without it the script says so and times
the other variants.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    OtherLoad,
    binarized_mnist,
    default_data_dir,
    environment,
    write_results,
)

from pyro_vi.architectures import iwae_mlp_vae
from pyro_vi.train import fit

HIDDEN, LATENT, PIXELS = 200, 50, 784
LEARNING_RATE = 1e-3

#: variant -> (what it is, the objective)
VARIANTS = {
    "pythae": ("pythae VAE + BaseTrainer.train_step", "closed-form KL"),
    "pyro_vi_meanfield": ("pyro_vi fit(loss='meanfield')", "closed-form KL"),
    "pyro_vi_meanfield_compiled": (
        "pyro_vi fit(loss='meanfield', compile=True)",
        "closed-form KL",
    ),
    "pyro_vi_elbo": ("pyro_vi fit(loss='elbo')", "sampled KL"),
    "handwritten": ("hand-written torch loop (torch.optim.Adam)", "closed-form KL"),
}


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with tanh between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


# -- the variants: each returns a function that trains E epochs and reports their end times ------


def meanfield_loss(
    encoder: nn.Module,
    loc_head: nn.Module,
    scale_head: nn.Module,
    decoder: nn.Module,
    x: torch.Tensor,
    eps: torch.Tensor,
) -> torch.Tensor:
    """Minus the meanfield objective, averaged over the batch, in plain torch: h = encoder(x),
    z = mu(h) + sigma(h) eps with sigma = 1e-5 + softplus(.), BCE(decoder(z), x) +
    KL(N(mu, sigma^2) || N(0, I)) per image (``x`` flat ``[B, 784]``, ``eps`` ``[B, 50]``)."""
    features = encoder(x)
    loc, scale = loc_head(features), 1e-5 + softplus(scale_head(features))
    z = loc + scale * eps
    nll = binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
    kl = 0.5 * (loc.square() + scale.square() - 1).sum(-1) - scale.log().sum(-1)
    return (nll + kl).mean()


def handwritten_run(data: torch.Tensor, batch_size: int, seed: int) -> Callable:
    """:func:`meanfield_loss` trained by a plain loop: shuffled batches, ``torch.optim.Adam``."""
    torch.manual_seed(seed)
    encoder = mlp([PIXELS, HIDDEN, HIDDEN])
    encoder.append(nn.Tanh())
    loc_head, scale_head = nn.Linear(HIDDEN, LATENT), nn.Linear(HIDDEN, LATENT)
    decoder = mlp([LATENT, HIDDEN, HIDDEN, PIXELS])
    params = [p for m in (encoder, loc_head, scale_head, decoder) for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=LEARNING_RATE)
    flat = data.reshape(len(data), -1)

    def train(epochs: int, marks: list[float], losses: list[float]) -> None:
        for _ in range(epochs):
            order = torch.randperm(len(flat))
            total = torch.zeros(())
            for start in range(0, len(flat), batch_size):
                x = flat[order[start : start + batch_size]]
                eps = torch.randn(len(x), LATENT)
                loss = meanfield_loss(encoder, loc_head, scale_head, decoder, x, eps)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach()
            losses.append(float(total) / math.ceil(len(flat) / batch_size))
            marks.append(time.perf_counter())

    return train


def pyro_vi_run(
    data: torch.Tensor, batch_size: int, seed: int, loss: str, compile: bool, threads: int
) -> Callable[[int], Any]:
    """pyro_vi's fit as a user calls it; the model and guide persist across rounds (each round
    is one ``fit`` call, which builds its optimizer and, compiled, its graph again)."""
    import pyro

    pyro.set_rng_seed(seed)
    model, guide = iwae_mlp_vae()

    def train(epochs: int, marks: list[float], losses: list[float]) -> None:
        def mark(epoch: int, history: Any) -> None:
            marks.append(time.perf_counter())
            losses.append(history.train_loss[-1])

        mark.changes_program = False  # it times: no trace of the captured step to check it

        fit(
            model,
            guide,
            data,
            loss=loss,
            epochs=epochs,
            batch_size=batch_size,
            progress=False,
            compile=compile,
            threads=threads,
            callback=mark,
        )

    return train


def pythae_run(data: torch.Tensor, batch_size: int, seed: int, folder: str) -> Callable:
    """pythae's VAE with the same encoder and decoder sizes, trained by its BaseTrainer one
    ``train_step`` (one epoch) at a time, as its ``train`` does (evaluation left out)."""
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.body = mlp([PIXELS, HIDDEN, HIDDEN])
            self.loc = nn.Linear(HIDDEN, LATENT)
            self.log_var = nn.Linear(HIDDEN, LATENT)

        def forward(self, x: torch.Tensor) -> ModelOutput:
            h = torch.tanh(self.body(x.reshape(len(x), -1)))
            return ModelOutput(embedding=self.loc(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.body = mlp([LATENT, HIDDEN, HIDDEN, PIXELS])

        def forward(self, z: torch.Tensor) -> ModelOutput:
            probs = torch.sigmoid(self.body(z)).reshape(len(z), 1, 28, 28)
            return ModelOutput(reconstruction=probs)

    torch.manual_seed(seed)
    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce")
    model = VAE(config, encoder=Encoder(), decoder=Decoder())
    training = BaseTrainerConfig(
        output_dir=folder,
        num_epochs=10**6,
        learning_rate=LEARNING_RATE,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        optimizer_cls="Adam",
        no_cuda=True,
        seed=seed,
        steps_saving=None,
    )
    dataset = BaseDataset(data, torch.zeros(len(data)))
    trainer = BaseTrainer(model, train_dataset=dataset, training_config=training)
    trainer.prepare_training()
    # Without its progress bar, as pyro_vi's fit runs here (progress=False).
    handler = trainer.callback_handler
    handler.callbacks = [c for c in handler.callbacks if "ProgressBar" not in type(c).__name__]
    epoch_count = [0]

    def train(epochs: int, marks: list[float], losses: list[float]) -> None:
        for _ in range(epochs):
            epoch_count[0] += 1
            losses.append(float(trainer.train_step(epoch_count[0])))
            marks.append(time.perf_counter())

    return train


# -- measuring ----------------------------------------------------------------------------


def measure(runs: dict[str, Callable], rounds: int, epochs: int) -> dict[str, dict[str, Any]]:
    """Per variant: the epoch times of every round but each round's first epoch, the last train
    loss, and the other processes' CPU share while it ran."""
    labels = list(runs)
    seconds: dict[str, list[float]] = {label: [] for label in labels}
    per_round: dict[str, list[float]] = {label: [] for label in labels}
    losses: dict[str, list[float]] = {label: [] for label in labels}
    loads: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(rounds):
        shift = r % len(labels)
        for label in labels[shift:] + labels[:shift]:
            meter = OtherLoad()
            meter.share()
            marks = [time.perf_counter()]
            runs[label](epochs, marks, losses[label])
            load = meter.share()
            if load is not None:
                loads[label].append(load)
            times = [b - a for a, b in itertools.pairwise(marks)]
            seconds[label] += times[1:]
            per_round[label].append(statistics.median(times[1:] or times))
            print(
                f"round {r + 1}/{rounds} {label}: epochs "
                + ", ".join(f"{t:.2f}" for t in times)
                + f" s; train loss {losses[label][-1]:.2f}",
                flush=True,
            )

    def paired(label: str, reference: str) -> float | None:
        """Median over rounds of the ratio of the two variants' median epochs in that round."""
        if reference not in per_round:
            return None
        pairs = zip(per_round[label], per_round[reference], strict=True)
        return round(statistics.median(a / b for a, b in pairs), 3)

    return {
        label: {
            "epoch_seconds": seconds[label],
            "round_medians_s": per_round[label],
            "vs_pythae": paired(label, "pythae"),
            "vs_handwritten": paired(label, "handwritten"),
            "median_s": statistics.median(seconds[label]),
            "min_s": min(seconds[label]),
            "max_s": max(seconds[label]),
            "train_loss": losses[label][-1],
            "other_cpu_load": round(statistics.mean(loads[label]), 3) if loads[label] else None,
        }
        for label in labels
    }


def render(result: dict[str, Any]) -> str:
    env, settings, rows = result["environment"], result["settings"], result["variants"]
    lines = [
        "# Epoch time of plain VAE training, beside pythae",
        "",
        f"{env.get('device_name')}, {settings['threads']} torch thread(s), torch "
        f"{env.get('torch')}, pyro {env.get('pyro')}, pythae {settings['pythae']}, "
        f"{env.get('date')}, commit {str(env.get('git_commit'))[:12]}. Data: {settings['data']}, "
        f"{settings['images']} images, batch {settings['batch_size']} "
        f"({settings['steps_per_epoch']} steps an epoch), 784-200-200-50 tanh, Adam lr 1e-3. "
        f"{settings['rounds']} interleaved rounds of {settings['epochs']} epochs per variant; "
        "each round's first epoch dropped. Ratios: the median over rounds of the ratio of the "
        "two variants' median epochs in the same round. Written by "
        "`benchmarks/epoch_vs_pythae.py`.",
        "",
        "| variant | objective | median s / epoch | min-max | / pythae | / hand-written "
        "| train loss (nats) | other CPU load |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row in rows.items():
        what, objective = VARIANTS[label]
        versus = "" if row["vs_pythae"] is None else f"{row['vs_pythae']:.2f}"
        lines.append(
            f"| {what} | {objective} | {row['median_s']:.2f} | {row['min_s']:.2f}-"
            f"{row['max_s']:.2f} | {versus} | {row['vs_handwritten']:.2f} | "
            f"{row['train_loss']:.2f} | {row['other_cpu_load']} |"
        )
    lines += [
        "",
        "train loss: minus the objective per image, averaged over the last epoch's batches "
        "(pythae's and the hand-written loop's are of their own parameters; all start from "
        "different random weights). other CPU load: the share of the machine's CPU time other "
        "processes used while the variant ran (0 = quiet).",
    ]
    if result.get("reading"):
        lines += ["", "## Reading", "", result["reading"]]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--random-data", action="store_true", help="timing-only stand-in data")
    parser.add_argument("--limit", type=int, default=None, help="first N training images")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated, from: " + ", ".join(VARIANTS),
    )
    parser.add_argument("--reading", default=None, help="a markdown file: the written reading")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--smoke", action="store_true", help="tiny run (tests)")
    parser.add_argument(
        "--render",
        action="store_true",
        help="rewrite the .md from the JSON in --out (and --reading)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.random_data, args.epochs, args.rounds = True, 2, 1
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.render:
        path = Path(args.out) / "epoch_vs_pythae_cpu.json"
        result = json.loads(path.read_text())
        if args.reading:
            result["reading"] = Path(args.reading).read_text().strip()
        write_results(args.out, "epoch_vs_pythae_cpu", result, render(result))
        return result
    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(wanted) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; allowed: {', '.join(VARIANTS)}")
    if "handwritten" not in wanted:
        wanted.append("handwritten")  # the reference every ratio is taken against
    try:
        from importlib.metadata import version

        import pythae  # noqa: F401

        pythae_version = version("pythae")
    except ImportError:
        pythae_version = None
        if "pythae" in wanted:
            print("pythae is not installed (pip install pythae): timing the other variants")
            wanted.remove("pythae")
    torch.set_num_threads(args.threads)
    train, _, description = binarized_mnist(
        "epoch_vs_pythae.py", args.data_dir, args.random_data, args.seed
    )
    if args.limit:
        train = train[: args.limit]
    folder = tempfile.mkdtemp(prefix="pythae-")
    builders = {
        "pythae": lambda: pythae_run(train, args.batch_size, args.seed, folder),
        "pyro_vi_meanfield": lambda: pyro_vi_run(
            train, args.batch_size, args.seed, "meanfield", False, args.threads
        ),
        "pyro_vi_meanfield_compiled": lambda: pyro_vi_run(
            train, args.batch_size, args.seed, "meanfield", True, args.threads
        ),
        "pyro_vi_elbo": lambda: pyro_vi_run(
            train, args.batch_size, args.seed, "elbo", False, args.threads
        ),
        "handwritten": lambda: handwritten_run(train, args.batch_size, args.seed),
    }
    runs = {label: builders[label]() for label in VARIANTS if label in wanted}
    variants = measure(runs, args.rounds, args.epochs)
    result = {
        "environment": environment("cpu"),
        "settings": {
            "data": description,
            "images": len(train),
            "batch_size": args.batch_size,
            "steps_per_epoch": math.ceil(len(train) / args.batch_size),
            "epochs": args.epochs,
            "rounds": args.rounds,
            "threads": args.threads,
            "pythae": pythae_version,
            "command": "python benchmarks/epoch_vs_pythae.py " + " ".join(argv or sys.argv[1:]),
        },
        "variants": variants,
        "reading": Path(args.reading).read_text().strip() if args.reading else None,
    }
    stem = "epoch_vs_pythae_cpu" + ("_smoke" if args.smoke else "")
    report = render(result)
    write_results(args.out, stem, result, report)
    print(report)
    return result


if __name__ == "__main__":
    main()
