"""Binary latents: score-function ELBO, VIMCO and the Concrete relaxations, side by side.

Workload: a sigmoid belief net (``pyro_vi.models.sbn.SigmoidBeliefNet``) on fixed binarized MNIST
(Larochelle & Murray), the network of ``configs/sbn_binarized_mnist.toml``: 200 binary latents
with a learned Bernoulli prior, a 200-200-784 tanh MLP from z to the pixels' logits, and the guide
q(z | x) = Bernoulli(sigmoid(encoder(x))) with a 784-200 tanh encoder and a linear head
(``pyro_vi.guides.bernoulli.BernoulliGuide``). Variants, trained from the same initial weights on
the same minibatches (batch 50, one fixed order), by Adam with the same learning rate:

- ``score``: ``get("elbo")`` on the discrete model: one-sample ELBO, score-function gradient for
  z with a decaying-average baseline, Rao-Blackwellized (unbiased);
- ``vimco``: ``get("vimco", num_particles=5)``: IWAE_5 with VIMCO's leave-one-out signals
  (unbiased for IWAE_5; 5 times the decoder work per step);
- ``concrete``: binary Concrete relaxation at temperature 2/3 for prior and guide, one-sample
  reparameterized ELBO of the *relaxed* model (biased for the discrete model);
- ``straight_through``: the same relaxed densities, the decoder reading the hard code 1[y > 0]
  with the gradient of sigmoid(y): one-sample ELBO of a model with the discrete model's marginal
  (a true bound on its log p(x)), straight-through (biased) gradient.

Every variant is measured on the *discrete* model with its trained parameters
(``model.discrete()``, ``guide.discrete()``), never on its own training objective:

- at checkpoints (steps 0, 250, 500, 1000, 2000, ... ): the discrete test ELBO (5 draws per image)
  and the IWAE-``curve_k`` log-likelihood of the first ``eval_images`` test images, against the
  optimizer steps and against the cumulative training seconds (evaluation not counted); for the
  relaxed variants also their relaxed objective on the same images;
- at three checkpoints (start, middle, end) the variance and SNR of the estimator's own gradient
  (``pyro_vi.evaluation.gradient_snr``, ``snr_draws`` draws on one fixed batch of 50 training
  images, the gradient of minus the bound summed over the batch), per group: ``guide`` (the
  encoder and its head) and ``model`` (decoder and prior logits). At step 0 all variants sit at
  the same parameters, so their variances compare estimators at one point; later each is at its
  own parameters. The one-particle baseline is warmed up by 20 discarded draws first;
- after training: IWAE-``final_k`` on the evaluation images.

Random numbers: training draws from its own stream; every evaluation runs under a forked RNG with
a fixed seed, so evaluations neither perturb training nor differ between variants by their seeds.

Run from the repository root:

    python benchmarks/discrete_latents.py      # CPU: 20000 steps, ~11 min on 2 shared cores
    python benchmarks/discrete_latents.py --steps 50000 --device cuda
    python benchmarks/discrete_latents.py --smoke --random-data --out /tmp/discrete   # seconds

Writes ``discrete_latents_<device>.json``, ``.md`` and ``.png`` to ``--out`` (``*_smoke.*`` for
``--smoke``, so that a smoke run never overwrites a reference run).
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

from pyro_vi.devices import resolve_device
from pyro_vi.estimators import get
from pyro_vi.evaluation import gradient_snr, log_likelihood
from pyro_vi.guides.bernoulli import BernoulliGuide
from pyro_vi.models.sbn import SigmoidBeliefNet
from pyro_vi.nets import MLPDecoder, MLPEncoder
from pyro_vi.train import evaluate_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # the sibling file: benchmarks/ is not a package
    OtherLoad,
    binarized_mnist,
    default_data_dir,
    environment,
    write_results,
)

#: name -> (relaxation, estimator, options)
VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "score": ("none", "elbo", {"num_particles": 1}),
    "vimco": ("none", "vimco", {"num_particles": 5}),
    "concrete": ("concrete", "elbo", {"num_particles": 1}),
    "straight_through": ("straight_through", "elbo", {"num_particles": 1}),
}
TEMPERATURE = 2.0 / 3.0
DEFAULTS = {
    "steps": 20000,
    "batch_size": 50,
    "lr": 1e-3,
    "latent_dim": 200,
    "hidden": 200,
    "eval_images": 500,
    "curve_k": 50,
    "final_k": 1000,
    "snr_draws": 100,
}
SMOKE = {
    "steps": 2,
    "batch_size": 10,
    "latent_dim": 8,
    "hidden": 16,
    "eval_images": 20,
    "curve_k": 4,
    "final_k": 8,
    "snr_draws": 3,
}
#: ELBO draws per evaluation image; the ELBO curve's Monte Carlo error is then well under 0.1 nat.
ELBO_PARTICLES = 5
#: Discarded gradient draws before the variance is measured (the K = 1 running baseline).
WARMUP_DRAWS = 20


# -- data and models --------------------------------------------------------------------------


def load_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(train ``[N, 1, 28, 28]``, test, description): binarized MNIST, or random images."""
    return binarized_mnist("discrete_latents.py", args.data_dir, args.random_data, args.seed)


def build(
    relaxation: str, shape: tuple[int, ...], args: argparse.Namespace
) -> tuple[SigmoidBeliefNet, BernoulliGuide]:
    """The SBN and its guide; the same initial weights for every variant (seeded by the caller)."""
    temperature = None if relaxation == "none" else TEMPERATURE
    decoder = MLPDecoder(args.latent_dim, [args.hidden], shape)
    model = SigmoidBeliefNet(
        decoder, args.latent_dim, data_shape=shape, relaxation=relaxation, temperature=temperature
    )
    encoder = MLPEncoder(shape, [args.hidden])
    return model, BernoulliGuide(encoder, args.latent_dim, temperature=temperature)


def batches(size: int, batch_size: int, steps: int, seed: int) -> list[torch.Tensor]:
    """Minibatch indices: a fresh permutation per epoch from a fixed generator (the same for
    every variant), the epoch's last partial batch dropped."""
    generator = torch.Generator().manual_seed(seed)
    per_epoch = max(size // batch_size, 1)
    result: list[torch.Tensor] = []
    while len(result) < steps:
        order = torch.randperm(size, generator=generator)
        result.extend(order[i * batch_size : (i + 1) * batch_size] for i in range(per_epoch))
    return result[:steps]


def checkpoints(steps: int) -> list[int]:
    """0, 250, 500, 1000, then every 1000 steps (a tenth of the run for short runs), and the end."""
    every = min(1000, max(steps // 10, 1))
    marks = {0, steps, *range(every, steps, every)}
    marks |= {s for s in (250, 500) if s < steps}
    return sorted(marks)


# -- measurements -----------------------------------------------------------------------------


class Evaluation:
    """Evaluations under a forked RNG with a fixed seed: they do not move training's stream."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> Evaluation:
        self._fork = torch.random.fork_rng(devices=[])
        self._fork.__enter__()
        torch.manual_seed(self.seed)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._fork.__exit__(*exc)


def discrete_bounds(
    model: SigmoidBeliefNet, guide: BernoulliGuide, images: torch.Tensor, k: int
) -> dict[str, float]:
    """The discrete model's ELBO and IWAE-k on ``images``, and the relaxed objective (if any)."""
    discrete_model, discrete_guide = model.discrete(), guide.discrete()
    elbo = get("elbo", num_particles=ELBO_PARTICLES)
    result = {
        "test_elbo": -evaluate_loss(discrete_model, discrete_guide, images, elbo, batch_size=500),
        "test_ll": float(
            log_likelihood(
                discrete_model,
                discrete_guide,
                images,
                num_samples=k,
                chunk_size=50,
                batch_size=250,
            ).mean()
        ),
    }
    if discrete_model is not model:
        # The relaxed model's own ELBO on the same images (a different model's bound).
        result["relaxed_elbo"] = -evaluate_loss(model, guide, images, elbo, batch_size=500)
    return result


def gradient_stats(
    name: str, model: Any, guide: Any, batch: torch.Tensor, draws: int
) -> dict[str, Any]:
    """Variance and SNR of the variant's own gradient on ``batch``, per parameter group."""
    _, estimator, options = VARIANTS[name]
    loss = get(estimator, **options)
    for _ in range(WARMUP_DRAWS):  # settles the one-particle running baseline
        loss.differentiable_loss(model, guide, batch)
    stats = gradient_snr(loss, model, guide, batch, num_draws=draws)
    return {group: value.to_dict() for group, value in stats.items()}


def run_variant(
    name: str,
    train: torch.Tensor,
    evaluation: torch.Tensor,
    schedule: list[torch.Tensor],
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, Any]:
    """Train one variant, measuring at the checkpoints."""
    relaxation, estimator, options = VARIANTS[name]
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)  # the same initial weights for every variant
    model, guide = build(relaxation, tuple(train.shape[1:]), args)
    model.to(device)
    guide.to(device)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": args.lr}), loss=get(estimator, **options))
    snr_batch = train[: args.batch_size].to(device)
    marks = checkpoints(len(schedule))
    snr_marks = {marks[0], marks[len(marks) // 2], marks[-1]}
    num_data = len(train)

    curve, gradients, step_ms, losses = [], [], [], []
    seconds, load_meter = 0.0, OtherLoad()
    for step in range(len(schedule) + 1):
        if step in marks:
            with Evaluation(args.seed + 1):
                point = {"step": step, "seconds": seconds}
                point.update(discrete_bounds(model, guide, evaluation, args.curve_k))
                recent = losses[-100:]
                point["train_objective"] = -sum(recent) / len(recent) if recent else None
                curve.append(point)
                if step in snr_marks:
                    stats = gradient_stats(name, model, guide, snr_batch, args.snr_draws)
                    gradients.append({"step": step, **stats})
            print(format_point(name, curve[-1], gradients[-1] if step in snr_marks else None))
        if step == len(schedule):
            break
        x = train[schedule[step]].to(device)
        start = time.perf_counter()
        loss = svi.step(x, num_data=num_data)
        elapsed = time.perf_counter() - start
        seconds += elapsed
        step_ms.append(1e3 * elapsed)
        losses.append(loss / num_data)  # minus the objective, nats per datapoint
        if not math.isfinite(loss):
            print(f"{name}: diverged at step {step + 1}")
            break
    other_load = load_meter.share()
    with Evaluation(args.seed + 2):
        final = discrete_bounds(model, guide, evaluation, args.final_k)
    return {
        "variant": name,
        "relaxation": relaxation,
        "temperature": None if relaxation == "none" else TEMPERATURE,
        "estimator": estimator,
        "options": options,
        "steps": len(step_ms),
        "diverged": not all(math.isfinite(v) for v in losses),
        "train_seconds": seconds,
        "ms_per_step": statistics.median(step_ms[1:] or step_ms),
        "other_cpu_load": other_load,
        "curve": curve,
        "gradients": gradients,
        "final": {
            "test_elbo": final["test_elbo"],
            f"test_ll_iwae_{args.final_k}": final["test_ll"],
            **({"relaxed_elbo": final["relaxed_elbo"]} if "relaxed_elbo" in final else {}),
        },
    }


def format_point(name: str, point: dict[str, Any], gradient: dict[str, Any] | None) -> str:
    text = (
        f"{name:>16} step {point['step']:>6} {point['seconds']:7.1f}s  discrete ELBO "
        f"{point['test_elbo']:8.2f}  IWAE {point['test_ll']:8.2f}"
    )
    if "relaxed_elbo" in point:
        text += f"  relaxed ELBO {point['relaxed_elbo']:8.2f}"
    if gradient is not None:
        text += (
            f"  guide var {gradient['guide']['mean_variance']:.3e} SNR "
            f"{gradient['guide']['mean_snr']:.3f}"
        )
    return text


# -- report -----------------------------------------------------------------------------------


def strict(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict(item) for item in value]
    return value


def markdown(result: dict[str, Any]) -> str:
    settings, env = result["settings"], result["environment"]
    k, final_k = settings["curve_k"], settings["final_k"]
    lines = [
        f"# Binary latents: score function, VIMCO, Concrete, straight-through ({env['device']})",
        "",
        f"`python benchmarks/discrete_latents.py` on {env['device_name']}, "
        f"{env['torch_threads']} torch thread(s), torch {env['torch']}, pyro {env['pyro']}, "
        f"{env['date']}; other processes' share of the CPU while training: "
        + ", ".join(f"{row['variant']} {row['other_cpu_load']}" for row in result["rows"])
        + f"; total {result['seconds'] / 60:.1f} min.",
        "",
        f"Model: {settings['model']}. Data: {settings['data']}. {settings['steps']} steps of "
        f"batch {settings['batch_size']} ({settings['epochs']:.1f} epochs), Adam lr "
        f"{settings['lr']}, the same initial weights and minibatches for every variant. "
        f"Bounds of the **discrete** model with the trained parameters on the first "
        f"{settings['eval_images']} test images, nats per image: ELBO ({ELBO_PARTICLES} draws "
        f"per image), IWAE-{final_k} at the end. Gradient variance: mean over entries of the "
        f"variance of the estimator's own gradient ({settings['snr_draws']} draws, one batch of "
        f"{settings['batch_size']}, summed over it), guide = encoder and head; SNR = mean "
        "|E g| / std g.",
        "",
        f"| variant | estimator | ms/step | train s | discrete test ELBO | IWAE-{final_k} | "
        "relaxed ELBO | guide grad var (start / mid / end) | guide SNR (start / mid / end) | "
        "model grad var (start / end) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        final = row["final"]
        grads = row["gradients"]
        variance = " / ".join(f"{g['guide']['mean_variance']:.2e}" for g in grads)
        snr = " / ".join(f"{g['guide']['mean_snr']:.3f}" for g in grads)
        model_var = " / ".join(f"{g['model']['mean_variance']:.2e}" for g in (grads[0], grads[-1]))
        relaxed = final.get("relaxed_elbo")
        options = ", ".join(f"{key}={value}" for key, value in row["options"].items())
        label = row["variant"] + ("" if row["temperature"] is None else f" (λ={TEMPERATURE:.2f})")
        lines.append(
            f"| {label} | {row['estimator']}({options}) | {row['ms_per_step']:.1f} | "
            f"{row['train_seconds']:.0f} | {final['test_elbo']:.2f} | "
            f"{final[f'test_ll_iwae_{final_k}']:.2f} | "
            f"{'-' if relaxed is None else f'{relaxed:.2f}'} | {variance} | {snr} | {model_var} |"
        )
    budget = min(row["curve"][-1]["seconds"] for row in result["rows"])
    lines += [
        "",
        f"Matched training time: the discrete IWAE-{k} at the last checkpoint within "
        f"{budget:.0f} s of training (the shortest run's time): "
        + ", ".join(
            f"{row['variant']} {at_seconds(row, budget)['test_ll']:.2f} (step "
            f"{at_seconds(row, budget)['step']})"
            for row in result["rows"]
        )
        + ".",
        "",
        f"Discrete test ELBO / IWAE-{k} during training (every checkpoint is in the JSON):",
        "",
    ]
    last = result["rows"][0]["curve"][-1]["step"]
    steps = [p["step"] for p in result["rows"][0]["curve"] if shown(p["step"], last)]
    lines.append("| variant | " + " | ".join(f"step {s}" for s in steps) + " |")
    lines.append("|---|" + "---:|" * len(steps))
    for row in result["rows"]:
        cells = [
            f"{p['test_elbo']:.1f} / {p['test_ll']:.1f}" for p in row["curve"] if p["step"] in steps
        ]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def shown(step: int, last: int) -> bool:
    """The checkpoints of the Markdown curve table: early ones, every 5000 steps, the last."""
    return step in (0, 500, 1000, 2000) or step % 5000 == 0 or step == last


def at_seconds(row: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The row's last checkpoint reached within ``seconds`` of training."""
    return [point for point in row["curve"] if point["seconds"] <= seconds + 1e-9][-1]


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    k = result["settings"]["curve_k"]
    for row in result["rows"]:
        curve = [p for p in row["curve"] if p["step"] > 0]
        for axis, key in ((axes[0], "step"), (axes[1], "seconds")):
            (line,) = axis.plot(
                [p[key] for p in curve],
                [p["test_ll"] for p in curve],
                marker="o",
                markersize=3,
                label=f"{row['variant']} IWAE-{k}",
            )
            axis.plot(
                [p[key] for p in curve],
                [p["test_elbo"] for p in curve],
                linestyle="--",
                color=line.get_color(),
                linewidth=1,
            )
        grads = row["gradients"]
        axes[2].plot(
            [g["step"] for g in grads],
            [g["guide"]["mean_variance"] for g in grads],
            marker="o",
            label=row["variant"],
        )
    axes[0].set_xlabel("optimizer steps")
    axes[1].set_xlabel("training seconds (evaluation excluded)")
    for axis in axes[:2]:
        axis.set_ylabel("discrete model's test bound, nats")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="solid: IWAE, dashed: ELBO", title_fontsize=8)
    axes[2].set_yscale("log")
    axes[2].set_xlabel("optimizer steps")
    axes[2].set_ylabel("guide gradient variance (mean over entries)")
    axes[2].grid(alpha=0.3, which="both")
    axes[2].legend(fontsize=8)
    env = result["environment"]
    figure.suptitle(
        f"SBN {result['settings']['model']} on {result['settings']['data'].split(' (')[0]}; "
        f"{env['device_name']}, {env['date'][:10]}",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key, value in DEFAULTS.items():
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            type=type(value),
            default=None,
            help=f"default {value} ({SMOKE.get(key, value)} with --smoke)",
        )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
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
    base = {**DEFAULTS, **(SMOKE if args.smoke else {})}
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown or not args.variants:
        parser.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
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
    start = time.perf_counter()
    train, test, description = load_data(args)
    evaluation = test[: args.eval_images].to(device)
    schedule = batches(len(train), args.batch_size, args.steps, args.seed)
    rows = [run_variant(name, train, evaluation, schedule, args, device) for name in args.variants]
    result = {
        "benchmark": "discrete_latents",
        "environment": environment(device),
        "settings": {
            **{key: getattr(args, key) for key in DEFAULTS},
            "epochs": args.steps * args.batch_size / len(train),
            "smoke": args.smoke,
            "seed": args.seed,
            "data": description,
            "train_size": len(train),
            "model": f"{args.latent_dim} Bernoulli latents (learned prior logits), decoder "
            f"{args.latent_dim}-{args.hidden}-784 tanh, Bernoulli pixels; guide "
            f"784-{args.hidden} tanh encoder, linear head to {args.latent_dim} logits",
            "temperature": TEMPERATURE,
            "elbo_particles": ELBO_PARTICLES,
            "warmup_draws": WARMUP_DRAWS,
            "gradient": "of minus the variant's own training bound, summed over one fixed batch "
            "of training images (no num_data scaling)",
        },
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }
    result = strict(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"discrete_latents_{device.type}" + ("_smoke" if args.smoke else "")
    write_results(out, stem, result, markdown(result))
    plot(result, out / f"{stem}.png")
    print(markdown(result))
    print(f"wrote {out / stem}.{{json,md,png}} in {result['seconds'] / 60:.1f} min")
    return result


if __name__ == "__main__":
    main()
