"""Data-parallel training on torch.distributed, with two gloo processes on the CPU.

One spawn runs every check in both processes (starting them costs seconds); each process writes
what it found to a file that the test reads.
"""

import gc
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

TESTS = Path(__file__).resolve().parents[1]


def worker(rank, world_size, init_file, out_dir):
    sys.path.insert(0, str(TESTS))  # the spawned process starts without pytest's paths
    import pyro
    import torch.distributed as dist
    from conjugate_cases import make_conjugate
    from estimators.cases import LocalGaussianGuide

    from pyro_vi.architectures import mlp_vae
    from pyro_vi.estimators import get
    from pyro_vi.train import Trainer, fit

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    found = {}

    # 1. The loss equals a single process's on the union of the batches: with the exact posterior
    # as guide every loss is -log p(x) exactly, whichever points a rank gets.
    model = make_conjugate("normal_normal")
    torch.manual_seed(0)  # the same data set on every rank
    x = model.sample(16)
    history = fit(
        model.model,
        model.guide,
        x,
        epochs=1,
        batch_size=4,
        seed=0,
        progress=False,
        optim=pyro.optim.Adam({"lr": 1e-12}),
    )
    found["train_loss"] = history.train_loss[0]
    found["exact"] = -float(model.log_evidence(x).mean().detach())

    # 2. DDP's gradient is the mean of the per-rank gradients of the same draws.
    pyro.clear_param_store()
    guide = LocalGaussianGuide(model, x[:4], shift=0.5, stretch=1.5)
    batch = x[4 * rank : 4 * rank + 4]
    trainer = Trainer(
        model.model,
        guide,
        get("iwae", num_particles=3),
        {},
        torch.device("cpu"),
        torch.optim.SGD,
        False,
        "raise",
    )
    pyro.set_rng_seed(10 + rank)
    trainer.step((batch,))  # warm-up and wrap; SGD's default lr of 1e-3 moves the parameters
    params = trainer.params
    pyro.set_rng_seed(20 + rank)
    for group in trainer.optimizer.param_groups:
        group["lr"] = 0.0
    trainer.step((batch,))
    ddp_grads = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    pyro.set_rng_seed(20 + rank)
    local = get("iwae", num_particles=3).differentiable_loss(model.model, guide, batch)
    local_grads = torch.autograd.grad(local, params)
    gathered = [None] * world_size
    dist.all_gather_object(gathered, [g.tolist() for g in local_grads])
    mean = [torch.tensor(gs, dtype=torch.float64).mean(0) for gs in zip(*gathered, strict=True)]
    found["grad_error"] = max(
        float((a - b).abs().max()) for a, b in zip(ddp_grads, mean, strict=True)
    )
    found["grad_size"] = max(float(g.abs().max()) for g in ddp_grads)

    # 3. The replicas stay identical: a VAE after two epochs.
    pyro.clear_param_store()
    torch.manual_seed(rank)  # different initial weights on each rank: DDP takes rank 0's
    vae, vae_guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[8])
    images = torch.bernoulli(
        torch.full((40, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(0)
    )
    validation = torch.bernoulli(
        torch.full((16, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(1)
    )
    history = fit(
        vae,
        vae_guide,
        images,
        epochs=2,
        batch_size=8,
        seed=0,
        progress=False,
        loss="iwae",
        validation_data=validation,
        early_stopping=1,
        checkpoint=Path(out_dir, "vae.ckpt"),
    )
    # Rank 0 alone writes the checkpoint; every rank returns from fit once its last one is on
    # disk (a resume right after fit read the one before, and the ranks hung in the all-reduce).
    from pyro_vi.train.checkpoint import load_checkpoint

    saved = load_checkpoint(Path(out_dir, "vae.ckpt"))["position"]
    found["checkpoint_epoch"] = [saved["epoch"], history.epochs]
    # Each rank draws its own noise; the validation loss (and so the decision to stop) is their
    # mean, the same on every rank, or a rank that stops would leave the others waiting.
    found["validation"] = [history.validation_loss, history.best_epoch, history.stopped_early]
    flat = torch.cat([p.detach().reshape(-1) for m in (vae, vae_guide) for p in m.parameters()])
    gathered = [None] * world_size
    dist.all_gather_object(gathered, flat.tolist())
    found["replica_difference"] = float(
        (
            torch.tensor(gathered[0], dtype=torch.float64)
            - torch.tensor(gathered[1], dtype=torch.float64)
        )
        .abs()
        .max()
    )
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(found))
    # Both ranks finish their collectives, and the DDP reducers (which hold gloo work) are freed,
    # before the group goes: gloo threads still busy at interpreter exit abort the process.
    dist.barrier()
    del trainer, params
    gc.collect()
    dist.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_gloo_processes(tmp_path):
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for found in results:
        # The mean of exact per-rank losses over 8 points each is the exact mean over all 16.
        assert found["train_loss"] == pytest.approx(found["exact"], rel=1e-9)
        # All-reduced in float64: equal to the mean of the per-rank gradients to rounding.
        assert found["grad_size"] > 1e-3 and found["grad_error"] < 1e-10
        assert found["replica_difference"] == 0.0
    assert results[0]["validation"] == results[1]["validation"]
    for found in results:
        epoch, epochs = found["checkpoint_epoch"]
        assert epoch == epochs
