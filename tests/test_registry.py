"""The one Registry: lookup errors, listing, options from signatures, and every registry uses it."""

from __future__ import annotations

import pytest

from pyro_vi._registry import Registry, UnknownNameError, check_options, keyword_options
from pyro_vi.data import DATASETS
from pyro_vi.estimators import ESTIMATORS
from pyro_vi.guides import FAMILIES
from pyro_vi.models import LIKELIHOODS, PRIORS, TARGETS
from pyro_vi.nets import NETWORKS
from pyro_vi.spec import KINDS


def test_lookup_error_names_the_name_suggests_and_lists():
    colours = Registry("colour")
    colours.register("red", 1)
    colours.register("green", 2)
    with pytest.raises(UnknownNameError) as caught:
        colours["gren"]
    message = str(caught.value)
    assert (
        message == "unknown colour 'gren' (did you mean 'green'?); the colours are ['green', 'red']"
    )
    # A ValueError for callers, a KeyError for mapping code.
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, KeyError)
    assert colours.get("gren") is None and "gren" not in colours
    with pytest.raises(ValueError, match=r"unknown colour None; the colours are"):
        colours[None]
    with pytest.raises(ValueError, match=r"unknown colour \['red'\]"):
        colours.check(["red"])  # unhashable: the same error, not a TypeError from a dict


def test_listing_is_registration_order_and_the_plural_is_named():
    families = Registry("family", "families")
    families.register("b", 1)
    families.register("a", 2)
    assert list(families) == ["b", "a"] == list(families.names())
    with pytest.raises(ValueError, match=r"the families are \['a', 'b'\]"):
        families["c"]
    del families["b"]
    assert list(families) == ["a"]


def test_a_registry_can_wrap_an_existing_dict():
    storage = {"x": 1}
    wrapped = Registry("thing", entries=storage)
    storage["y"] = 2  # e.g. a class registering itself into its own dict
    assert list(wrapped) == ["x", "y"]
    estimators = Registry("estimator", entries=ESTIMATORS)
    assert list(estimators) == list(ESTIMATORS)
    with pytest.raises(ValueError, match="unknown estimator 'iwea' \\(did you mean 'iwae'\\?\\)"):
        estimators["iwea"]


def test_options_come_from_the_signature():
    def factory(shape, *, scale=None, levels=256):
        return None

    assert keyword_options(factory, skip=("shape",)) == {"scale": None, "levels": 256}
    check_options("thing", "t", ["scale"], ["scale", "levels"])
    with pytest.raises(ValueError, match=r"thing 't' takes no option 'sigma'; its options are"):
        check_options("thing", "t", ["sigma"], ["scale"])


@pytest.mark.parametrize(
    ("registry", "noun"),
    [
        (FAMILIES, "family"),
        (KINDS, "model kind"),
        (LIKELIHOODS, "likelihood"),
        (PRIORS, "prior"),
        (DATASETS, "dataset"),
        (TARGETS, "target"),
        (NETWORKS, "network type"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_every_registry_is_a_registry(registry, noun):
    assert isinstance(registry, Registry) and registry.noun == noun
    with pytest.raises(ValueError, match=f"unknown {noun} 'nope'; the "):
        registry["nope"]
