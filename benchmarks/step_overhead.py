"""Where the time of an eager training step goes: plain torch, the least a step through Pyro's
handlers costs, Pyro's own ``Trace_ELBO``, and pyro_vi.

Issue 12 asks the eager step to be within 1.15 / 1.10 of the hand-written torch step at K = 1 / 5.
This benchmark splits the difference into what running the program through Pyro costs at the
least and what pyro_vi adds on top, for one objective (the ELBO of K reparameterized particles,
one training step: forward, backward, fused Adam) and two programs built on the same networks
(the IWAE paper's 784-200-200-50 tanh VAE, Bernoulli decoder):

- ``library``: the package's ``VAE`` and ``AmortizedGuide`` (``iwae_mlp_vae``);
- ``user``: two plain Pyro functions as a user writes them, ``pyro.module`` statements, a
  ``pyro.plate`` over the batch, ``dist.Normal(...).to_event(1)`` and
  ``dist.Bernoulli(logits=...).to_event(1)``.

Variants, all from the same initial weights, interleaved round-robin in one process:

- ``torch``: the hand-written step (``handwritten.ELBO``): no Pyro at all;
- ``floor``: the least a library that runs the program through Pyro's handlers does each step:
  the guide traced (its particles in a vectorized plate), the model traced with the guide's
  values replayed, ``-(sum of log p - sum of log q) / K`` from the sites' own ``log_prob``, with
  no checks, no per-datapoint layout and no non-finite guard (``pyro_floor_loss`` below);
- ``pyro``: Pyro's ``Trace_ELBO(num_particles=K, vectorize_particles=K > 1,
  max_plate_nesting=1).differentiable_loss``;
- ``pyro_vi``: the step ``fit`` takes (``pyro_vi.train.Trainer`` with ``get("elbo")``: the
  estimator's ``differentiable_loss``, the fused Adam, the on-device non-finite guard);
- ``pyro_vi_graph``: the same step captured once and replayed (``compile="graph"``), which runs
  none of the program's Python.

Every variant but ``pyro_vi`` steps the same fused ``torch.optim.Adam``. Reported per program and
K: median ms per step, ratios to ``torch``, and the split of the eager overhead: ``floor - torch``
(Pyro's handlers, distribution objects and site bookkeeping) and ``pyro_vi - floor`` (what this
package adds: its checks of the layout, per-datapoint columns, guard).

Run from the repository root:

    python benchmarks/step_overhead.py --threads 1           # writes benchmarks/results/
    python benchmarks/step_overhead.py --smoke --out /tmp/overhead   # seconds
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.poutine.util import prune_subsample_sites
from torch.nn.functional import softplus

from pyro_vi import estimators
from pyro_vi._module import quiet_parameters
from pyro_vi.architectures import iwae_mlp_vae
from pyro_vi.train import Trainer
from pyro_vi.train.optim import build_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import handwritten  # the sibling files: benchmarks/ is not a package
from harness import (
    add_quiet_load_option,
    environment,
    summarize,
    time_variants,
    write_results,
)

PROGRAMS = ("library", "user")
VARIANTS = ("torch", "floor", "pyro", "pyro_vi", "pyro_vi_graph")
DEFAULT_KS = (1, 5)
#: Timed rounds per K (fewer at larger K, where a step takes longer).
DEFAULT_REPEATS = {1: 150, 5: 100}
#: Names of the user program's modules get a fresh suffix per build, so that two builds never
#: share parameters through Pyro's global param store.
_BUILDS = itertools.count()


def user_program(model: Any, guide: Any) -> tuple[Callable, Callable]:
    """Plain Pyro functions over the networks of the library's ``model`` and ``guide``."""
    heads = guide.families["z"]
    decoder, encoder = model.decoder, guide.encoder
    latent = heads.loc_head.out_features
    suffix = next(_BUILDS)

    def user_model(x: torch.Tensor) -> None:
        pyro.module(f"decoder_{suffix}", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(latent), 1.0).to_event(1))
            logits = decoder(z).flatten(-3)
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x.flatten(-3))

    def user_guide(x: torch.Tensor) -> None:
        pyro.module(f"encoder_{suffix}", encoder)
        pyro.module(f"heads_{suffix}", heads)
        features = encoder(x)
        loc = heads.loc_head(features)
        scale = heads.min_scale + softplus(heads.scale_head(features))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return user_model, user_guide


def pyro_floor_loss(model: Callable, guide: Callable, x: torch.Tensor, k: int) -> torch.Tensor:
    """-(1/K) sum_k [log p(x, z_k) - log q(z_k | x)], the particles in a plate at dim -2: the
    guide traced, the model traced against the guide's values, each site's ``log_prob`` summed.
    No checks and no layout: the least a step through Pyro's handlers computes."""

    def vectorized(fn: Callable) -> Callable:
        if k == 1:
            return fn

        def wrapped(*args: Any) -> Any:
            with pyro.plate("particles", k, dim=-2):
                return fn(*args)

        return wrapped

    guide_trace = poutine.trace(vectorized(guide)).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vectorized(model), trace=guide_trace)).get_trace(x)
    total = 0.0
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        # Without the plates' index sites, as Pyro's own ELBOs prune them.
        for site in prune_subsample_sites(trace).nodes.values():
            if site["type"] == "sample":
                total = total + sign * site["fn"].log_prob(site["value"]).sum()
    return -total / k


def build_step(program: str, variant: str, k: int, x: torch.Tensor, seed: int) -> Callable[[], Any]:
    """A fresh model and guide (the same initial weights for every variant) and one step."""
    pyro.set_rng_seed(seed)
    vae, encoder = iwae_mlp_vae()
    vae.to(x.device)
    encoder.to(x.device)
    with poutine.block():
        encoder(x)  # the guide builds its heads at its first call
    model, guide = (vae, encoder) if program == "library" else user_program(vae, encoder)
    if variant.startswith("pyro_vi"):
        loss = estimators.get("elbo", num_particles=k)
        compile_mode = "graph" if variant == "pyro_vi_graph" else False
        trainer = Trainer(model, guide, loss, {}, x.device, None, compile_mode, "raise")
        return lambda: trainer.step((x,))
    fused = handwritten.make("elbo", vae, encoder, num_particles=k)
    optimizer, _ = build_optimizer(None, fused.parameters())
    if variant == "torch":

        def loss_of() -> torch.Tensor:
            return -fused.reduce(fused.log_weights(x)).sum()

    elif variant == "floor":

        def loss_of() -> torch.Tensor:
            return pyro_floor_loss(model, guide, x, k)

    else:
        elbo = Trace_ELBO(num_particles=k, vectorize_particles=k > 1, max_plate_nesting=1)

        def loss_of() -> torch.Tensor:
            return elbo.differentiable_loss(model, guide, x)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        # As pyro_vi's step runs after its first call: without Pyro's validation, and without
        # the package modules' parameter statements (the optimizer holds the parameters).
        with pyro.validation_enabled(False), quiet_parameters():
            value = loss_of()
        value.backward()
        optimizer.step()
        return value.detach()

    return step


# -- one configuration -------------------------------------------------------------------------


def run_config(
    program: str,
    k: int,
    x: torch.Tensor,
    warmup: int,
    repeats: int,
    seed: int,
    quiet_load: float | None,
    max_seconds: float,
) -> dict[str, Any]:
    steps = {variant: build_step(program, variant, k, x, seed) for variant in VARIANTS}
    samples, rounds = time_variants(steps, warmup, repeats, lambda: None, quiet_load, max_seconds)
    variants = {variant: summarize(samples[variant]) for variant in VARIANTS}
    ms = {variant: summary["ms_median"] for variant, summary in variants.items()}
    row = {
        "program": program,
        "K": k,
        "batch_size": len(x),
        "variants": variants,
        "ratios_to_torch": {variant: ms[variant] / ms["torch"] for variant in VARIANTS},
        # Medians of per-round differences: the two steps of a round saw the same machine.
        "overhead_ms": {
            "pyro_runtime": _paired(samples["floor"], samples["torch"]),
            "pyro_vi_core": _paired(samples["pyro_vi"], samples["floor"]),
            "pyro_trace_elbo_over_floor": _paired(samples["pyro"], samples["floor"]),
        },
        "other_cpu_load": rounds.pop("other_cpu_load"),
        "rounds": rounds,
    }
    del steps
    gc.collect()
    return row


def _paired(a: list[float], b: list[float]) -> float:
    return statistics.median(x - y for x, y in zip(a, b, strict=True))


# -- the report --------------------------------------------------------------------------------


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| program | K | "
        + " | ".join(f"{v} ms" for v in VARIANTS)
        + " | "
        + " | ".join(f"{v} / torch" for v in VARIANTS[1:])
        + " | Pyro's runtime (floor - torch) ms | pyro_vi's core (pyro_vi - floor) ms "
        "| Trace_ELBO - floor ms | other CPU load |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        ms = [f"{row['variants'][v]['ms_median']:.2f}" for v in VARIANTS]
        ratios = [f"{row['ratios_to_torch'][v]:.2f}" for v in VARIANTS[1:]]
        over = row["overhead_ms"]
        load = row["other_cpu_load"]
        lines.append(
            f"| {row['program']} | {row['K']} | "
            + " | ".join(ms + ratios)
            + f" | {over['pyro_runtime']:.2f} | {over['pyro_vi_core']:.2f} | "
            f"{over['pyro_trace_elbo_over_floor']:.2f} | {'' if load is None else load} |"
        )
    return "\n".join(lines)


SMOKE_NOTE = "**Smoke run: a tiny batch and a few steps; these numbers measure nothing.**"


def render(result: dict[str, Any]) -> str:
    env, settings = result["environment"], result["settings"]
    repeats = " / ".join(str(n) for n in settings["repeats"].values())
    ks = " / ".join(settings["repeats"])
    return (
        "\n".join(
            [
                "# Where an eager step's time goes: torch, Pyro's handlers, pyro_vi",
                "",
                *([SMOKE_NOTE, ""] if settings["smoke"] else []),
                f"{env['device_name']} ({env['device']}), {env['torch_threads']} torch threads, "
                f"torch {env['torch']}, pyro {env['pyro']}, Python {env['python']}, "
                f"{env['date']}, commit {(env.get('git_commit') or '?')[:12]}. One training step "
                f"(forward, backward, fused Adam) of the ELBO with K particles, batch "
                f"{settings['batch_size']} of {settings['data']}, {settings['model']}; median ms "
                f"over interleaved rounds (at least {repeats} at K = {ks}) after "
                f"{settings['warmup']} warm-up steps. Variants and programs: "
                "`benchmarks/step_overhead.py`'s docstring. The overhead columns are medians of "
                "per-round differences.",
                "",
                markdown_table(result["rows"]),
                "",
            ]
        )
        + "\n"
    )


# -- entry point -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps of a tiny batch")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "results"),
        help="folder for step_overhead_cpu.json/.md (default: benchmarks/results)",
    )
    parser.add_argument("--ks", type=int, nargs="+", default=None, help="default: 1 5")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=None, help="default 150 / 100 at K = 1 / 5")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    add_quiet_load_option(parser)
    parser.add_argument("--max-config-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    for option in ("batch_size", "threads", "repeats"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be positive, got {value}")
    if args.warmup < 1:
        parser.error(
            f"--warmup must be at least 1 (the graph variant captures in it), got {args.warmup}"
        )
    if args.ks is not None and min(args.ks) < 1:
        parser.error(f"--ks must be positive, got {args.ks}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    ks = tuple(args.ks or DEFAULT_KS)
    batch_size = 4 if args.smoke else args.batch_size
    repeats = {
        k: args.repeats or (2 if args.smoke else DEFAULT_REPEATS.get(k, max(10, 500 // k)))
        for k in ks
    }
    generator = torch.Generator().manual_seed(args.seed)
    # Random binary images, about as dense as binarized MNIST: the step's cost does not depend
    # on the pixels' values.
    x = (torch.rand(batch_size, 1, 28, 28, generator=generator) < 0.13).float()
    env = environment("cpu")
    started = time.perf_counter()
    rows = []
    gc.collect()
    gc.freeze()  # long-lived objects out of the collector's way during the rounds
    try:
        for k in ks:
            for program in PROGRAMS:
                row = run_config(
                    program,
                    k,
                    x,
                    args.warmup,
                    repeats[k],
                    args.seed,
                    None if args.smoke else args.quiet_load,
                    args.max_config_seconds,
                )
                pyro.clear_param_store()
                rows.append(row)
                times = ", ".join(f"{v} {row['variants'][v]['ms_median']:.2f}" for v in VARIANTS)
                print(
                    f"[{time.perf_counter() - started:6.1f}s] {program:8s} K={k}: {times} ms",
                    flush=True,
                )
    finally:
        gc.unfreeze()
        torch.set_num_threads(threads)
    result = {
        "benchmark": "step_overhead",
        "environment": {**env, "torch_threads": args.threads},
        "settings": {
            "model": "784-200-200-50 tanh VAE, Bernoulli logits (iwae_mlp_vae's networks)",
            "objective": "ELBO of K reparameterized particles",
            "batch_size": batch_size,
            "data": "random Bernoulli(0.13) 28x28 images",
            "ks": list(ks),
            "repeats": {str(k): v for k, v in repeats.items()},
            "warmup": args.warmup,
            "seed": args.seed,
            "smoke": args.smoke,
            "quiet_load": None if args.smoke else args.quiet_load,
            "elapsed_s": round(time.perf_counter() - started, 1),
        },
        "rows": rows,
    }
    stem = "step_overhead_cpu" + ("_smoke" if args.smoke else "")
    report = render(result)
    out = write_results(args.out, stem, result, report).parent
    print(report)
    print(f"wrote {out / stem}.json and .md")
    return result


if __name__ == "__main__":
    main()
