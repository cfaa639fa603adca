"""Training that survives: exact resume, safe checkpoints, signals.

The strongest check runs training in a subprocess, kills it with SIGKILL in the middle of an
epoch, resumes it in another, and compares the final parameters bit for bit with an
uninterrupted run with the same seed (one thread, so that every reduction runs in the same order).
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyro
import pytest
import torch

from pyro_vi.architectures import mlp_vae
from pyro_vi.data import DynamicBinarization
from pyro_vi.train import fit
from pyro_vi.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

SCRIPT = textwrap.dedent(
    """
    import sys, time, torch, pyro
    from pyro_vi.architectures import mlp_vae
    from pyro_vi.data import DynamicBinarization
    from pyro_vi.train import fit

    out, resume, slow = sys.argv[1], sys.argv[2] == "resume", sys.argv[3] == "slow"
    torch.manual_seed(0)
    images = torch.rand(120, 1, 8, 8)
    pyro.set_rng_seed(0)
    model, guide = mlp_vae((1, 8, 8), latent_dim=3, hidden=[16])

    def slow_model(x):
        # Slow down inside the epoch, so that the parent sees a mid-epoch checkpoint (every
        # epoch ends with a checkpoint at batch 0). Sleeping draws no random numbers.
        if slow:
            time.sleep(0.05)
        return model(x)

    fit(slow_model, guide, DynamicBinarization(images), loss="iwae", epochs=4, batch_size=16,
        seed=1, threads=1, progress=False, checkpoint=out + ".ckpt", checkpoint_every=3,
        resume=resume)
    torch.save([p.detach() for m in (model, guide) for p in m.parameters()], out + ".params")
    print("done", flush=True)
    """
)


def run(tmp_path, name, mode, slow="fast", wait=True):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / name), mode, slow],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if wait:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    return process


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(tmp_path):
    run(tmp_path, "whole", "fresh")
    process = run(tmp_path, "broken", "fresh", slow="slow", wait=False)
    checkpoint = tmp_path / "broken.ckpt"
    deadline = time.time() + 120
    # Kill once a mid-epoch checkpoint exists (steps 3, 6 ... of 8-step epochs).
    while time.time() < deadline:
        if checkpoint.exists():
            position = load_checkpoint(checkpoint)["position"]
            if position["epoch"] >= 1 and position["batch"] > 0:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (tmp_path / "broken.params").exists()
    run(tmp_path, "broken", "resume")
    whole = torch.load(tmp_path / "whole.params", weights_only=True)
    resumed = torch.load(tmp_path / "broken.params", weights_only=True)
    assert all(torch.equal(a, b) for a, b in zip(whole, resumed, strict=True))


def vae_run(tmp_path, **options):
    torch.manual_seed(0)
    images = torch.rand(48, 1, 8, 8)
    pyro.set_rng_seed(0)
    model, guide = mlp_vae((1, 8, 8), latent_dim=3, hidden=[16])
    history = fit(
        model,
        guide,
        DynamicBinarization(images),
        loss="elbo",
        epochs=3,
        batch_size=16,
        seed=1,
        threads=1,
        progress=False,
        checkpoint=tmp_path / "run.ckpt",
        **options,
    )
    return history, [p.detach().clone() for m in (model, guide) for p in m.parameters()]


def test_interrupted_at_an_epoch_and_resumed_equals_uninterrupted(tmp_path):
    _, whole = vae_run(tmp_path / "a")

    def stop(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt

    history, _ = vae_run(tmp_path / "b", callback=stop)
    assert history.interrupted and history.epochs == 2
    pyro.clear_param_store()
    resumed_history, resumed = vae_run(tmp_path / "b", resume=True)
    assert not resumed_history.interrupted and resumed_history.epochs == 3
    assert resumed_history.train_loss[:2] == history.train_loss
    assert all(torch.equal(a, b) for a, b in zip(whole, resumed, strict=True))


def test_resuming_with_other_settings_is_an_error(tmp_path):
    vae_run(tmp_path, tag="spec-1")
    pyro.clear_param_store()
    with pytest.raises(CheckpointError, match="tagged 'spec-1', not 'spec-2'"):
        vae_run(tmp_path, tag="spec-2", resume=True)


def test_sigterm_stops_after_the_step_with_a_checkpoint(tmp_path, monkeypatch):
    import pyro_vi.train.loop as loop

    torch.manual_seed(0)
    model, guide = mlp_vae((1, 8, 8), latent_dim=3, hidden=[16])
    images = torch.bernoulli(torch.rand(64, 1, 8, 8))
    calls = []
    steps = []
    step = loop.Trainer.step
    monkeypatch.setattr(loop.Trainer, "step", lambda *a, **k: steps.append(1) or step(*a, **k))

    def send(*args, **kwargs):
        if steps:  # the guide's calls in training steps, not in fit's checks before them
            calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    # A forward hook sends SIGTERM during the third step; training stops after that step.
    guide_hook = None
    history = None
    try:
        pyro.set_rng_seed(0)
        guide(images[:8])
        guide_hook = guide.register_forward_hook(send)
        history = fit(
            model,
            guide,
            images,
            epochs=5,
            batch_size=8,
            progress=False,
            checkpoint=tmp_path / "run.ckpt",
        )
    finally:
        if guide_hook is not None:
            guide_hook.remove()
    assert history.interrupted and history.epochs == 0
    # The checkpoint is of the step during which the signal came, in the first epoch.
    saved = load_checkpoint(tmp_path / "run.ckpt")
    position = saved["position"]
    assert position["epoch"] == 0 and 1 <= position["batch"] < 8
    assert saved["trainer"]["count"] == position["batch"]


# -- safe loading -------------------------------------------------------------------------------


def test_empty_truncated_foreign_and_tampered_files_are_clear_errors(tmp_path):
    good = save_checkpoint(tmp_path / "good.ckpt", {"x": torch.ones(3)})
    assert load_checkpoint(good)["x"].tolist() == [1.0, 1.0, 1.0]
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.ckpt.*is empty"):
        load_checkpoint(empty)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated.ckpt.*truncated or not a torch file"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.ckpt.*not a pyro_vi checkpoint"):
        load_checkpoint(foreign)
    tampered = tmp_path / "tampered.ckpt"
    torch.save({"format": "pyro_vi.checkpoint", "version": 1, "payload": Path("/etc")}, tampered)
    with pytest.raises(CheckpointError, match="tampered.ckpt.*never contains") as info:
        load_checkpoint(tampered)
    assert "weights_only=False" not in str(info.value)
    with pytest.raises(CheckpointError, match="missing.ckpt.*does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_an_unwritable_folder_is_a_clear_error_and_keeps_the_last_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "run.ckpt", {"step": 1})
    if os.geteuid() == 0:
        # root writes anywhere: make the rename fail instead (a folder in the way).
        blocked = tmp_path / "blocked"
        blocked.mkdir()
        (blocked / "inner").mkdir()
        with pytest.raises(CheckpointError, match="cannot write the checkpoint"):
            save_checkpoint(blocked, {"step": 2})
    else:
        tmp_path.chmod(0o500)
        try:
            with pytest.raises(CheckpointError, match="cannot write the checkpoint"):
                save_checkpoint(path, {"step": 2})
        finally:
            tmp_path.chmod(0o700)
    assert load_checkpoint(path)["step"] == 1


def test_a_checkpoint_takes_the_permissions_of_the_runs_other_files(tmp_path):
    # Written through mkstemp, checkpoints were private (0600) while the run's other files
    # follow the umask: a colleague who may read the run could not read its weights.
    previous = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "run.ckpt", {"x": torch.ones(1)})
        other = tmp_path / "metrics.json"
        other.write_text("{}")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == other.stat().st_mode & 0o777 == 0o644
