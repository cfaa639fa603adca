"""The registry: names, options with defaults, and the documentation every family carries."""

import inspect

import pytest
import torch

from pyro_vi.guides.families import FAMILIES, Family, Flow, make_family, options

EXPECTED = {
    "diagonal": {"min_scale": 1e-5},
    "full_rank": {"min_scale": 1e-5},
    "low_rank": {"rank": 1, "min_scale": 1e-5},
    "mixture": {"components": 3, "min_scale": 1e-5},
    "planar": {"num_steps": 4, "hidden": None, "min_scale": 1e-5},
    "radial": {"num_steps": 4, "hidden": None, "min_scale": 1e-5},
    "householder": {"num_reflections": None, "hidden": None, "min_scale": 1e-5},
    "sylvester": {"num_steps": 2, "num_reflections": None, "hidden": None, "min_scale": 1e-5},
    "iaf": {"num_steps": 2, "hidden": None, "min_scale": 1e-5},
    "spline_ar": {
        "num_steps": 2,
        "hidden": None,
        "count_bins": 8,
        "bound": 3.0,
        "min_scale": 1e-5,
    },
    "affine_coupling": {"num_steps": 4, "hidden": None, "min_scale": 1e-5},
}
NO_INVERSE = {"planar", "radial", "sylvester"}


def test_every_family_is_registered_with_its_options():
    assert {name: options(name) for name in FAMILIES} == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_make_family_builds_the_default_configuration(name):
    family = make_family(name, dim=2, features=3)
    assert isinstance(family, FAMILIES[name]) and isinstance(family, Family)
    assert (family.name, family.dim, family.features) == (name, 2, 3)
    assert family.has_tractable_inverse == (name not in NO_INVERSE)
    assert family(torch.zeros(3)).event_shape == (2,)  # a context without batch dims


def test_options_are_passed_on():
    family = make_family("spline_ar", 3, 4, num_steps=3, hidden=[16, 16], count_bins=5, bound=4)
    assert (family.num_steps, family.count_bins, family.bound) == (3, 5, 4.0)
    assert len(family.steps) == 2 * 3 - 1  # a reversal between consecutive steps


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_docstring_states_arguments_references_and_example(name):
    doc = inspect.getdoc(FAMILIES[name])
    for section in ("Arguments:", "Example:"):
        assert section in doc
    if issubclass(FAMILIES[name], Flow) or name == "mixture":
        assert "References:" in doc


def test_a_subclass_registers_only_under_its_own_name():
    planar = FAMILIES["planar"]

    class Tweaked(planar):
        pass

    class Named(planar):
        name = "test_named_planar"

    try:
        assert FAMILIES["planar"] is planar
        assert make_family("test_named_planar", 2, 3).name == "test_named_planar"
    finally:
        FAMILIES.pop("test_named_planar", None)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_closed_form_kl_is_declared_exactly_where_torch_has_one(name):
    # The spec lets `meanfield` use a family only when it declares closed_form_kl: torch must
    # have KL(q || N(0, I)) in closed form, against the diagonal or the multivariate form (the
    # full-rank and low-rank families have only the latter).
    q = make_family(name, dim=2, features=3)(torch.zeros(4, 3))
    normal = torch.distributions
    priors = (
        normal.Independent(normal.Normal(torch.zeros(2), 1.0), 1),
        normal.MultivariateNormal(torch.zeros(2), torch.eye(2)),
    )
    has_kl = False
    for prior in priors:
        try:
            normal.kl_divergence(q, prior)
            has_kl = True
        except NotImplementedError:
            pass
    assert FAMILIES[name].closed_form_kl == has_kl
    assert FAMILIES[name].reparameterized and q.has_rsample
