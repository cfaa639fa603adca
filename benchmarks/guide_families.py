"""Every posterior family as the encoder of the IWAE paper's VAE: bound, likelihood, speed, size.

Workload: the one-stochastic-layer MLP VAE of Burda et al. (2016), 784-200-200-50 with tanh and a
Bernoulli decoder (the model of ``pyro_vi.architectures.iwae_mlp_vae``), on fixed binarized MNIST
(Larochelle & Murray). For each family the guide is
``AmortizedGuide(model, encoder=[200, 200], family=name)`` with the family's default options: the
architecture's 784-200-200 tanh encoder, then the family's head, so the families differ only in
q(z | h). Every family starts from the same decoder weights and sees the same minibatches (batch
100, shuffled per epoch with a fixed seed) for the same number of steps, trained by Adam (lr 1e-3)
on the single-sample ELBO. Then, on the test set:

- ``test_elbo``: the ELBO on all 10000 test images (one draw per image), nats per image;
- ``test_ll``: the IWAE-K estimate of log p(x) (``pyro_vi.evaluation.log_likelihood``) on the
  first ``--eval-images`` test images, with ``eval_elbo``, the ELBO of those same images (10
  draws each), beside it: ``test_ll - eval_elbo`` is the bound's gap there;
- ``ms_per_step``: the median wall-clock time of one SVI step (forward, backward, Adam), with
  its quartiles and ``other_cpu_load``, the share of the machine's CPU time other processes took
  during the family's training (timings of rows with a high value are inflated);
- ``guide_parameters``: the guide's parameter count (the model's is the same for every row).

Run from the repository root:

    python benchmarks/guide_families.py                    # CPU, ~10 min on 2 cores
    python benchmarks/guide_families.py --device cuda
    python benchmarks/guide_families.py --full             # the paper's evaluation: K = 5000,
                                                           # all 10000 test images (slow on CPU)
    python benchmarks/guide_families.py --smoke --random-data --out /tmp/families   # seconds

Writes ``guide_families_<device>.json`` and ``.md`` to ``--out`` (``*_smoke.*`` for ``--smoke``,
so that a smoke run never overwrites a reference run).

What it does not show: training stops far from convergence (the paper trains for 3280 epochs;
the default here is 6), so differences between families mix how good each family can be with how
fast it learns.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pyro
import pyro.optim
import torch
from pyro.infer import SVI

from pyro_vi.architectures import iwae_mlp_vae
from pyro_vi.devices import resolve_device
from pyro_vi.estimators import get
from pyro_vi.evaluation import log_likelihood
from pyro_vi.guides import families
from pyro_vi.guides.amortized import AmortizedGuide

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # the sibling file: benchmarks/ is not a package
    OtherLoad,
    binarized_mnist,
    default_data_dir,
    environment,
    synchronizer,
    write_results,
)

FAMILIES = (
    "diagonal",
    "full_rank",
    "low_rank",
    "mixture",
    "planar",
    "radial",
    "iaf",
    "spline_ar",
    "affine_coupling",
    "householder",
    "sylvester",
)
DEFAULTS = {"steps": 3000, "eval_k": 1000, "eval_images": 1000, "elbo_images": 10000}
FULL = {"eval_k": 5000, "eval_images": 10000}
SMOKE = {"steps": 3, "batch_size": 20, "eval_k": 10, "eval_images": 20, "elbo_images": 50}
#: Particles per image of the ELBO on the evaluation images (beside the IWAE-K estimate).
EVAL_ELBO_PARTICLES = 10


# -- data -------------------------------------------------------------------------------------


def load_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(train ``[N, 1, 28, 28]``, test, description): binarized MNIST, or random images."""
    return binarized_mnist("guide_families.py", args.data_dir, args.random_data, args.seed)


def count(parameters: Any) -> int:
    return sum(p.numel() for p in parameters)


def quartiles(values: list[float]) -> dict[str, float | None]:
    if not values:  # diverged before a step was timed
        return {"median": None, "q1": None, "q3": None}
    if len(values) < 2:
        return {"median": values[0], "q1": values[0], "q3": values[0]}
    q1, median, q3 = statistics.quantiles(values, n=4)
    return {"median": median, "q1": q1, "q3": q3}


def batches(size: int, batch_size: int, steps: int, seed: int) -> list[torch.Tensor]:
    """Minibatch indices for ``steps`` steps: a fresh permutation per epoch, the same for every
    family (a fixed generator), the epoch's last partial batch dropped."""
    generator = torch.Generator().manual_seed(seed)
    per_epoch = max(size // batch_size, 1)
    result: list[torch.Tensor] = []
    while len(result) < steps:
        order = torch.randperm(size, generator=generator)
        result.extend(order[i * batch_size : (i + 1) * batch_size] for i in range(per_epoch))
    return result[:steps]


@torch.no_grad()
def initial_variance(guide: AmortizedGuide, x: torch.Tensor, draws: int = 100) -> float:
    """The variance of q(z | x) per latent coordinate, averaged over coordinates and images,
    from ``draws`` draws: how wide the guide starts (the prior's is 1)."""
    with pyro.poutine.block(), pyro.plate("draws", draws, dim=-2):
        z = guide(x)["z"]
    return float(z.var(dim=0).mean())


@torch.no_grad()
def mean_elbo(
    model: Any, guide: Any, images: torch.Tensor, particles: int, batch_size: int
) -> float:
    """The ELBO per image, averaged over ``images`` in batches (``particles`` draws each)."""
    loss = get("elbo", num_particles=particles)
    total = 0.0
    for start in range(0, len(images), batch_size):
        total += loss.loss(model, guide, images[start : start + batch_size])
    return -total / len(images)


def run_family(
    name: str,
    train: torch.Tensor,
    test: torch.Tensor,
    schedule: list[torch.Tensor],
    args: argparse.Namespace,
    device: torch.device,
) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Train the VAE with the family ``name`` as its guide, then evaluate it.

    Returns:
        The row, and the IWAE-K estimate per evaluation image (``None`` if training diverged).
    """
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)  # the same decoder weights for every family
    model, _ = iwae_mlp_vae()
    model.to(device)
    guide = AmortizedGuide(model, encoder=[200, 200], family=name, activation="tanh")
    # The guide's first call builds it; a family that starts much wider than the others starts
    # far from any useful posterior, which matters when training is short.
    init_variance = initial_variance(guide, train[schedule[0]].to(device))
    svi = SVI(model, guide, pyro.optim.Adam({"lr": args.lr}), loss=get(args.estimator))
    sync = synchronizer(device)

    load_meter = OtherLoad()
    step_ms, losses = [], []
    for indices in schedule:
        x = train[indices].to(device, non_blocking=True)
        sync()
        start = time.perf_counter()
        try:
            loss = svi.step(x)
        except (ValueError, RuntimeError):
            # A diverged family: NaN parameters fail a distribution's argument check. The row
            # says "diverged" rather than the benchmark stopping.
            losses.append(math.nan)
            break
        sync()
        step_ms.append(1e3 * (time.perf_counter() - start))
        losses.append(loss / len(x))
        if not math.isfinite(loss):
            break
    other_load = load_meter.share()
    row = {
        "family": name,
        "family_options": families.options(name),
        "guide_parameters": count(guide.parameters()),
        "model_parameters": count(model.parameters()),
        "initial_q_variance": init_variance,
        # The first step is a warm-up (allocations, Adam's state): not timed.
        "ms_per_step": quartiles(step_ms[1:] if len(step_ms) > 1 else step_ms),
        "train_seconds": sum(step_ms) / 1e3,
        "other_cpu_load": other_load,
        "diverged": not all(math.isfinite(loss) for loss in losses),
    }
    if row["diverged"]:
        # Kept as a row (strict JSON has no NaN): the table says so instead of a number.
        keys = ("train_elbo_last_10pct", "test_elbo", "eval_elbo", "test_ll", "test_ll_stderr")
        return {**row, **dict.fromkeys(keys), "train_elbo_curve": [], "eval_seconds": 0.0}, None

    start = time.perf_counter()
    test_elbo = mean_elbo(model, guide, test[: args.elbo_images].to(device), 1, 1000)
    evaluation = test[: args.eval_images].to(device)
    eval_elbo = mean_elbo(model, guide, evaluation, EVAL_ELBO_PARTICLES, args.eval_batch)
    test_ll = log_likelihood(
        model,
        guide,
        evaluation,
        num_samples=args.eval_k,
        chunk_size=args.eval_chunk,
        batch_size=args.eval_batch,
    )
    eval_seconds = time.perf_counter() - start

    tail = losses[-max(len(losses) // 10, 1) :]
    block = 100
    row = {
        **row,
        "train_elbo_last_10pct": -sum(tail) / len(tail),
        "train_elbo_curve": [
            -sum(losses[i : i + block]) / len(losses[i : i + block])
            for i in range(0, len(losses), block)
        ],
        "test_elbo": test_elbo,
        "eval_elbo": eval_elbo,
        "test_ll": float(test_ll.mean()),
        "test_ll_stderr": float(test_ll.std() / math.sqrt(len(test_ll)))
        if len(test_ll) > 1
        else None,
        "eval_seconds": eval_seconds,
    }
    return row, test_ll


def add_paired_differences(rows: list[dict[str, Any]], per_image: dict[str, Any]) -> None:
    """Each row's IWAE-K estimate minus the reference family's (``diagonal`` when it ran), with
    the standard error of that difference over the *same* images.

    The between-image spread of log p(x) (tens of nats) dominates each row's own standard
    error, and it cancels in a paired difference: that is the error to judge a Δ by.
    """
    finite = [row["family"] for row in rows if per_image[row["family"]] is not None]
    if not finite:
        return
    reference = "diagonal" if "diagonal" in finite else finite[0]
    base = per_image[reference]
    for row in rows:
        values = per_image[row["family"]]
        row["test_ll_reference"] = reference
        if values is None:
            row["test_ll_delta"] = row["test_ll_delta_stderr"] = None
            continue
        difference = values - base
        row["test_ll_delta"] = float(difference.mean())
        row["test_ll_delta_stderr"] = (
            float(difference.std() / math.sqrt(len(difference))) if len(difference) > 1 else None
        )


# -- report -----------------------------------------------------------------------------------


NOTES = """\
## Reading the table

- **Far from convergence.** The paper trains for 3280 passes over the data; these runs stop after a
  few. The bounds here are far below the paper's (test log-likelihood -86.76 for this model
  trained with the ELBO, -84.78 with IWAE at k = 50, on dynamically binarized MNIST: Burda et
  al. 2016, Table 1; fixed binarization is a different benchmark), and the ranking measures how
  far each family gets in the same number of steps, a mix of how flexible it is and how fast it
  learns, not what it reaches at convergence.
- **One seed.** Initialization and minibatch noise are not averaged out. Two runs of this
  configuration whose random streams differed (an earlier version of the script drew no
  init-variance samples) moved single families' test ELBO by 0.0 to 2.8 nats (mixture: -120.9,
  then -123.7): differences of a nat or two between families are within what another seed could
  change, and the paired error below does not cover it.
- **What the errors are.** `±` is the standard error of the mean LL over the evaluation images
  (their spread in log p(x)); a difference between two families on the same images has the much
  smaller paired error `Δ LL ±`. Neither includes seed-to-seed variation.
- **LL - ELBO** is the bound's gap on the same images: what a better q could still gain, for this
  decoder. The IWAE-K estimate with finite K is itself a lower bound on log p(x).
- **init var**: the variance of q(z | x) per latent coordinate at initialization (the prior's
  is 1). A family that starts much wider than the others starts far from any useful posterior,
  which costs it most when training is short.
- **full_rank** trails by far more than seed noise. Its head has dim (dim - 1) / 2 = 1225
  off-diagonal Cholesky outputs per image, with PyTorch's default initialization. In separate
  runs (not written by this script, same data and steps): starting that head at zero (its
  weights x 0.01, as the flows start their heads) moved its test ELBO from -137.8 to -124.4,
  still 6 nats behind diagonal; and with the default start, the off-diagonal entries grew during
  training (their sum of squares per image 4.9 at step 500, 8.8 at step 2500) while the ELBO of
  200 test images lagged diagonal's by 30 nats at step 3000. The row measures this
  parameterization under a one-sample gradient and Adam at lr 1e-3, not full covariance as such.
- **Timings** are medians on a shared machine; `other load` is the share of CPU time other
  processes took while the family trained. The median is robust to bursts, not to a busy
  machine. Flows cost their extra networks per step; the model's share is the same for all.
"""


def markdown(result: dict[str, Any]) -> str:
    """The rows as a Markdown table, with the settings and what the numbers mean."""
    settings, env = result["settings"], result["environment"]
    rows = result["rows"]
    finite = [row for row in rows if not row["diverged"]] or rows
    base = next((row for row in finite if row["family"] == "diagonal"), finite[0])
    k, images = settings["eval_k"], settings["eval_images"]
    lines = [
        f"# Guide families on the IWAE-paper MLP VAE ({env['device']})",
        "",
        f"`python benchmarks/guide_families.py` on {env['device_name']}, "
        f"{env['torch_threads']} torch threads, torch {env['torch']}, pyro {env['pyro']}, "
        f"{env['date']}.",
        "",
        f"Training: {settings['steps']} steps of batch {settings['batch_size']} "
        f"({settings['epochs']:.1f} epochs) of `{settings['estimator']}` with Adam "
        f"(lr {settings['lr']}); data: {settings['data']}. Guide: {settings['encoder']}, each "
        "family with its default options.",
        "",
        f"Test ELBO: all {settings['elbo_images']} test images, 1 draw each. IWAE-{k} LL "
        f"(`pyro_vi.evaluation.log_likelihood`, K = {k}) and the ELBO beside it "
        f"({settings['eval_elbo_particles']} draws each): the first {images} test images. "
        f"Nats per image. Δ: against `{base['family']}`. ms/step: median (quartiles) of one "
        "SVI step (forward, backward, Adam).",
        "",
        "| family | guide params | init var | ms/step | x diag | train ELBO (last 10 %) "
        f"| test ELBO | Δ | IWAE-{k} LL | ± | Δ LL ± (paired) | LL - ELBO | other load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ms = row["ms_per_step"]
        base_ms = base["ms_per_step"]["median"]
        timed = ms["median"] is not None
        head = (
            f"| {row['family']} | {row['guide_parameters']:,} | "
            f"{row['initial_q_variance']:.2f} | "
            + (f"{ms['median']:.1f} ({ms['q1']:.1f}-{ms['q3']:.1f}) | " if timed else " | ")
            + (f"{ms['median'] / base_ms:.2f} | " if timed and base_ms else " | ")
        )
        load_share = "" if row["other_cpu_load"] is None else f"{row['other_cpu_load']:.2f}"
        if row["diverged"]:
            lines.append(head + f"diverged (non-finite loss) | | | | | | | {load_share} |")
            continue
        delta = "" if row.get("test_ll_delta") is None else f"{row['test_ll_delta']:+.2f}"
        if row.get("test_ll_delta_stderr") is not None and row is not base:
            delta += f" ± {row['test_ll_delta_stderr']:.2f}"
        stderr = "" if row["test_ll_stderr"] is None else f"{row['test_ll_stderr']:.2f}"
        lines.append(
            head + f"{row['train_elbo_last_10pct']:.2f} | {row['test_elbo']:.2f} | "
            f"{row['test_elbo'] - base['test_elbo']:+.2f} | {row['test_ll']:.2f} | {stderr} | "
            f"{delta} | {row['test_ll'] - row['eval_elbo']:.2f} | {load_share} |"
        )
    return "\n".join(lines) + "\n\n" + NOTES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help=f"comma-separated subset of {','.join(sorted(families.FAMILIES))}",
    )
    parser.add_argument("--steps", type=int, default=None, help=f"default {DEFAULTS['steps']}")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--estimator", default="elbo", help="training objective (pyro_vi.estimators.get)"
    )
    parser.add_argument(
        "--eval-k", type=int, default=None, help=f"IWAE-K draws (default {DEFAULTS['eval_k']})"
    )
    parser.add_argument(
        "--eval-images",
        type=int,
        default=None,
        help=f"test images for the IWAE-K estimate (default {DEFAULTS['eval_images']})",
    )
    parser.add_argument("--eval-chunk", type=int, default=200, help="draws per vectorized pass")
    parser.add_argument("--eval-batch", type=int, default=100, help="images per pass")
    parser.add_argument(
        "--full", action="store_true", help="the paper's evaluation: K = 5000, all test images"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    parser.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help="folder holding binarized-mnist/ (default: $PYRO_VI_DATA, else ../shared/data)",
    )
    parser.add_argument(
        "--random-data", action="store_true", help="random images instead (tests, timings)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--smoke", action="store_true", help="seconds: a test, not a measurement")
    args = parser.parse_args(argv)

    args.families = [name.strip() for name in args.families.split(",") if name.strip()]
    unknown = [name for name in args.families if name not in families.FAMILIES]
    if unknown or not args.families:
        parser.error(
            f"--families: unknown {unknown or args.families}; "
            f"choose from {', '.join(sorted(families.FAMILIES))}"
        )
    try:
        get(args.estimator)
    except ValueError as error:
        parser.error(f"--estimator: {error}")
    if args.smoke and args.full:
        parser.error("--smoke and --full exclude each other")
    # --full fills what the command line left open; --smoke fixes its tiny settings outright.
    preset = {**DEFAULTS, **(FULL if args.full else {}), **(SMOKE if args.smoke else {})}
    for key, value in preset.items():
        if args.smoke or getattr(args, key, None) is None:
            setattr(args, key, value)
    for key in ("steps", "batch_size", "eval_k", "eval_images", "eval_chunk", "eval_batch"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = resolve_device(args.device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    try:
        return run(args, device)
    finally:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    train, test, data = load_data(args)
    args.elbo_images = min(args.elbo_images, len(test))
    args.eval_images = min(args.eval_images, len(test))
    schedule = batches(len(train), args.batch_size, args.steps, args.seed)
    settings = {
        "families": args.families,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "epochs": args.steps * args.batch_size / len(train),
        "lr": args.lr,
        "optimizer": "Adam",
        "estimator": args.estimator,
        "encoder": "AmortizedGuide(model, encoder=[200, 200], family=...), tanh",
        "model": "pyro_vi.architectures.iwae_mlp_vae(): 784-200-200-50 tanh, Bernoulli logits",
        "eval_k": args.eval_k,
        "eval_images": args.eval_images,
        "eval_elbo_particles": EVAL_ELBO_PARTICLES,
        "elbo_images": args.elbo_images,
        "eval_chunk": args.eval_chunk,
        "eval_batch": args.eval_batch,
        "data": data,
        "train_images": len(train),
        "seed": args.seed,
        "smoke": args.smoke,
        "full": args.full,
    }
    print(f"{data}; {args.steps} steps of {args.batch_size}; IWAE-{args.eval_k} on "
          f"{args.eval_images} test images; device {device}", flush=True)  # fmt: skip
    rows, per_image = [], {}
    for name in args.families:
        row, per_image[name] = run_family(name, train, test, schedule, args, device)
        rows.append(row)
        print(
            f"{name:<16} {row['ms_per_step']['median']:7.1f} ms/step  test ELBO "
            f"{row['test_elbo']:8.2f}  IWAE-{args.eval_k} {row['test_ll']:8.2f}  "
            f"({row['train_seconds']:.0f} s train, {row['eval_seconds']:.0f} s eval, "
            f"other load {row['other_cpu_load']})",
            flush=True,
        )
    add_paired_differences(rows, per_image)
    result = {"environment": environment(device), "settings": settings, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"guide_families_{device.type}{'_smoke' if args.smoke else ''}"
    write_results(out, stem, result, markdown(result))
    print(f"wrote {out / stem}.json and .md")
    return result


if __name__ == "__main__":
    main()
