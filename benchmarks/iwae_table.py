"""The IWAE table (Burda, Grosse & Salakhutdinov 2016, Table 1), reproduced and timed.

Trains Burda et al.'s models on dynamically binarized MNIST with every estimator of the table, by
the paper's protocol or a proportionally truncated version of it, and reports per row the test
NLL (IWAE with k = 5000 samples, per image, with its standard error over images), the final
training bound, the active units, epochs, optimizer steps, wall-clock, steps/s, hardware,
versions and seed; the paper's numbers beside them; and a figure of a cheaper test NLL estimate
against epochs and against training seconds.

Protocol (Burda et al. 2016, Sec. 5):

- data: MNIST's standard 60000 training / 10000 test images; grey levels p in [0, 1]; every
  minibatch is a fresh Bernoulli(p) draw of its images (``pyro_vi.data.DynamicBinarization``).
  The test set is binarized once with a fixed generator (seed 123, whatever ``--seed``): every row
  and every evaluation scores the same binary test images (the paper's code does the same);
- models: one stochastic layer, 784-200-200-50 tanh with a Bernoulli decoder
  (``pyro_vi.architectures.iwae_mlp_vae``), or two, 784-200-200-100(z1)-100-100-50(z2)
  (``pyro_vi.architectures.vae`` with the values of ``configs/iwae2_mnist.toml``). The decoder's
  output bias starts at the logit of the training set's mean image, as in the paper's code
  (``--output-bias default`` keeps the library's initialization);
- optimizer: one Adam (beta1 0.9, beta2 0.999, eps 1e-4), batch 20, learning rate
  1e-3 * 10^(-i/7) for 3^i epochs, i = 0..7: 3280 epochs, 9.84 million steps. The loss Adam sees
  is minus the bound summed over the minibatch (not scaled to the training set), as in the
  paper's code, so that eps 1e-4 is relative to the same gradient scale. The Adam moments persist
  across stages and across resumptions.

Budget (``--budget``): ``3280`` (the paper's full schedule, the default), another number of
epochs (``100`` or ``100e``), or training time (``90m``, ``2h``, ``600s``). A truncated schedule
(``--truncate proportional``, the default) keeps the paper's learning-rate curve as a function of
the fraction of training done: with S the budget's total steps (epochs x 3000), stage i covers
steps [round(S c_{i-1} / 3280), round(S c_i / 3280)) with c_i = 3^0 + ... + 3^i, so each stage
keeps its share 3^i / 3280 of the training (at 100 epochs: 0.03, 0.09, 0.27, 0.82, 2.5, 7.4,
22.2 and 66.7 epochs). The learning rate is set before every step, so stages may end inside an
epoch. A time budget does the same with training seconds in place of steps. ``--truncate
prefix`` instead runs the paper's schedule from its start and stops at the budget (100 epochs:
stages 0-3, then 60 epochs of stage 4); ``--truncate tail`` runs the paper's stages whole while
they fit and compresses the stages left into what remains, in the paper's proportions, so that
training still ends at the paper's last rate (328 epochs: stages 0-4 whole, 121 epochs, then
stages 5-7 in 16, 48 and 143 epochs). Both take an epoch budget only.

Rows (``--rows``): ``vae-k1``, and at k = 5 and 50: ``vae-kK`` (the ELBO averaged over K samples,
the paper's "VAE k"), ``iwae-kK``, ``dreg-kK``, ``stl-kK`` (the ELBO of K samples with the
sticking-the-landing guide gradient), ``miwae-kK``, ``ciwae-kK``, ``piwae-kK``, ``vrmax-kK``.
MIWAE and PIWAE use K = M x K' particles with M the largest divisor of K up to 5 (K = 50:
5 x 10; K = 5: 5 x 1, for which MIWAE is the same objective as ``vae-k5``); ``-mM`` picks M
(``miwae-k50-m10``). CIWAE uses beta = 0.5 (``--ciwae-beta``). Every row of an architecture
starts from the same initial weights (``--seed``).

Measurements:

- ``test_nll``: minus ``pyro_vi.evaluation.log_likelihood`` with ``--eval-samples`` (5000)
  samples, averaged over the first ``--eval-limit`` test images (all 10000 by default), with its
  standard error over images (sd / sqrt(n): the test set's sampling error, not Monte Carlo error);
- the curve (figure): the same estimate with ``--curve-samples`` (100) samples on the first
  ``--curve-limit`` (1000) test images, at ``--curve-points`` (10) evenly spaced epochs plus
  1, 2, 5, 10, 20, 50, ...; it is above the k = 5000 number (a looser bound on fewer images);
- ``train_bound``: the row's own training objective (ELBO, IWAE_K, ...), nats per image,
  averaged over the last epoch's minibatches as training saw them;
- ``active_units``: Burda et al.'s Cov_x E_q[z_u] > 0.01 on the evaluated test images
  (``pyro_vi.evaluation.active_units``), per stochastic layer;
- ``train_seconds``: the training steps' wall-clock (``fit``'s epoch timers: includes the
  capture/compilation of the step at the start of every chunk, excludes evaluations);
  ``steps_per_second`` = steps / train_seconds; ``wall_seconds``: everything but the final
  evaluation; ``other_cpu_load``: the share of the machine's CPU time other processes used.

Resuming: each row lives in ``--out``/<arch>-<row>/. Training runs in chunks (the curve points,
and at most ``--checkpoint-every`` epochs); after each, ``checkpoint.pt`` (model, guide and Adam
state dicts, step counter, the row's record; written atomically, read with ``weights_only=True``)
and ``state.json`` are saved. Every chunk is seeded from (seed, chunk index), so a killed row
rerun with the same command resumes from its last chunk and ends where an uninterrupted run ends.
The final evaluation is saved per slice of 1000 images. Completed rows are kept; the results are
rewritten after every chunk.

Run from the repository root:

    python benchmarks/iwae_table.py --data-dir ../shared/data --budget 100 \\
        --rows vae-k1,iwae-k5,dreg-k5 --threads 1              # the committed CPU table
    python benchmarks/iwae_table.py --data-dir ~/data --device cuda --budget 328 \\
        --arch both --rows all                                  # GPU rows
    python benchmarks/iwae_table.py --status                    # rows so far, no training
    python benchmarks/iwae_table.py --render                    # md + png from the JSON
    python benchmarks/iwae_table.py --smoke --random-data --out /tmp/iwae   # seconds

Writes ``<results>.json``, ``.md`` and ``.png`` (default ``benchmarks/results/iwae_table_<device>``;
``--smoke`` writes into ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro import poutine

from pyro_vi import estimators
from pyro_vi.architectures import iwae_mlp_vae, vae
from pyro_vi.data import DynamicBinarization, load
from pyro_vi.devices import environment, resolve_device
from pyro_vi.evaluation import active_units, log_likelihood
from pyro_vi.nets import MLPNetwork
from pyro_vi.train import TrainingDivergedError, fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import OtherLoad  # the sibling file: benchmarks/ is not a package

ROOT = Path(__file__).resolve().parent.parent
PAPER_EPOCHS = 3280  # sum of 3^i, i = 0..7
NUM_STAGES = 8
TEST_BINARIZATION_SEED = 123  # the seed of the paper code's evaluation generator
SLICE = 1000  # test images per saved piece of the final evaluation

#: Burda et al. (2016), Table 1, dynamically binarized MNIST, test NLL (k = 5000).
PAPER = {
    ("one", "vae-k1"): 86.76,
    ("one", "iwae-k5"): 85.54,
    ("one", "iwae-k50"): 84.78,
    ("two", "vae-k1"): 85.33,
    ("two", "iwae-k50"): 82.90,
}
#: Public reproductions of the one-layer model at k = 50 (as cited in issue 14).
REPRODUCTIONS = {("one", "iwae-k50"): 84.59, ("one", "dreg-k50"): 84.32}

KINDS = ("vae", "iwae", "dreg", "stl", "miwae", "ciwae", "piwae", "vrmax")
DEFAULT_ROWS = ["vae-k1"] + [f"{kind}-k{k}" for k in (5, 50) for kind in KINDS]
OBJECTIVES = {
    "vae": "ELBO, mean of K samples",
    "iwae": "IWAE_K",
    "dreg": "IWAE_K, DReG guide gradient",
    "stl": "ELBO of K samples, STL guide gradient",
    "miwae": "MIWAE (M x K')",
    "ciwae": "CIWAE (beta ELBO + (1 - beta) IWAE)",
    "piwae": "PIWAE: model IWAE_K, guide MIWAE (M x K')",
    "vrmax": "VR-max (max log-weight)",
}


def log(message: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# -- rows -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the table: an estimator at K particles (``outer``: M of MIWAE/PIWAE)."""

    kind: str
    k: int
    outer: int | None = None

    @classmethod
    def parse(cls, text: str) -> Row:
        match = re.fullmatch(r"([a-z]+)-k(\d+)(?:-m(\d+))?", text.strip())
        if match is None or match.group(1) not in KINDS:
            raise ValueError(
                f"--rows: cannot read {text!r}; a row is <estimator>-k<K> (estimators: "
                f"{', '.join(KINDS)}), e.g. iwae-k5, or miwae-k50-m10"
            )
        kind, k = match.group(1), int(match.group(2))
        outer = None if match.group(3) is None else int(match.group(3))
        if k < 1:
            raise ValueError(f"--rows: {text!r} has K = {k}; K must be at least 1")
        if outer is not None and (kind not in ("miwae", "piwae") or k % outer):
            raise ValueError(f"--rows: {text!r}: -mM is for miwae/piwae, with M dividing K = {k}")
        if kind in ("miwae", "piwae") and outer is None:
            outer = max(m for m in range(1, min(k, 5) + 1) if k % m == 0)
        return cls(kind, k, outer)

    @property
    def name(self) -> str:
        default = max(m for m in range(1, min(self.k, 5) + 1) if self.k % m == 0)
        suffix = f"-m{self.outer}" if self.outer not in (None, default) else ""
        return f"{self.kind}-k{self.k}{suffix}"

    def describe(self, ciwae_beta: float) -> str:
        text = OBJECTIVES[self.kind]
        if self.outer is not None:
            text = text.replace("M x K'", f"{self.outer} x {self.k // self.outer}")
        if self.kind == "ciwae":
            text = text.replace("beta ELBO", f"{ciwae_beta} ELBO").replace(
                "(1 - beta)", f"{1 - ciwae_beta:g}"
            )
        return text

    def estimator(self, ciwae_beta: float) -> estimators.Estimator:
        if self.kind == "vae":
            return estimators.get("elbo", num_particles=self.k)
        if self.kind in ("miwae", "piwae"):
            return estimators.get(self.kind, num_outer=self.outer, num_inner=self.k // self.outer)
        if self.kind == "ciwae":
            return estimators.get("ciwae", beta=ciwae_beta, num_particles=self.k)
        return estimators.get(self.kind, num_particles=self.k)


def parse_rows(text: str) -> list[Row]:
    names = DEFAULT_ROWS if text.strip() == "all" else text.split(",")
    rows = [Row.parse(name) for name in names if name.strip()]
    if not rows:
        raise ValueError(f"--rows: no row in {text!r}")
    return list(dict.fromkeys(rows))


def row_order(arch: str, name: str) -> tuple:
    row = Row.parse(name)
    return (0 if arch == "one" else 1, row.k != 1, row.k, KINDS.index(row.kind), row.outer or 0)


# -- budget and schedule --------------------------------------------------------------------------


def parse_budget(text: str) -> dict[str, float]:
    """``{"epochs": B}`` or ``{"seconds": T}``, from e.g. ``100``, ``100e``, ``90m``, ``2h``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(e|epochs?|s|m|min|h)?\s*", text)
    if match is None:
        raise ValueError(
            f"--budget must be epochs (100, 100e) or time (600s, 90m, 2h), got {text!r}"
        )
    value, unit = float(match.group(1)), match.group(2) or "e"
    if unit.startswith("e"):
        if value != int(value) or value < 1:
            raise ValueError(f"--budget in epochs must be a whole number >= 1, got {text!r}")
        return {"epochs": int(value)}
    seconds = value * {"s": 1, "m": 60, "min": 60, "h": 3600}[unit]
    if seconds <= 0:
        raise ValueError(f"--budget must be positive, got {text!r}")
    return {"seconds": seconds}


class Schedule:
    """The paper's stagewise learning rate, over steps (epoch budgets) or seconds (time budgets).

    ``ends[i]`` is where stage i ends: a step count, or training seconds. ``lr(progress)`` is the
    learning rate of the stage that ``progress`` (the step index, or seconds) lies in.
    """

    def __init__(
        self, budget: dict[str, float], steps_per_epoch: int, lr: float, truncate: str
    ) -> None:
        self.lrs = [lr * 10 ** (-i / 7) for i in range(NUM_STAGES)]
        cumulative = [sum(3**j for j in range(i + 1)) for i in range(NUM_STAGES)]
        self.unit = "steps" if "epochs" in budget else "seconds"
        if self.unit == "steps":
            total = int(budget["epochs"]) * steps_per_epoch
            if truncate == "prefix":
                self.ends = [min(total, c * steps_per_epoch) for c in cumulative]
            elif truncate == "tail":
                # Whole stages while they fit, then the stages left share what remains in the
                # paper's proportions, so that training still ends at the paper's last rate.
                whole = max(
                    (i for i, c in enumerate(cumulative) if c * steps_per_epoch <= total),
                    default=-1,
                )
                start = cumulative[whole] * steps_per_epoch if whole >= 0 else 0
                done = cumulative[whole] if whole >= 0 else 0
                rest = cumulative[-1] - done
                self.ends = [
                    c * steps_per_epoch
                    if i <= whole
                    else start + round((total - start) * (c - done) / rest)
                    for i, c in enumerate(cumulative)
                ]
            else:
                self.ends = [round(total * c / PAPER_EPOCHS) for c in cumulative]
        else:
            if truncate in ("prefix", "tail"):
                raise ValueError(f"--truncate {truncate} needs a budget in epochs, not in time")
            total = budget["seconds"]
            self.ends = [total * c / PAPER_EPOCHS for c in cumulative]
        self.total = total

    def lr(self, progress: float) -> float:
        for rate, end in zip(self.lrs, self.ends, strict=True):
            if progress < end:
                return rate
        return self.lrs[-1]

    def stages(self, steps_per_epoch: int) -> list[dict[str, Any]]:
        out, start = [], 0
        for i, (rate, end) in enumerate(zip(self.lrs, self.ends, strict=True)):
            stage = {"stage": i, "lr": rate, f"start_{self.unit}": start, f"end_{self.unit}": end}
            if self.unit == "steps":
                stage["epochs"] = round((end - start) / steps_per_epoch, 3)
            stage["paper_epochs"] = 3**i
            out.append(stage)
            start = end
        return out


def curve_epochs(budget_epochs: int, points: int) -> list[int]:
    even = {round(budget_epochs * j / points) for j in range(1, points + 1)}
    early = {e for e in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000) if e < budget_epochs}
    return sorted(e for e in even | early if e >= 1)


def chunk_plan(budget: dict, points: int, checkpoint_every: int) -> list[dict[str, Any]]:
    """The chunks a row trains in: ``{"end": epochs or seconds, "curve": evaluate after it}``."""
    if "epochs" in budget:
        epochs = int(budget["epochs"])
        evaluated = set(curve_epochs(epochs, points))
        ends = evaluated | set(range(checkpoint_every, epochs, checkpoint_every)) | {epochs}
        return [{"end": e, "curve": e in evaluated} for e in sorted(ends)]
    return [{"end": budget["seconds"] * j / points, "curve": True} for j in range(1, points + 1)]


# -- data and models ------------------------------------------------------------------------------


@dataclass
class Data:
    train: DynamicBinarization
    test: torch.Tensor  # binarized once, fixed
    train_mean: torch.Tensor
    source: str


def load_data(args: argparse.Namespace, device: torch.device) -> Data:
    if args.random_data:
        generator = torch.Generator().manual_seed(0)
        train = torch.rand(args.limit or 600, 1, 28, 28, generator=generator) ** 3
        test = torch.rand(args.test_limit or 200, 1, 28, 28, generator=generator) ** 3
        source = "random grey levels (a smoke test, not MNIST)"
    else:
        mnist = load("mnist", args.data_dir)
        train, test = mnist.train, mnist.test
        train = train.probs if isinstance(train, DynamicBinarization) else train
        test = test.probs if isinstance(test, DynamicBinarization) else test
        if args.limit:
            train = train[: args.limit]
        if args.test_limit:
            test = test[: args.test_limit]
        source = f"MNIST from {args.data_dir}/mnist (grey levels / 255)"
    generator = torch.Generator().manual_seed(TEST_BINARIZATION_SEED)
    test = torch.bernoulli(test, generator=generator)
    return Data(
        DynamicBinarization(train.contiguous()).to(device),
        test.to(device),
        train.mean(0),
        source,
    )


def current_guide_keys(saved: dict[str, Any], guide: Any) -> dict[str, Any]:
    """A row checkpoint's guide weights under the guide's present parameter names.

    Rows trained before ``iwae_mlp_vae`` built an ``AmortizedGuide`` saved the one-site
    ``AmortizedDiagonalNormal``, whose heads sat under ``family.``; the same heads now sit under
    ``families.<site>.``. Renaming keeps such a row resumable instead of retraining it.
    """
    current = guide.state_dict()
    if set(saved) <= set(current):
        return saved
    site = getattr(guide, "site", "z")
    renamed = {
        (f"families.{site}." + key[len("family.") :] if key.startswith("family.") else key): value
        for key, value in saved.items()
    }
    return renamed if set(renamed) <= set(current) else saved


def build(arch: str) -> tuple[torch.nn.Module, torch.nn.Module, list[str]]:
    """(model, guide, latent sites) of Burda et al.'s one- or two-layer architecture."""
    if arch == "one":
        model, guide = iwae_mlp_vae()
        return model, guide, ["z"]
    net = MLPNetwork((200, 200), "tanh")  # the values of configs/iwae2_mnist.toml
    model, guide = vae(
        (1, 28, 28), [100, 50], encoder=net, decoder=net, stochastic_hidden=(100, 100)
    )
    return model, guide, ["z1", "z2"]


def set_output_bias(model: torch.nn.Module, train_mean: torch.Tensor) -> None:
    """The decoder's last layer's bias = logit of the mean training image (the paper's code)."""
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    layer = [m for m in last if m.out_features == train_mean.numel()]
    if not layer:
        raise RuntimeError("no decoder layer with one output per pixel was found")
    with torch.no_grad():
        layer[-1].bias.copy_(torch.logit(train_mean.flatten().clamp(0.001, 0.999)))


def without_num_data(fn: Callable) -> Callable:
    """``fn`` without its ``num_data`` keyword, so that ``fit`` leaves the minibatch unscaled: the
    loss is minus the bound summed over the 20 images, as in the paper's code."""

    def call(x: torch.Tensor) -> Any:
        return fn(x)

    call.__name__ = getattr(fn, "__name__", type(fn).__name__)
    return call


class RowOptimizer:
    """``optim`` for :func:`fit`: the one torch Adam of a row, made on the first call and returned
    again on every later call, so its moments persist across ``fit`` calls (chunks and stages).
    Its learning rate follows the schedule, set before every step from the global step count
    (or the training clock for a time budget).
    """

    def __init__(self, schedule: Schedule, betas: tuple, eps: float, steps: int = 0) -> None:
        self.schedule, self.betas, self.eps = schedule, betas, eps
        self.steps = steps
        self.optimizer: torch.optim.Optimizer | None = None
        self.pending: dict | None = None  # a state dict to load when the optimizer is made
        self.clock: Callable[[], float] = lambda: 0.0
        self.param_ids: list[int] = []

    def progress(self) -> float:
        return self.steps if self.schedule.unit == "steps" else self.clock()

    def __call__(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        if self.optimizer is not None:
            if [id(p) for p in params] != self.param_ids:
                raise RuntimeError(
                    "fit found other parameters than the row's optimizer holds; the Adam state "
                    "cannot carry over"
                )
            return self.optimizer
        fused = {p.device.type for p in params} <= {"cpu", "cuda"}
        optimizer = torch.optim.Adam(
            params,
            lr=self.schedule.lr(self.progress()),
            betas=self.betas,
            eps=self.eps,
            fused=fused,
        )
        if self.pending is not None:
            optimizer.load_state_dict(self.pending)
            self.pending = None
        step = optimizer.step

        def scheduled_step(*args: Any, **kwargs: Any) -> Any:
            rate = self.schedule.lr(self.progress())
            for group in optimizer.param_groups:
                group["lr"] = rate
            self.steps += 1
            return step(*args, **kwargs)

        # An instance attribute: the optimizer stays a torch Adam, so fit's non-finite guard
        # still skips bad steps on the device (fused Adam's found_inf).
        optimizer.step = scheduled_step
        self.optimizer, self.param_ids = optimizer, [id(p) for p in params]
        return optimizer


# -- one row --------------------------------------------------------------------------------------


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=1) + "\n"))


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Evaluations draw from their own seed and leave the training's generators alone."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def comparable(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The settings that must match to resume a row: the data's kind, not the folder it was read
    from (a row may resume on a machine that keeps MNIST elsewhere)."""
    return {**fingerprint, "data": fingerprint["data"].split()[0]}


def chunk_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index * 7919 + 17) % (2**31)


class RowRun:
    """Trains, checkpoints, resumes and evaluates one row in its folder."""

    def __init__(
        self,
        arch: str,
        row: Row,
        args: argparse.Namespace,
        data: Data,
        device: torch.device,
        table: Table,
    ) -> None:
        self.arch, self.row, self.args, self.data, self.device = arch, row, args, data, device
        self.table = table
        self.folder = Path(args.out) / f"{arch}-{row.name}"
        self.budget = parse_budget(args.budget)
        self.steps_per_epoch = math.ceil(len(data.train) / args.batch_size)
        self.schedule = Schedule(self.budget, self.steps_per_epoch, args.lr, args.truncate)
        self.plan = chunk_plan(self.budget, args.curve_points, args.checkpoint_every)
        self.fingerprint = {
            "arch": arch,
            "row": row.name,
            "budget": self.budget,
            "truncate": args.truncate,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "betas": [0.9, 0.999],
            "eps": 1e-4,
            "seed": args.seed,
            "train_images": len(data.train),
            "data": data.source,
            "output_bias": args.output_bias,
            "ciwae_beta": args.ciwae_beta,
            "curve": [args.curve_samples, min(args.curve_limit, len(data.test))],
            "curve_points": args.curve_points,
            "checkpoint_every": args.checkpoint_every,
        }

    # state -------------------------------------------------------------------------------------

    def fresh_state(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "row": self.row.name,
            "k": self.row.k,
            "objective": self.row.describe(self.args.ciwae_beta),
            "fingerprint": self.fingerprint,
            "status": "running",
            "chunks_done": 0,
            "epochs": 0.0,
            "steps": 0,
            "train_seconds": 0.0,
            "wall_seconds": 0.0,
            "schedule": {
                "unit": self.schedule.unit,
                "stages": self.schedule.stages(self.steps_per_epoch),
            },
            "epoch_log": [],
            "curve": [],
            "chunks": [],
            "resumptions": 0,
            "final": None,
            "error": None,
        }

    def load_state(self) -> tuple[dict[str, Any], dict | None]:
        checkpoint_path, state_path = self.folder / "checkpoint.pt", self.folder / "state.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else None
        checkpoint = None
        if checkpoint_path.exists():
            checkpoint = torch.load(checkpoint_path, map_location=self.device, weights_only=True)
            saved = json.loads(checkpoint["state"])
            # state.json is written after the checkpoint and also after the final evaluation:
            # it is the newer record unless a kill fell between the two writes.
            if state is None or state["chunks_done"] < saved["chunks_done"]:
                state = saved
        if state is None:
            return self.fresh_state(), None
        if state["chunks_done"] and checkpoint is None:
            raise SystemExit(
                f"{self.folder}: state.json records trained chunks, but "
                "checkpoint.pt is missing; rerun with --restart"
            )
        saved_fp, asked_fp = comparable(state["fingerprint"]), comparable(self.fingerprint)
        if saved_fp != asked_fp:
            changed = sorted(
                key
                for key in set(saved_fp) | set(asked_fp)
                if saved_fp.get(key) != asked_fp.get(key)
            )
            raise SystemExit(
                f"{self.folder} was trained with other settings ({', '.join(changed)}: "
                f"{[state['fingerprint'].get(k) for k in changed]} there, "
                f"{[self.fingerprint.get(k) for k in changed]} now); use another --out, or "
                "--restart to train this row again"
            )
        return state, checkpoint

    def save(
        self,
        state: dict,
        model: Any = None,
        guide: Any = None,
        optimizer: RowOptimizer | None = None,
    ) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if model is not None:
            payload = {
                "model": model.state_dict(),
                "guide": guide.state_dict(),
                "optimizer": optimizer.optimizer.state_dict(),
                "steps": optimizer.steps,
                "state": json.dumps(state),
            }
            atomic_write(self.folder / "checkpoint.pt", lambda p: torch.save(payload, p))
        write_json(self.folder / "state.json", state)

    # training ----------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        if self.args.restart and self.folder.exists():
            for name in ("checkpoint.pt", "state.json", "evaluation.pt"):
                (self.folder / name).unlink(missing_ok=True)
        state, checkpoint = self.load_state()
        if state["status"] == "diverged":
            log(f"{self.label}: diverged before ({state['error']}); --restart to try again")
            return state
        done_training = state["status"] in ("trained", "done")
        final_ok = state["final"] is not None and state["final"]["settings"] == self.eval_settings()
        if done_training and final_ok:
            log(f"{self.label}: done (test NLL {state['final']['test_nll']:.2f}), kept")
            return state

        pyro.clear_param_store()
        pyro.set_rng_seed(self.args.seed)  # the same initial weights for every row
        model, guide, sites = build(self.arch)
        if self.args.output_bias == "mean":
            set_output_bias(model, self.data.train_mean)
        model.to(self.device)
        guide.to(self.device)
        with torch.no_grad(), seeded(0):  # lazily built parts exist before a checkpoint loads
            poutine.trace(guide).get_trace(self.data.test[:2])
        optimizer = RowOptimizer(self.schedule, (0.9, 0.999), 1e-4)
        # Where each (re)start of the row ran: a resumed row may have moved machines.
        session = {**environment(self.device), "compile": self.args.compile, "git": git_commit()}
        session["torch_threads"] = self.args.threads or session["torch_threads"]
        state.setdefault("sessions", []).append(session)
        if checkpoint is not None:
            model.load_state_dict(checkpoint["model"])
            guide.load_state_dict(current_guide_keys(checkpoint["guide"], guide))
            optimizer.pending, optimizer.steps = checkpoint["optimizer"], checkpoint["steps"]
            if not done_training:
                state["resumptions"] += 1
                log(
                    f"{self.label}: resuming after chunk {state['chunks_done']} "
                    f"(epoch {state['epochs']:.2f}, step {state['steps']})"
                )
        if not done_training and not self.train(state, model, guide, optimizer):
            return state
        state["final"] = self.evaluate(state, model, guide, sites)
        state["status"] = "done"
        self.save(state)
        return state

    @property
    def label(self) -> str:
        return f"[{self.arch} {self.row.name}]"

    def train(self, state: dict, model: Any, guide: Any, optimizer: RowOptimizer) -> bool:
        """Train the remaining chunks; False when stopped early (--max-chunks or divergence)."""
        args = self.args
        loss = self.row.estimator(args.ciwae_beta)
        model_fn, guide_fn = without_num_data(model), without_num_data(guide)
        by_time = "seconds" in self.budget
        for index in range(state["chunks_done"], len(self.plan)):
            if args.max_chunks is not None and self.table.chunks_run >= args.max_chunks:
                log(f"{self.label}: stopping after {self.table.chunks_run} chunk(s) (--max-chunks)")
                self.table.stopped = True
                return False
            chunk = self.plan[index]
            started, load = time.perf_counter(), OtherLoad()
            seconds_before = state["train_seconds"]
            optimizer.clock = lambda s=seconds_before, t=started: s + (time.perf_counter() - t)
            if by_time:
                epochs, max_seconds = 10**9, max(chunk["end"] - seconds_before, 1e-3)
            else:
                epochs, max_seconds = chunk["end"] - round(state["epochs"]), None
                if epochs < 1:  # nothing left in this chunk (a budget that shrank the plan)
                    state["chunks_done"] = index + 1
                    continue
            first_epoch = state["epochs"]

            def report(epoch: int, history: Any, first: float = first_epoch) -> None:
                self.epoch_line(state, optimizer, first, epoch, history)

            report.changes_program = False  # it logs: no trace of the captured step to check it
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*TF32.*")
                try:
                    history = fit(
                        model_fn,
                        guide_fn,
                        self.data.train,
                        loss=loss,
                        optim=optimizer,
                        epochs=epochs,
                        batch_size=args.batch_size,
                        device=self.device,
                        seed=chunk_seed(args.seed, index),
                        progress=False,
                        callback=report,
                        max_seconds=max_seconds,
                        compile=args.compile_mode,
                        threads=args.threads,
                    )
                except TrainingDivergedError as error:
                    state["status"], state["error"] = "diverged", str(error)
                    self.save(state)
                    log(f"{self.label}: diverged: {error}")
                    return False
            if history.interrupted:
                raise KeyboardInterrupt
            steps_before = state["steps"]
            state["steps"] = optimizer.steps
            if by_time:
                state["epochs"] = round(optimizer.steps / self.steps_per_epoch, 6)
            else:  # whole epochs (a step skipped as non-finite is still a step of the epoch)
                state["epochs"] = round(state["epochs"]) + len(history.train_loss)
            state["train_seconds"] += sum(history.seconds)
            for epoch, (value, seconds) in enumerate(
                zip(history.train_loss, history.seconds, strict=True)
            ):
                state["epoch_log"].append(
                    {
                        "epoch": round(first_epoch + epoch + 1, 6) if not by_time else None,
                        "train_bound": -value,
                        "seconds": round(seconds, 3),
                        "lr": history.learning_rate[epoch] if history.learning_rate else None,
                    }
                )
            if by_time:
                state["epoch_log"][-1]["epoch"] = state["epochs"]
            record = {
                "index": index,
                "end_epoch": state["epochs"],
                "steps": optimizer.steps - steps_before,
                "seconds": round(sum(history.seconds), 3),
                "device": str(self.device),
                "threads": torch.get_num_threads() if args.threads is None else args.threads,
                "compile": args.compile_mode or "none",
                "other_cpu_load": load.share(),
                "seed": chunk_seed(args.seed, index),
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            if chunk["curve"]:
                began = time.perf_counter()
                nll = self.curve_nll(model, guide)
                state["curve"].append(
                    {
                        "epoch": state["epochs"],
                        "step": state["steps"],
                        "train_seconds": round(state["train_seconds"], 3),
                        "test_nll": nll,
                        "lr": optimizer.optimizer.param_groups[0]["lr"],
                    }
                )
                record["curve_seconds"] = round(time.perf_counter() - began, 3)
                self.table.curve_rate = (time.perf_counter() - began) / (
                    args.curve_samples * min(args.curve_limit, len(self.data.test))
                )
            state["chunks"].append(record)
            state["chunks_done"] = index + 1
            state["wall_seconds"] += time.perf_counter() - started
            if index + 1 == len(self.plan):
                state["status"] = "trained"
            self.save(state, model, guide, optimizer)
            self.table.chunks_run += 1
            if chunk["curve"]:
                log(
                    f"{self.label} epoch {state['epochs']:g}: curve test NLL "
                    f"(IWAE-{args.curve_samples}, {min(args.curve_limit, len(self.data.test))} "
                    f"images) {state['curve'][-1]['test_nll']:.2f}"
                )
            self.table.write()
        return True

    def epoch_line(
        self, state: dict, optimizer: RowOptimizer, first_epoch: float, epoch: int, history: Any
    ) -> None:
        steps, seconds = optimizer.steps, state["train_seconds"] + sum(history.seconds)
        rate = self.steps_per_epoch / history.seconds[-1]  # this epoch's steps/s
        self.table.rate[(self.arch, self.row.name)] = rate
        if self.schedule.unit == "steps":
            left = (self.schedule.total - steps) / rate
            where = f"epoch {first_epoch + epoch + 1:g}/{self.budget['epochs']}"
        else:
            left = self.budget["seconds"] - seconds
            where = f"epoch {steps / self.steps_per_epoch:.2f}"
        left += self.eval_estimate()
        lr = optimizer.optimizer.param_groups[0]["lr"]
        log(
            f"{self.label} {where}, step {steps}, lr {lr:.2e}, "
            f"train bound {-history.train_loss[-1]:.2f}, {rate:.0f} steps/s; row left ~"
            f"{duration(left)}, table left ~{duration(left + self.table.left_after(self))}"
        )

    # evaluation --------------------------------------------------------------------------------

    def eval_settings(self) -> dict[str, Any]:
        return {
            "samples": self.args.eval_samples,
            "images": min(self.args.eval_limit or len(self.data.test), len(self.data.test)),
            "test_binarization_seed": TEST_BINARIZATION_SEED,
        }

    def eval_estimate(self) -> float:
        """Seconds of the final k = 5000 evaluation, from the curve evaluations' speed."""
        settings = self.eval_settings()
        rate = self.table.curve_rate or self.table.default_pair_seconds
        return rate * settings["samples"] * settings["images"]

    def curve_nll(self, model: Any, guide: Any) -> float:
        images = self.data.test[: self.args.curve_limit]
        with seeded(1):
            values = log_likelihood(
                model,
                guide,
                images,
                num_samples=self.args.curve_samples,
                chunk_size=min(self.args.eval_chunk, self.args.curve_samples),
                batch_size=self.args.eval_batch,
            )
        return -float(values.double().mean())

    def evaluate(self, state: dict, model: Any, guide: Any, sites: list[str]) -> dict[str, Any]:
        settings = self.eval_settings()
        images = self.data.test[: settings["images"]]
        path = self.folder / "evaluation.pt"
        saved: dict[str, Any] = {}
        if path.exists():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if json.loads(saved.get("settings", "null")) != settings:
                saved = {}
        pieces = saved.get("pieces", {})
        slices = math.ceil(len(images) / SLICE)
        began = time.perf_counter()
        log(
            f"{self.label}: test NLL with k = {settings['samples']} on {len(images)} images, "
            f"~{duration(self.eval_estimate())}"
        )
        for j in range(slices):
            if str(j) in pieces:
                continue
            t0 = time.perf_counter()
            with seeded(1000 + j), warnings.catch_warnings():
                # Its "will take about N minutes" warning: this loop prints its own time left.
                warnings.filterwarnings("ignore", message="log_likelihood will take")
                values = log_likelihood(
                    model,
                    guide,
                    images[j * SLICE : (j + 1) * SLICE],
                    num_samples=settings["samples"],
                    chunk_size=self.args.eval_chunk,
                    batch_size=self.args.eval_batch,
                )
            pieces[str(j)] = values.double().cpu()
            payload = {"settings": json.dumps(settings), "pieces": pieces}
            atomic_write(path, lambda p, saved=payload: torch.save(saved, p))
            pair = (time.perf_counter() - t0) / (settings["samples"] * len(values))
            self.table.curve_rate = pair
            left = pair * settings["samples"] * (len(images) - sum(len(v) for v in pieces.values()))
            log(
                f"{self.label}: evaluated {min((j + 1) * SLICE, len(images))}/{len(images)} "
                f"images, {duration(time.perf_counter() - began)} so far, ~{duration(left)} left"
            )
        values = torch.cat([pieces[str(j)] for j in range(slices)])
        nll = -float(values.mean())
        stderr = (
            float(values.std(correction=1) / math.sqrt(len(values))) if len(values) > 1 else None
        )
        units = {}
        with seeded(2):
            for site in sites:
                count, variances = active_units(model, guide, images, site=site, batch_size=1000)
                units[site] = {"active": count, "of": variances.numel()}
        last = state["epoch_log"][-1] if state["epoch_log"] else {}
        steps, seconds = state["steps"], state["train_seconds"]
        final = {
            "settings": settings,
            "test_nll": nll,
            "test_nll_stderr": stderr,
            "train_bound": last.get("train_bound"),
            "active_units": units,
            "eval_seconds": round(time.perf_counter() - began, 1),
            "steps_per_second": steps / seconds if seconds else None,
        }
        counts = ", ".join(f"{site} {u['active']}/{u['of']}" for site, u in units.items())
        log(f"{self.label}: test NLL {nll:.2f} ± {stderr or 0:.2f}, active units {counts}")
        return final


# -- the table ------------------------------------------------------------------------------------


class Table:
    """The rows of one invocation, and the results files over every row in the run folder."""

    def __init__(self, args: argparse.Namespace, device: torch.device, jobs: list[tuple]) -> None:
        self.args, self.device, self.jobs = args, device, jobs
        self.chunks_run, self.stopped = 0, False
        self.rate: dict[tuple, float] = {}  # steps/s per (arch, row) measured in this run
        self.curve_rate: float | None = None  # seconds per (particle, image) of an evaluation
        self.default_pair_seconds = 0.5 / 20000 if device.type == "cpu" else 1e-8
        self.runs: list[RowRun] = []

    def left_after(self, current: RowRun) -> float:
        """Rough seconds for the rows after ``current``: their steps at the speed measured for
        the same K (else this row's speed scaled by K), plus their evaluations."""
        after = self.runs[self.runs.index(current) + 1 :]
        own = self.rate.get((current.arch, current.row.name), 1.0)
        total = 0.0
        for run in after:
            same_k = [r for (a, name), r in self.rate.items() if Row.parse(name).k == run.row.k]
            rate = same_k[0] if same_k else own * (1 + current.row.k / 4) / (1 + run.row.k / 4)
            if run.schedule.unit == "steps":
                total += run.schedule.total / rate
            else:
                total += run.schedule.total
            total += run.eval_estimate()
        return total

    def results(self) -> dict[str, Any]:
        out = Path(self.args.out)
        rows = []
        for path in sorted(out.glob("*/state.json")):
            state = json.loads(path.read_text())
            rows.append(state)
        rows.sort(key=lambda s: row_order(s["arch"], s["row"]))
        for state in rows:
            key = (state["arch"], state["row"])
            state["paper"] = PAPER.get(key)
            state["reproduction"] = REPRODUCTIONS.get(key)
        notes_path = out / "reading.md"
        return {
            "benchmark": "iwae_table",
            "description": "Burda et al. (2016) Table 1 protocol on dynamically binarized MNIST; "
            "test NLL in nats per image (lower is better)",
            "environment": environment(self.device),
            "git": git_commit(),
            "command": " ".join(["python", "benchmarks/iwae_table.py", *sys.argv[1:]]),
            "paper": {f"{a}/{r}": v for (a, r), v in PAPER.items()},
            "reproductions": {f"{a}/{r}": v for (a, r), v in REPRODUCTIONS.items()},
            "reading": notes_path.read_text() if notes_path.exists() else None,
            "rows": rows,
            "paired": paired_differences(out, rows),
        }

    def write(self) -> None:
        data = self.results()
        prefix = Path(self.args.results)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        write_json(prefix.with_suffix(".json"), data)
        render(data, prefix)


def git_commit() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        return {"commit": commit, "dirty_tree": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty_tree": None}


# -- rendering ------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def row_cells(state: dict) -> list[str]:
    final = state.get("final") or {}
    nll = final.get("test_nll")
    nll_text = f"{nll:.2f} ± {final['test_nll_stderr']:.2f}" if nll is not None else ""
    paper = state.get("paper") or state.get("reproduction")
    paper_text = ""
    if state.get("paper") is not None:
        paper_text = f"{state['paper']:.2f}"
    if state.get("reproduction") is not None:
        paper_text += f" (repr. {state['reproduction']:.2f})"
    delta = f"{nll - paper:+.2f}" if nll is not None and paper is not None else ""
    units = final.get("active_units") or {}
    budget = state["fingerprint"]["budget"]
    epochs_text = f"{state['epochs']:g}"
    if "epochs" in budget:
        epochs_text += f" / {budget['epochs']}"
    rate = state["steps"] / state["train_seconds"] if state["train_seconds"] else None
    curve = state["curve"][-1]["test_nll"] if state["curve"] else None
    status = state["status"]
    if status == "running":
        status = f"running ({state['chunks_done']} chunks)"
    return [
        state["arch"],
        f"`{state['row']}`",
        state["objective"],
        nll_text,
        paper_text,
        delta,
        fmt(curve),
        fmt(state["epoch_log"][-1]["train_bound"] if state["epoch_log"] else None),
        ", ".join(f"{u['active']}/{u['of']}" for u in units.values()),
        epochs_text,
        str(state["steps"]),
        duration(state["train_seconds"]),
        fmt(rate, 0),
        fmt(max((c.get("other_cpu_load") or 0 for c in state["chunks"]), default=None), 2),
        status,
    ]


def paired_differences(out: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Test-NLL differences between rows evaluated on the same images, with their paired
    standard error (the standard deviation of the per-image differences / sqrt(n)): far smaller
    than either row's own error, since the images' difficulty cancels. Each row of a k is
    compared with the IWAE row of that k, and the VAE at k=1 with every IWAE row. The error
    covers the test images and the estimate's own noise, not the training seed (one per row)."""
    values: dict[tuple[str, str], torch.Tensor] = {}
    settings: dict[tuple[str, str], str] = {}
    for state in rows:
        path = out / f"{state['arch']}-{state['row']}" / "evaluation.pt"
        if state.get("status") != "done" or not path.exists():
            continue
        saved = torch.load(path, map_location="cpu", weights_only=True)
        pieces = saved.get("pieces", {})
        key = (state["arch"], state["row"])
        values[key] = torch.cat([pieces[str(j)] for j in range(len(pieces))])
        settings[key] = saved.get("settings", "")
    pairs = []
    for (arch, name), _ in values.items():
        k = Row.parse(name).k
        references = (
            [f"iwae-k{k}"]
            if name != "vae-k1"
            else [n for (a, n) in values if a == arch and n.startswith("iwae-k")]
        )
        for reference in references:
            other = (arch, reference)
            if (
                reference == name
                or other not in values
                or settings[other] != settings[(arch, name)]
            ):
                continue
            a, b = -values[(arch, name)], -values[other]
            if a.shape != b.shape:
                continue
            diff = a - b
            pairs.append(
                {
                    "arch": arch,
                    "row": name,
                    "reference": reference,
                    "difference": float(diff.mean()),
                    "stderr": float(diff.std(correction=1) / math.sqrt(len(diff))),
                    "images": len(diff),
                }
            )
    return pairs


def render(data: dict[str, Any], prefix: Path) -> None:
    env = data["environment"]
    rows = data["rows"]
    lines = [
        f"# The IWAE table on {env['device_name']} ({env['device']})",
        "",
        "Burda, Grosse & Salakhutdinov (2016), Table 1: dynamically binarized MNIST (a fresh "
        "Bernoulli draw of each training image in every minibatch), test NLL in nats per image, "
        "lower is better. Written by `benchmarks/iwae_table.py` (see `benchmarks/README.md`).",
        "",
        f"- command: `{data['command']}`",
        f"- torch {env['torch']}, pyro {env['pyro']}, pyro_vi {env['pyro_vi']}, Python "
        f"{env['python']}, CUDA {env['cuda']}; {env['cpu_count']} CPUs; written {env['date']}; "
        f"git {(data['git'].get('commit') or '?')[:10]}"
        f"{' (uncommitted changes)' if data['git'].get('dirty_tree') else ''}",
    ]
    if rows:
        fp = rows[0]["fingerprint"]
        budget = fp["budget"]
        budget_text = (
            f"{budget['epochs']} epochs ({budget['epochs'] / PAPER_EPOCHS:.1%} of the "
            f"paper's {PAPER_EPOCHS})"
            if "epochs" in budget
            else f"{duration(budget['seconds'])} of training per row"
        )
        lines += [
            f"- budget: {budget_text}, schedule truncated `{fp['truncate']}`; batch "
            f"{fp['batch_size']}, Adam (0.9, 0.999, eps 1e-4), lr {fp['lr']:g} x 10^(-i/7); seed "
            f"{fp['seed']}; decoder output bias: {fp['output_bias']}; data: {fp['data']}, "
            f"{fp['train_images']} training images",
        ]
        final = next((r["final"] for r in rows if r.get("final")), None)
        if final:
            s = final["settings"]
            lines.append(
                f"- test NLL: IWAE with k = {s['samples']} on the first {s['images']} test images "
                f"(binarized once, seed {s['test_binarization_seed']}), ± one standard error over "
                "images; curve: IWAE with k = "
                f"{fp['curve'][0]} on the first {fp['curve'][1]} of them"
            )
        stages = rows[0]["schedule"]["stages"]
        unit = rows[0]["schedule"]["unit"]
        lines += [
            "",
            "Learning-rate stages of this budget (the paper: 3^i epochs each):",
            "",
            "| stage | lr | " + ("epochs |" if unit == "steps" else "seconds |"),
            "|---:|---:|---:|",
        ]
        for st in stages:
            amount = (
                st.get("epochs") if unit == "steps" else st["end_seconds"] - st["start_seconds"]
            )
            lines.append(f"| {st['stage']} | {st['lr']:.2e} | {fmt(amount, 2)} |")
    header = [
        "arch",
        "row",
        "objective",
        "test NLL (k=5000)",
        "paper",
        "Δ",
        "curve NLL",
        "train bound",
        "active units",
        "epochs",
        "steps",
        "train time",
        "steps/s",
        "max other load",
        "status",
    ]
    lines += [
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in rows]
    lines += [
        "",
        "paper: Burda et al. Table 1 (IWAE k=5000 test NLL after 3280 epochs); repr.: public "
        "reproductions cited in issue 14. Δ = this run - paper. curve NLL: the cheap estimate at "
        "the last curve point. train bound: the row's own objective, averaged over the last "
        "epoch's minibatches. train time: training steps only (with the step's compilation), "
        "evaluations excluded. max other load: the largest share of the machine's CPU time other "
        "processes took during a training chunk.",
    ]
    where = {}
    for r in rows:
        for session in r.get("sessions", []):
            text = (
                f"{session['device_name']} ({session['device']}), torch {session['torch']}, "
                f"{session['torch_threads']} thread(s), compile {session['compile']}"
            )
            where.setdefault(text, []).append(f"{r['arch']} `{r['row']}`")
    if where:
        lines += ["", "Where the rows ran (each start or resumption):", ""]
        lines += [f"- {text}: {', '.join(dict.fromkeys(names))}" for text, names in where.items()]
    if data.get("paired"):
        lines += [
            "",
            "Paired differences of test NLL (the same test images and k = 5000 estimates; "
            "negative: the row beats the reference). The paired standard error covers the images "
            "and the estimate's noise, not the training seed: each row is one training run.",
            "",
            "| arch | row | reference | NLL row - NLL reference | paired s.e. | images |",
            "|---|---|---|---:|---:|---:|",
        ]
        lines += [
            f"| {p['arch']} | `{p['row']}` | `{p['reference']}` | {p['difference']:+.3f} | "
            f"{p['stderr']:.3f} | {p['images']} |"
            for p in data["paired"]
        ]
    curves = [r for r in rows if r["curve"]]
    if curves:
        epochs = sorted({round(p["epoch"], 2) for r in curves for p in r["curve"]})
        lines += [
            "",
            "Curve (cheap test NLL) by epoch:",
            "",
            "| row | " + " | ".join(f"{e:g}" for e in epochs) + " |",
            "|---|" + "---:|" * len(epochs),
        ]
        for r in curves:
            by_epoch = {round(p["epoch"], 2): p["test_nll"] for p in r["curve"]}
            lines.append(
                f"| {r['arch']} `{r['row']}` | "
                + " | ".join(fmt(by_epoch.get(e)) for e in epochs)
                + " |"
            )
    if data.get("reading"):
        lines += ["", "## Reading", "", data["reading"].strip()]
    atomic_write(prefix.with_suffix(".md"), lambda p: p.write_text("\n".join(lines) + "\n"))
    if curves:
        plot(data, prefix.with_suffix(".png"))


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in data["rows"] if r["curve"]]
    archs = sorted({r["arch"] for r in rows}, key=lambda a: a != "one")
    fig, axes = plt.subplots(len(archs), 2, figsize=(12, 4.6 * len(archs)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for line, arch in enumerate(archs):
        chosen = [r for r in rows if r["arch"] == arch]
        for col, (key, label) in enumerate(
            [("epoch", "epochs"), ("train_seconds", "training time (minutes)")]
        ):
            ax = axes[line][col]
            scale = 60.0 if key == "train_seconds" else 1.0
            for i, r in enumerate(chosen):
                color = colors[i % len(colors)]
                xs = [p[key] / scale for p in r["curve"]]
                ys = [p["test_nll"] for p in r["curve"]]
                ax.plot(xs, ys, "o-", color=color, ms=3, label=r["row"])
                final = r.get("final")
                if final:
                    end = r["epochs"] if key == "epoch" else r["train_seconds"] / scale
                    ax.plot([end], [final["test_nll"]], "*", color=color, ms=12)
                for value, style, source in (
                    (r.get("paper"), "--", "paper"),
                    (r.get("reproduction"), ":", "repr."),
                ):
                    if value is not None:
                        ax.axhline(value, color=color, ls=style, lw=1)
                        ax.annotate(
                            f"{source} {r['row']} {value:.2f}",
                            (1.0, value),
                            xycoords=("axes fraction", "data"),
                            xytext=(-4, 2),
                            textcoords="offset points",
                            ha="right",
                            va="bottom",
                            fontsize=7,
                            color=color,
                        )
            if key == "epoch" and max(p["epoch"] for r in chosen for p in r["curve"]) > 20:
                ax.set_xscale("log")
            values = [p["test_nll"] for r in chosen for p in r["curve"]]
            values += [r["final"]["test_nll"] for r in chosen if r.get("final")]
            values += [v for r in chosen for v in (r.get("paper"), r.get("reproduction")) if v]
            low = min(values)
            ax.set_ylim(low - 1, min(max(values), low + 25) + 1)
            ax.set_xlabel(label)
            ax.set_ylabel("test NLL (nats)")
            ax.grid(alpha=0.3)
            ax.set_title(
                f"{'one' if arch == 'one' else 'two'} stochastic layer"
                f"{'s' if arch == 'two' else ''}: test NLL vs {label.split(' (')[0]}"
            )
            if col == 0:
                ax.legend(
                    fontsize=8,
                    title="line: IWAE-k curve; *: k=5000;\n--: paper, ..: repr.",
                    title_fontsize=7,
                )
    env = data["environment"]
    fig.suptitle(f"IWAE table on {env['device_name']} ({env['device']})", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def print_table(data: dict[str, Any]) -> None:
    header = [
        "arch",
        "row",
        "test NLL",
        "paper",
        "curve",
        "train bound",
        "AU",
        "epochs",
        "steps",
        "train time",
        "steps/s",
        "status",
    ]
    table = [header]
    for r in data["rows"]:
        cells = row_cells(r)
        table.append(
            [
                cells[0],
                cells[1].strip("`"),
                cells[3],
                cells[4],
                cells[6],
                cells[7],
                cells[8],
                cells[9],
                cells[10],
                cells[11],
                cells[12],
                cells[14],
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


# -- main -----------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Burda et al.'s IWAE table (dynamically binarized MNIST), reproduced and "
        "timed; resumable per row.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data-dir",
        default=os.environ.get("PYRO_VI_DATA", "../shared/data"),
        help="holds mnist/ (the four IDX files)",
    )
    p.add_argument(
        "--arch",
        choices=["one", "two", "both"],
        default="one",
        help="stochastic layers: one (784-200-200-50) or two (100-50)",
    )
    p.add_argument(
        "--rows",
        default=",".join(DEFAULT_ROWS),
        help="comma-separated rows such as vae-k1,iwae-k5,dreg-k50, or 'all'",
    )
    p.add_argument(
        "--budget",
        default=str(PAPER_EPOCHS),
        help="epochs per row (3280 = the paper; 100 or 100e) or time (90m, 2h, 600s)",
    )
    p.add_argument(
        "--truncate",
        choices=["proportional", "prefix", "tail"],
        default="proportional",
        help="how a shorter budget cuts the paper's schedule (module docstring)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: the library's load-aware choice)",
    )
    p.add_argument(
        "--compile",
        choices=["none", "graph", "inductor"],
        default="inductor",
        help="capture the training step (fit's compile=)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3, help="the first stage's learning rate")
    p.add_argument("--ciwae-beta", type=float, default=0.5)
    p.add_argument(
        "--output-bias",
        choices=["mean", "default"],
        default="mean",
        help="decoder output bias at the start: logit of the mean training image "
        "(the paper's code) or the library's initialization",
    )
    p.add_argument("--eval-samples", type=int, default=5000, help="k of the final test NLL")
    p.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        help="evaluate on the first N test images (default all)",
    )
    p.add_argument(
        "--eval-chunk",
        type=int,
        default=None,
        help="particles per evaluation pass (default 200 on CPU, 1000 on CUDA)",
    )
    p.add_argument(
        "--eval-batch",
        type=int,
        default=None,
        help="images per evaluation pass (default: bounded memory on CPU, 500 on CUDA)",
    )
    p.add_argument("--curve-samples", type=int, default=100)
    p.add_argument("--curve-limit", type=int, default=1000)
    p.add_argument("--curve-points", type=int, default=10)
    p.add_argument("--checkpoint-every", type=int, default=10, help="epochs")
    p.add_argument("--limit", type=int, default=None, help="first N training images (tests)")
    p.add_argument("--test-limit", type=int, default=None, help="first N test images (tests)")
    p.add_argument("--random-data", action="store_true", help="random grey levels, no MNIST")
    p.add_argument(
        "--out", default=None, help="run folder (default runs/iwae_table/<device>; git-ignored)"
    )
    p.add_argument(
        "--results",
        default=None,
        help="results path prefix (default benchmarks/results/iwae_table_<device>)",
    )
    p.add_argument(
        "--reading",
        default=None,
        help="a markdown file: the written reading of the results, kept in the run "
        "folder and shown in the .md",
    )
    p.add_argument("--restart", action="store_true", help="train the chosen rows from scratch")
    p.add_argument(
        "--max-chunks",
        type=int,
        default=None,
        help="stop after N training chunks (tests of resumption)",
    )
    p.add_argument("--status", action="store_true", help="print the rows so far; train nothing")
    p.add_argument(
        "--render",
        action="store_true",
        help="rewrite the .md and .png from the results JSON; train nothing",
    )
    p.add_argument(
        "--rewrite",
        action="store_true",
        help="rewrite the results JSON, .md and .png from the run folder --out (its rows, "
        "evaluations and reading.md) on this machine; train nothing",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: 300 images, 2 epochs, small evaluations (a test)",
    )
    return p


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    device = resolve_device(args.device)
    kind = device.type
    if args.smoke:
        args.limit = args.limit or 300
        args.test_limit = args.test_limit or 100
        args.budget = args.budget if args.budget != str(PAPER_EPOCHS) else "2"
        args.eval_samples, args.curve_samples, args.curve_points = 20, 5, 2
        args.checkpoint_every = 1
        if args.rows == ",".join(DEFAULT_ROWS):
            args.rows = "vae-k1,iwae-k5"
        args.compile = "none" if args.compile == "inductor" else args.compile
    args.out = args.out or str(ROOT / "runs" / "iwae_table" / kind)
    if args.results is None:
        args.results = (
            str(Path(args.out) / f"iwae_table_{kind}_smoke")
            if args.smoke
            else str(ROOT / "benchmarks" / "results" / f"iwae_table_{kind}")
        )
    args.eval_chunk = args.eval_chunk or (200 if kind == "cpu" else 1000)
    args.eval_batch = args.eval_batch or ("auto" if kind == "cpu" else 500)
    args.compile_mode = False if args.compile == "none" else args.compile
    for name in (
        "eval_samples",
        "curve_samples",
        "curve_limit",
        "curve_points",
        "batch_size",
        "checkpoint_every",
    ):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = resolve_args(parser().parse_args(argv))
    device = resolve_device(args.device)
    prefix = Path(args.results)
    if args.render:
        data = json.loads(prefix.with_suffix(".json").read_text())
        render(data, prefix)
        print_table(data)
        return 0
    if args.rewrite:
        # The results files again from the run folder (rows, evaluations, reading), on this
        # machine, without training: e.g. after the code that renders them changed.
        data = Table(args, torch.device(args.device), []).results()
        path = prefix.with_suffix(".json")
        if path.exists():  # the command that trained the rows, not this one
            data["command"] = json.loads(path.read_text()).get("command", data["command"])
        prefix.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, data)
        render(data, prefix)
        print_table(data)
        return 0
    try:
        budget = parse_budget(args.budget)
        rows = parse_rows(args.rows)
        Schedule(budget, 1, args.lr, args.truncate)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    archs = ["one", "two"] if args.arch == "both" else [args.arch]
    jobs = [(arch, row) for arch in archs for row in rows]
    table = Table(args, device, jobs)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.reading:
        (Path(args.out) / "reading.md").write_text(Path(args.reading).read_text())
    if args.status:
        data = table.results()
        print_table(data)
        return 0
    data = load_data(args, device)
    table.runs = [RowRun(arch, row, args, data, device, table) for arch, row in jobs]
    log(
        f"{len(jobs)} row(s) on {environment(device)['device_name']}, budget {budget}, "
        f"{table.runs[0].steps_per_epoch} steps per epoch; run folder {args.out}"
    )
    try:
        for run in table.runs:
            run.run()
            table.write()
            if table.stopped:
                return 3
    except KeyboardInterrupt:
        log("interrupted: completed chunks are kept; rerun the same command to continue")
        table.write()
        return 130
    results = table.results()
    table.write()
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
