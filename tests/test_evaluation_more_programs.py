"""Evaluation on more user-written programs: discrete latents (sampled by the guide, or
enumerated in the model), labels as extra arguments, scaled sites, scalar and categorical latents
in active units. Exact identities where the answer is known (an exact-posterior guide makes every
importance weight p(x_i), so any number of draws, chunked or batched, gives log p(x_i) up to
float64 rounding); clear refusals where there is no answer."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vi.evaluation import active_units, log_likelihood, posterior_mean

F64 = torch.float64
_generator = torch.Generator().manual_seed(0)
X = 2 * torch.randn(11, 2, generator=_generator, dtype=F64)
MEANS = torch.tensor([-2.0, 0.0, 2.0], dtype=F64)
PRIOR = torch.tensor([0.2, 0.5, 0.3], dtype=F64)


def mixture_evidence(x):
    """log p(x_i) of the mixture sum_c PRIOR[c] prod_j N(x_ij; MEANS[c], 1)."""
    return (PRIOR.log() + dist.Normal(MEANS, 1.0).log_prob(x[:, :, None]).sum(1)).logsumexp(-1)


def enumerated_model(x):
    # The data plate at dim -2, a feature plate inside it, the component summed out in the model.
    with pyro.plate("rows", x.shape[0], dim=-2):
        c = pyro.sample("c", dist.Categorical(PRIOR), infer={"enumerate": "parallel"})
        with pyro.plate("features", x.shape[1], dim=-1):
            pyro.sample("x", dist.Normal(MEANS[c], 1.0), obs=x)


def empty_guide(x):
    pass


@pytest.mark.parametrize(
    "num_samples, chunk_size, batch_size", [(1, 1, 1), (5, 2, 3), (4, 4, None), (3, 2, "auto")]
)
def test_an_enumerated_model_latent_without_a_guide_site_is_summed_out(
    num_samples, chunk_size, batch_size
):
    # The estimators sum it out; log_likelihood refused it as "a latent without a guide site".
    # Summed exactly and with no other latent, every weight is p(x_i).
    estimate = log_likelihood(
        enumerated_model,
        empty_guide,
        X,
        num_samples=num_samples,
        chunk_size=chunk_size,
        batch_size=batch_size,
    )
    torch.testing.assert_close(estimate, mixture_evidence(X), rtol=0, atol=1e-12)


def test_a_discrete_latent_sampled_by_the_exact_guide_gives_the_evidence():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(PRIOR))
            pyro.sample("x", dist.Normal(MEANS[c][..., None], 1.0).to_event(1), obs=x)

    def guide(x):
        joint = PRIOR.log() + dist.Normal(MEANS, 1.0).log_prob(x[:, :, None]).sum(1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Categorical(logits=joint))

    estimate = log_likelihood(model, guide, X, num_samples=7, chunk_size=3, batch_size=4)
    torch.testing.assert_close(estimate, mixture_evidence(X), rtol=0, atol=1e-12)


# Labels as a second argument: z_i ~ N(SHIFT[y_i], 1), x_i ~ N(z_i, NOISE^2).
SHIFT = torch.tensor([[-1.0, 0.0], [0.0, 1.0], [2.0, 2.0]], dtype=F64)
NOISE = 0.5
Y = torch.randint(0, 3, (len(X),), generator=_generator)


def labelled_model(x, y=None):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(SHIFT[y], 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, NOISE).to_event(1), obs=x)


def labelled_guide(x, y=None):
    shrink = 1 / (1 + NOISE**2)  # the posterior's variance is NOISE^2 shrink
    with pyro.plate("data", x.shape[0]):
        loc = SHIFT[y] + (x - SHIFT[y]) * shrink
        pyro.sample("z", dist.Normal(loc, NOISE * math.sqrt(shrink)).to_event(1))


def test_labels_passed_positionally_are_batched_with_the_data():
    evidence = dist.Normal(SHIFT[Y], math.sqrt(1 + NOISE**2)).to_event(1).log_prob(X)
    estimate = log_likelihood(
        labelled_model, labelled_guide, X, Y, num_samples=5, chunk_size=2, batch_size=4
    )
    torch.testing.assert_close(estimate, evidence, rtol=0, atol=1e-12)


def test_labels_passed_by_keyword_are_refused_when_the_data_are_cut():
    # Keyword arguments are passed whole: each batch of 4 rows met all 11 labels, an error deep
    # in torch (or, for a program that broadcasts them, a wrong answer).
    with pytest.raises(ValueError, match=r"keyword argument y= has a row per datapoint"):
        log_likelihood(labelled_model, labelled_guide, X, y=Y, num_samples=3, batch_size=4)
    with pytest.raises(ValueError, match=r"keyword argument y= has a row per datapoint"):
        posterior_mean(labelled_model, labelled_guide, X, y=Y, batch_size=4)
    # Uncut, they are fine.
    evidence = dist.Normal(SHIFT[Y], math.sqrt(1 + NOISE**2)).to_event(1).log_prob(X)
    estimate = log_likelihood(labelled_model, labelled_guide, X, y=Y, num_samples=3)
    torch.testing.assert_close(estimate, evidence, rtol=0, atol=1e-12)


def test_a_site_scaled_on_its_own_is_refused():
    # KL annealing written in the model: the weights are those of a tempered model, and the
    # estimate (3.5 nats off here) would be no log-likelihood.
    def annealed_model(x, y=None):
        with pyro.plate("data", x.shape[0]):
            with pyro.poutine.scale(scale=0.5):
                z = pyro.sample("z", dist.Normal(SHIFT[y], 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, NOISE).to_event(1), obs=x)

    with pytest.raises(ValueError, match=r"the model's site 'z' is scaled by 0.5"):
        log_likelihood(annealed_model, labelled_guide, X, Y, num_samples=3)


def test_active_units_of_a_scalar_latent_per_datapoint():
    # A latent without event dims has posterior means of shape [N] (an IndexError before).
    x = X[:, 0]

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(0.5 * x, 0.7))

    count, variances = active_units(model, guide, x, batch_size=4)
    assert count == 1 and variances.shape == ()
    torch.testing.assert_close(variances, (0.5 * x).var(correction=0))


def test_active_units_of_a_category_index_are_refused():
    # torch's Categorical has a NaN mean: the variances were NaN and no unit counted as active.
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(PRIOR))
            pyro.sample("x", dist.Normal(MEANS[c][..., None], 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Categorical(logits=torch.stack([x[:, 0], -x[:, 0], x[:, 1]], -1)))

    with pytest.raises(ValueError, match=r"site 'c' has a Categorical distribution, whose mean"):
        active_units(model, guide, X, site="c")


class _Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.BatchNorm1d(3)

    def forward(self, x):
        return self.norm(x)


NETWORKS = {"encoder": _Encoder()}  # a user's networks held in a plain dict


def _held_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)


def _held_guide(x):
    encoder = pyro.module("encoder", NETWORKS["encoder"])
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(encoder(x), 1.0).to_event(1))


class _GuideObject:
    def __init__(self):
        self.networks = [_Encoder()]

    def __call__(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.networks[0](x), 1.0).to_event(1))


@pytest.mark.parametrize("holder", ["global dict", "list attribute"])
def test_networks_held_in_a_dict_or_list_are_evaluated_in_eval_mode(holder):
    # They were missed: dropout stayed on and batch-norm statistics moved during evaluation.
    guide = _held_guide if holder == "global dict" else _GuideObject()
    network = NETWORKS["encoder"] if holder == "global dict" else guide.networks[0]
    network.train()
    before = network.norm.running_mean.clone()
    log_likelihood(_held_model, guide, torch.randn(6, 3), num_samples=3)
    assert torch.equal(network.norm.running_mean, before) and network.training
