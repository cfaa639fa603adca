"""The deprecated AmortizedDiagonalNormal: it warns, and computes AmortizedGuide's diagonal q."""

import pyro
import pytest
import torch

from pyro_vi.architectures import mlp_vae
from pyro_vi.guides.gaussian import AmortizedDiagonalNormal
from pyro_vi.nets import MLPEncoder

# Constructing it warns by design; the tests below check what it computes.
pytestmark = pytest.mark.filterwarnings("ignore:AmortizedDiagonalNormal is deprecated")


def test_construction_warns_and_names_the_replacement():
    with pytest.warns(DeprecationWarning, match=r"AmortizedGuide\(model, encoder, family='diag"):
        AmortizedDiagonalNormal(MLPEncoder((1, 8, 8), [16]), latent_dim=3)


def test_posterior_shapes_and_positive_scale():
    guide = AmortizedDiagonalNormal(MLPEncoder((1, 8, 8), [16]), latent_dim=3)
    q = guide.posterior(torch.rand(5, 1, 8, 8))
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    assert bool((q.base_dist.scale > 0).all())
    assert q.has_rsample


def test_context_changes_output_and_gradients_reach_every_parameter():
    guide = AmortizedDiagonalNormal(MLPEncoder((4,), [8]), latent_dim=2)
    x = torch.randn(6, 4)
    q = guide.posterior(x)
    assert not torch.allclose(q.mean[0], q.mean[1])
    q.rsample().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in guide.parameters())


def test_it_is_the_amortized_guide_with_the_diagonal_family():
    _, guide = mlp_vae((1, 8, 8), latent_dim=3, hidden=[16])
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.5))
    pyro.poutine.trace(guide).get_trace(x)  # builds the family
    legacy = AmortizedDiagonalNormal(guide.encoder, latent_dim=3)
    legacy.family.load_state_dict(guide.families["z"].state_dict())
    expected = guide.posterior(guide.structure.sites[0], guide.context(x))
    actual = legacy.posterior(x)
    torch.testing.assert_close(actual.mean, expected.mean)
    torch.testing.assert_close(actual.base_dist.scale, expected.base_dist.scale)


def test_bad_arguments():
    with pytest.raises(TypeError, match="encoder must be a torch.nn.Module"):
        AmortizedDiagonalNormal(lambda x: x, latent_dim=2)
    with pytest.raises(ValueError, match="features is needed"):
        AmortizedDiagonalNormal(torch.nn.Identity(), latent_dim=2)
    with pytest.raises(ValueError, match="latent_dim"):
        AmortizedDiagonalNormal(torch.nn.Identity(), latent_dim=0, features=3)
