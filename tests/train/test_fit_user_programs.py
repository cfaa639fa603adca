"""fit on programs and data written the way a user would, beyond the package's own models.

Each case failed before its fix: a crash deep in torch or Pyro, or a silently wrong loss.
"""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch.utils.data import TensorDataset

from pyro_vi.guides import LocalGuide
from pyro_vi.guides.amortized import AmortizedGuide
from pyro_vi.train import fit

X = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        pyro.sample(
            "x", dist.Normal(z.sum(-1, keepdim=True).expand(x.shape), 1.0).to_event(1), obs=x
        )


def quick(model, guide, data, **options):
    options = {"epochs": 1, "batch_size": 10, "progress": False, "seed": 0} | options
    return fit(model, guide, data, **options)


class DecoderModel(PyroModule):
    def __init__(self):
        super().__init__()
        self.decoder = PyroModule[torch.nn.Linear](3, 5)

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), 1.0).to_event(1), obs=x)


def test_a_pyro_module_model_without_num_data_trains():
    # An nn.Module's signature is (*args, **kwargs): fit read that as taking num_data, and the
    # forward(x) then failed inside torch with "unexpected keyword argument 'num_data'".
    network = DecoderModel()
    history = quick(network, AmortizedGuide(network, [8]), X)
    assert np.isfinite(history.train_loss).all()


def model_with_kwargs(x, **kwargs):  # num_data arrives in kwargs and is ignored
    model(x)


def test_a_model_that_swallows_num_data_is_refused():
    # The guide scaled its latents by N/B, the model did not: training went on with a wrong
    # bound, and the loss was reported divided by N instead of B (0.8 nats for about 8).
    guide = AmortizedGuide(model_with_kwargs, [8])
    with pytest.raises(ValueError, match=r"num_data=40.*no site of the model changes its scale"):
        quick(model_with_kwargs, guide, X)


def test_a_guide_that_swallows_num_data_is_refused():
    def scaled_model(x, num_data=None):
        size = len(x) if num_data is None else num_data
        with pyro.plate("data", size, subsample=torch.arange(len(x))):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[:, 0])

    def guide(x, **kwargs):
        loc = pyro.param("loc", torch.zeros(()))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc, 1.0))

    pyro.clear_param_store()
    with pytest.raises(
        ValueError,
        match=r"at latent site .z. the model scales the minibatch by num_data / batch and the",
    ):
        quick(scaled_model, guide, X)


def test_a_model_that_swallows_num_data_is_refused_even_with_a_scaled_site():
    # KL annealing gives a site a scale of its own: "every scale is 1" missed the model that
    # ignores num_data; "no scale changes with num_data" does not.
    from pyro import poutine

    def annealed(x, **kwargs):
        with poutine.scale(scale=0.5):
            model(x)

    with pytest.raises(ValueError, match=r"no site of the model changes its scale"):
        quick(annealed, AmortizedGuide(annealed, [8]), X)


def test_a_model_only_point_mass_needs_no_guide_site_under_pyros_elbo():
    # log p of a Delta at its own value is 0 whatever the guide: Pyro's Trace_ELBO trains it.
    def with_delta(x):
        loc = pyro.sample("loc", dist.Delta(torch.tensor(0.0)))
        with pyro.plate("data", x.shape[0]):
            shift = pyro.param("shift", torch.zeros(()))
            pyro.sample("x", dist.Normal(loc + shift, 1.0).expand([5]).to_event(1), obs=x)

    pyro.clear_param_store()
    with pytest.warns(UserWarning, match="Found vars in model but not guide"):
        history = quick(with_delta, lambda x: None, X)
    assert np.isfinite(history.train_loss).all()


def test_the_checks_before_training_leave_batch_norm_statistics_alone(monkeypatch):
    # The checks run the program once more; in train mode a batch norm would count that batch.
    import pyro_vi.train.loop as loop

    def tracked() -> int:
        norm = torch.nn.BatchNorm1d(5)

        def normed(x):
            pyro.module("norm", norm)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
                pyro.sample(
                    "x",
                    dist.Normal(norm(z.sum(-1, keepdim=True).expand(x.shape)), 1.0).to_event(1),
                    obs=x,
                )

        pyro.clear_param_store()
        quick(normed, AmortizedGuide(normed, [8]), X, batch_size=40)
        return int(norm.num_batches_tracked)

    checked = tracked()
    monkeypatch.setattr(loop, "check_program", lambda *args: None)
    assert checked == tracked()


def test_a_list_of_datapoints_gets_an_error_naming_the_data():
    # A list is the model's positional arguments: 40 tensors of 5 went to model(x) as 40
    # arguments of 5 "datapoints", failing inside Pyro.
    rows = [X[i] for i in range(len(X))]
    with pytest.raises(TypeError, match=r"train_data holds 40 field\(s\).*torch.stack"):
        quick(model, AmortizedGuide(model, [8]), rows)


def test_a_dataset_with_more_fields_than_the_model_takes():
    labelled = TensorDataset(X, torch.zeros(len(X), dtype=torch.long))
    with pytest.raises(TypeError, match=r"2 field\(s\).*as_batchable\(dataset, fields=0\)"):
        quick(model, AmortizedGuide(model, [8]), labelled)


def test_a_guide_without_the_models_latent_is_refused_under_pyros_elbo():
    # Pyro's Trace_ELBO (fit's default) only warns, then trains a wrong objective.
    def other(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("w", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(0.0, 1.0).expand([5]).to_event(1), obs=x)

    with pytest.raises(ValueError, match="latent site 'z' but the guide does not"):
        quick(model, AmortizedGuide(other, [8]), X)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"seed": -1}, ValueError, "seed must be an integer >= 0"),
        ({"seed": 2**40}, ValueError, r"seed must be an integer in \[0, 2\*\*32 - 1\]"),
        ({"checkpoint": 123}, TypeError, "checkpoint must be None or a file path"),
        (
            {"best_checkpoint": 1.5, "validation_data": X[:5]},
            TypeError,
            "best_checkpoint must be None or a file path",
        ),
        ({"resume": 7}, TypeError, "resume must be True, False, None or a file path"),
    ],
)
def test_bad_arguments_name_themselves(options, error, match):
    with pytest.raises(error, match=match):
        quick(model, AmortizedGuide(model, [8]), X, **options)


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (torch.tensor(1.0), ValueError, "train_data must have its datapoints along the first"),
        (X.numpy(), TypeError, r"torch.as_tensor\(array"),
        (
            torch.cat([X, torch.full((1, 5), float("nan"))]),
            ValueError,
            r"train_data holds 5 NaN or infinite value\(s\), the first at index \[40, 0\]",
        ),
        ((X, X.clone().fill_(float("inf"))), ValueError, r"train_data\[1\] holds 200 NaN"),
    ],
)
def test_bad_data_names_the_argument(data, error, match):
    with pytest.raises(error, match=match):
        quick(model, AmortizedGuide(model, [8]), data)


def test_non_finite_validation_data_is_refused():
    bad = X[:5].clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="validation_data holds 1 NaN"):
        quick(model, AmortizedGuide(model, [8]), X, validation_data=bad)


def test_a_local_guide_needs_the_whole_data_set_per_step():
    guide = LocalGuide(model, num_data=len(X))
    with pytest.raises(ValueError, match="batch_size=10 is below the 40 datapoints"):
        quick(model, guide, X)
    history = fit(model, guide, X, epochs=1, batch_size=len(X), progress=False)
    assert np.isfinite(history.train_loss).all()


def test_a_model_latent_summed_out_by_trace_enum_elbo_needs_no_guide_site():
    @pyro.infer.config_enumerate
    def mixture(x):
        locs = pyro.param("locs", torch.tensor([-1.0, 1.0]))
        with pyro.plate("data", x.shape[0]):
            component = pyro.sample("component", dist.Categorical(torch.ones(2) / 2))
            pyro.sample("x", dist.Normal(locs[component], 1.0), obs=x[:, 0])

    pyro.clear_param_store()
    loss = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)
    history = quick(mixture, lambda x: None, X, loss=loss)
    assert np.isfinite(history.train_loss).all()


def test_a_second_fit_on_the_same_networks_ignores_the_first_ones_gradients():
    # fit leaves each parameter's last gradient in .grad, as torch's optimizers do; the next
    # fit's first backward added to it, so the same seeded run gave another answer.
    network = torch.nn.Linear(5, 3)

    def encoded_guide(x):
        pyro.module("encoder", network)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(network(x), 1.0).to_event(1))

    def run() -> list[float]:
        pyro.clear_param_store()
        torch.manual_seed(1)
        network.reset_parameters()
        return quick(model, encoded_guide, X, epochs=2).train_loss

    first = run()
    assert network.weight.grad is not None  # what the second run used to start from
    assert run() == first


def test_a_parameter_made_after_the_first_step_is_named_in_a_warning():
    # The optimizer is built over the first step's parameters: a later one was silently never
    # trained.
    late = {"on": False}

    def guide(x):
        loc = pyro.param("loc", torch.zeros(3))
        if late["on"]:
            loc = loc + pyro.param("late", torch.zeros(3))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))

    pyro.clear_param_store()
    with pytest.warns(UserWarning, match=r"parameter\(s\) \['late'\] after fit's first step"):
        quick(model, guide, X, epochs=3, callback=lambda epoch, history: late.update(on=True))


@pytest.mark.parametrize("autoguide", ["AutoNormal", "AutoDiagonalNormal", "AutoDelta"])
def test_an_autoguide_over_a_minibatchs_positions_is_refused_by_name(autoguide):
    # The autoguide made one row of parameters per position of the first minibatch (not per
    # datapoint), then failed deep in torch on the short last batch.
    from pyro.infer import autoguide as autoguides

    pyro.clear_param_store()
    guide = getattr(autoguides, autoguide)(model)
    with pytest.raises(ValueError, match=rf"{autoguide} made its parameters for the first"):
        quick(model, guide, X[:20], batch_size=8)


def test_an_autoguide_over_global_latents_trains_on_minibatches():
    from pyro.infer.autoguide import AutoNormal

    def global_model(x):
        loc = pyro.sample("loc", dist.Normal(torch.zeros(5), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    pyro.clear_param_store()
    history = quick(global_model, AutoNormal(global_model), X[:20], batch_size=8)
    assert np.isfinite(history.train_loss).all()
