"""The capability table refuses exactly the combinations the special-case rules refused.

Before the parts declared capabilities, the resolver listed its rules: ``meanfield`` needs a
Gaussian family and a standard normal prior; ``stl`` and ``dreg`` need a flow with an inverse;
the binary sigmoid belief net refuses the estimators that need reparameterized latents, its
relaxations refuse ``meanfield``; the deterministic encoders take only the one-particle ELBO.
Each test below writes the old rule out and checks the table against it for every estimator.
"""

from __future__ import annotations

import pytest

from pyro_vi import estimators
from pyro_vi.guides.families import FAMILIES
from pyro_vi.spec import SpecError, resolve
from pyro_vi.spec.capabilities import CHECKS, Capabilities, Needs, check_capabilities

ESTIMATORS = list(estimators.ESTIMATORS)
GAUSSIAN = ("diagonal", "full_rank", "low_rank")
NO_INVERSE = ("planar", "radial", "sylvester")


def _estimator(name: str) -> dict:
    # Two particles: VIMCO's leave-one-out needs them; the others take any number.
    options = {"num_particles": 2} if name == "vimco" else {}
    return {"name": name, **options}


def _refused(raw: dict) -> bool:
    try:
        resolve(raw)
    except SpecError:
        return True
    return False


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("prior", ["standard_normal", "mixture"])
def test_vae_families_and_priors(family, prior):
    for name in ESTIMATORS:
        raw = {"model": {"prior": prior}, "guide": {"family": family}}
        raw["estimator"] = _estimator(name)
        old_rule = (
            name == "meanfield" and (family not in GAUSSIAN or prior != "standard_normal")
        ) or (name in ("stl", "dreg") and family in NO_INVERSE)
        assert _refused(raw) == old_rule, name


@pytest.mark.parametrize("relaxation", ["none", "concrete", "straight_through"])
def test_sigmoid_belief_net(relaxation):
    for name in ESTIMATORS:
        raw = {"model": {"kind": "sbn", "relaxation": relaxation}, "estimator": _estimator(name)}
        if relaxation == "none":
            old_rule = estimators.ESTIMATORS[name].requires_reparam  # stl, dreg
        else:
            old_rule = name == "meanfield"
        assert _refused(raw) == old_rule, name


@pytest.mark.parametrize("kind", ["vq_vae", "autoencoder"])
@pytest.mark.parametrize("num_particles", [1, 2])
def test_deterministic_encoders(kind, num_particles):
    for name in ESTIMATORS:
        estimator = _estimator(name)
        if "num_particles" in estimators.options(name):
            estimator["num_particles"] = max(num_particles, estimator.get("num_particles", 1))
        raw = {"model": {"kind": kind}, "estimator": estimator}
        old_rule = not (name == "elbo" and num_particles == 1)
        assert _refused(raw) == old_rule, (name, num_particles)


def test_needs_are_read_from_the_estimator_classes():
    needs = Needs.of({"name": "dreg", "num_particles": 3})
    assert (needs.requires_reparam, needs.rescores, needs.analytic_kl) == (True, True, False)
    assert not needs.plain_elbo
    assert Needs.of({"name": "elbo", "num_particles": 1}).plain_elbo
    assert not Needs.of({"name": "elbo", "num_particles": 2}).plain_elbo
    assert Needs.of({"name": "meanfield", "num_particles": 1}).analytic_kl


def test_every_row_names_a_capability():
    offered = Capabilities()
    assert all(hasattr(offered, check.capability) for check in CHECKS)
    check_capabilities({"name": "dreg", "num_particles": 2}, offered)  # all offered: no error
