"""The two contracts of DESIGN.md on programs written as a user would: a captured step computes
the eager step or says why it does not, and a resumed run is the uninterrupted one.

Each test failed before its fix: a replayed graph froze Python state into its first step's
values, tracing moved batch-norm statistics, a resume after an epoch's last step recorded a
gradient norm of 0, and a resume with other settings trained a different run silently.
"""

import os
import random
import signal
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_vi.train.loop as loop
from pyro_vi.train import fit
from pyro_vi.train.checkpoint import CheckpointError

X = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def guide(x):
    loc = pyro.param("loc", torch.zeros(3, dtype=torch.float64))
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(loc, 1.0).expand([len(x), 3]).to_event(1))


def model_with(weight):
    """A model whose prior's weight is ``weight()``, Python state read on every call."""

    def model(x):
        with pyro.plate("data", len(x)), pyro.poutine.scale(scale=weight()):
            z = pyro.sample("z", dist.Normal(torch.zeros(3, dtype=torch.float64), 1.0).to_event(1))
        with pyro.plate("obs", len(x)):
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    return model


def train(model, compile, **options):
    pyro.clear_param_store()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        options = {"epochs": 2} | options
        history = fit(
            model, guide, X, loss="elbo", batch_size=8, seed=0, progress=False,
            threads=1, compile=compile, **options,
        )  # fmt: skip
    messages = [str(w.message) for w in caught if "compile=" in str(w.message)]
    return history.train_loss, pyro.param("loc").detach().clone(), messages


def annealed():
    steps = [0]

    def weight():  # KL annealing by a counter in a closure
        steps[0] += 1
        return min(1.0, steps[0] / 5)

    return model_with(weight)


@pytest.mark.parametrize(
    "make",
    [annealed, lambda: model_with(lambda: 1.0 + random.random())],
    ids=["annealing-counter", "random.random"],
)
def test_python_state_that_changes_between_steps_is_not_frozen_by_the_graph(make):
    # The replayed graph kept the first step's annealing weight (or random number) for every
    # later step: losses 0.67 nats off the eager run's, without a word.
    random.seed(0)
    want_loss, want, _ = train(make(), False)
    random.seed(0)
    got_loss, got, messages = train(make(), "graph")
    assert len(messages) == 1 and "different step" in messages[0], messages
    # Each step is either traced on that very step or run eagerly: float64 rounding at most.
    torch.testing.assert_close(torch.tensor(got_loss), torch.tensor(want_loss), rtol=0, atol=1e-10)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_state_a_callback_changes_between_epochs_is_seen():
    weights = {"beta": 0.1}

    def anneal(epoch, history):
        weights["beta"] = 1.0

    options = {"callback": anneal}
    want_loss, want, _ = train(model_with(lambda: weights["beta"]), False, **options)
    weights["beta"] = 0.1
    got_loss, got, messages = train(model_with(lambda: weights["beta"]), "graph", **options)
    assert len(messages) == 1 and "different step" in messages[0], messages
    torch.testing.assert_close(torch.tensor(got_loss), torch.tensor(want_loss), rtol=0, atol=1e-10)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_state_that_changes_now_and_then_is_seen_by_the_doubling_checks():
    # State changed from outside the program between two checks (here by hand after the 5th
    # step): the graph traced again on the 2nd, 4th, 8th, ... call of its batch shape sees it
    # at the 8th, and from then on the step runs eagerly.
    from pyro_vi.estimators import get
    from pyro_vi.train.step import make_step

    weights = {"beta": 1.0}
    program = model_with(lambda: weights["beta"])
    loss = get("elbo")
    pyro.clear_param_store()
    loss.differentiable_loss(program, guide, X[:8])  # makes the parameter
    params = [pyro.get_param_store().get_param("loc").unconstrained()]
    step = make_step(program, guide, loss, {}, params, "graph", torch.device("cpu"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for call in range(1, 9):
            if call == 6:
                weights["beta"] = 0.5
            step((X[:8],))
            assert (step.failed is not None) == (call == 8), call
    assert ["different step" in str(w.message) for w in caught] == [True]


def test_a_program_without_python_state_stays_captured_with_its_short_last_batch():
    # 20 points in batches of 8: two graphs, each traced again once and kept.
    want_loss, want, _ = train(model_with(lambda: 1.0), False)
    got_loss, got, messages = train(model_with(lambda: 1.0), "graph")
    assert messages == []
    torch.testing.assert_close(torch.tensor(got_loss), torch.tensor(want_loss), rtol=0, atol=1e-10)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_tracing_leaves_batch_norm_statistics_as_the_eager_step_does():
    # Tracing ran the program for real: each graph moved the running statistics once more.
    def run(compile):
        pyro.clear_param_store()
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 6)
        )
        net = net.double()

        def encoder(x):
            pyro.module("encoder", net)
            out = net(x)
            with pyro.plate("data", len(x)):
                pyro.sample("z", dist.Normal(out[:, :3], out[:, 3:].exp()).to_event(1))

        fit(
            model_with(lambda: 1.0), encoder, X, loss="elbo", epochs=2, batch_size=8, seed=0,
            progress=False, threads=1, compile=compile,
        )  # fmt: skip
        return net[1].running_mean.clone(), int(net[1].num_batches_tracked)

    want_mean, want_count = run(False)
    got_mean, got_count = run("graph")
    assert got_count == want_count
    torch.testing.assert_close(got_mean, want_mean, rtol=0, atol=1e-10)


def stopped_run(path, stop_after=None, resume=False, **options):
    """fit on a user's program; SIGTERM during step ``stop_after`` stops it after that step."""
    pyro.clear_param_store()
    steps = [0]
    step = loop.Trainer.step

    def counting(self, *args, **kwargs):
        value = step(self, *args, **kwargs)
        steps[0] += 1
        if steps[0] == stop_after:
            os.kill(os.getpid(), signal.SIGTERM)
        return value

    loop.Trainer.step = counting
    try:
        settings = {"loss": "elbo", "epochs": 3, "batch_size": 8, "seed": 3} | options
        history = fit(
            model_with(lambda: 1.0), guide, X, progress=False, threads=1,
            checkpoint=path / "state.pt", resume=resume, **settings,
        )  # fmt: skip
    finally:
        loop.Trainer.step = step
    return history, pyro.param("loc").detach().clone()


@pytest.mark.parametrize("compile", [False, "graph"])
def test_a_run_stopped_after_an_epochs_last_step_resumes_its_history_exactly(tmp_path, compile):
    # 20 points in batches of 8: step 3 ends the first epoch. The resumed run had no gradient of
    # that step and recorded the epoch's gradient norm as 0.0.
    (tmp_path / "whole").mkdir()
    whole, want = stopped_run(tmp_path / "whole", compile=compile, epochs=2)
    stopped, _ = stopped_run(tmp_path, stop_after=3, compile=compile, epochs=2)
    assert stopped.interrupted and stopped.epochs == 0
    resumed, got = stopped_run(tmp_path, resume=True, compile=compile, epochs=2)
    for key in ("train_loss", "grad_norm", "learning_rate", "steps"):
        assert getattr(resumed, key) == getattr(whole, key), key
    assert torch.equal(got, want)


@pytest.mark.parametrize(
    "change, named",
    [
        ({"batch_size": 4}, "batch_size: 8 in the checkpoint, 4 here"),
        ({"loss": "iwae"}, "loss: "),
        ({"optim": pyro.optim.Adam({"lr": 0.1})}, "optim: None in the checkpoint"),
    ],
)
def test_resuming_with_other_settings_names_them(tmp_path, change, named):
    # Each resumed silently and trained a different run (batch_size=4: 6 steps an epoch).
    stopped_run(tmp_path, stop_after=4)
    with pytest.raises(CheckpointError, match="other settings") as error:
        stopped_run(tmp_path, resume=True, **change)
    assert named in str(error.value)


def test_resuming_with_more_epochs_or_another_compile_mode_is_allowed(tmp_path):
    stopped_run(tmp_path, stop_after=4)
    history, _ = stopped_run(tmp_path, resume=True, epochs=4, compile="graph", max_seconds=60)
    assert history.epochs == 4 and not history.interrupted


def test_resuming_with_another_seed_or_stopping_policy_is_the_same_run(tmp_path):
    # The checkpoint restores every generator and the data order: the seed has no effect on a
    # resumed run, and on_nonfinite and early_stopping only say when to stop, as epochs does.
    (tmp_path / "whole").mkdir()
    whole, want = stopped_run(tmp_path / "whole")
    stopped_run(tmp_path, stop_after=4)
    resumed, got = stopped_run(tmp_path, resume=True, seed=9, on_nonfinite="skip")
    assert resumed.train_loss == whole.train_loss and torch.equal(got, want)


def test_a_callback_marked_as_not_changing_the_program_costs_no_trace(monkeypatch):
    # pyro-vi train's callback only writes files: it traced every graph again each epoch.
    from pyro_vi.train.step import CapturedStep

    traces = []
    trace = CapturedStep._trace
    monkeypatch.setattr(CapturedStep, "_trace", lambda *a: traces.append(1) or trace(*a))

    def count(marked: bool) -> int:
        def write(epoch, history):
            pass

        write.changes_program = not marked
        traces.clear()
        train(model_with(lambda: 1.0), "graph", epochs=6, callback=write)
        return len(traces)

    # 20 points in batches of 8: shapes 8 and 4; 12 and 6 calls: traced at 1, 2, 4, 8 and 1, 2, 4.
    assert count(marked=True) == 7 < count(marked=False)
