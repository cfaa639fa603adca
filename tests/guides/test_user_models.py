"""AmortizedGuide on models written the way a user would, beyond the package's own models."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vi.evaluation import log_likelihood
from pyro_vi.guides.amortized import AmortizedGuide
from pyro_vi.train import fit

X = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))


def per_feature_model(x):
    # Two latents per datapoint and feature, one with an event shape and one on the simplex,
    # under a data plate at dim -2 that is not called "data".
    with pyro.plate("cells", x.shape[0], dim=-2), pyro.plate("genes", 4, dim=-1):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        p = pyro.sample("p", dist.Dirichlet(torch.ones(3)))
        pyro.sample("x", dist.Normal(z.sum(-1) + p[..., 0], 1.0), obs=x)


def test_two_latents_in_the_same_inner_plate():
    # The guide made a new pyro.plate("genes") for each latent: "Multiple sample sites named
    # 'genes'" at its first call.
    guide = AmortizedGuide(per_feature_model, [8])
    trace = pyro.poutine.trace(guide).get_trace(X[:7])
    assert trace.nodes["z"]["value"].shape == (7, 4, 2)
    assert trace.nodes["p"]["value"].shape == (7, 4, 3)
    assert torch.allclose(trace.nodes["p"]["value"].sum(-1), torch.ones(7, 4))
    history = fit(per_feature_model, guide, X, loss="iwae", epochs=1, batch_size=10, progress=False)
    assert torch.isfinite(torch.tensor(history.train_loss)).all()
    assert log_likelihood(per_feature_model, guide, X, num_samples=4).shape == (30,)


def test_a_family_that_cannot_take_a_latent_names_the_site():
    def one_dimensional(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            pyro.sample("x", dist.Normal(z.expand(x.shape), 1.0).to_event(1), obs=x)

    guide = AmortizedGuide(one_dimensional, [8], family="affine_coupling")
    with pytest.raises(ValueError, match=r"latent site 'z': dim must be >= 2 for affine_coupling"):
        guide(torch.randn(4, 3))


def test_float64_data_meets_a_float32_encoder_in_its_dtype():
    # numpy's arrays load as float64; the guide built its heads in the data's dtype and the
    # float32 encoder it was given then failed in a matmul (mat1 and mat2 must have the same dtype).
    from pyro.infer import Trace_ELBO

    from pyro_vi.architectures import mlp_vae

    model, guide = mlp_vae((5,), 2, hidden=[4], likelihood="poisson")
    counts = torch.poisson(torch.full((6, 5), 2.0), generator=torch.Generator().manual_seed(0))
    loss = Trace_ELBO().loss(model, guide, counts.double())
    assert torch.isfinite(torch.tensor(loss))
    assert guide.context(counts.double()).dtype == torch.float32
