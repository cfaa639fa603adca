"""Bad input gets a ValueError/TypeError naming the argument, what it got and what is allowed."""

import pytest
import torch

from pyro_vi.guides.families import make_family


@pytest.mark.parametrize(
    ("name", "dim", "features", "options", "error", "match"),
    [
        ("gaussian", 3, 5, {}, ValueError, r"unknown family 'gaussian'.*'diagonal'"),
        (None, 3, 5, {}, ValueError, r"unknown family None"),
        ("diagonal", 3, 5, {"rank": 2}, ValueError, r"takes no option 'rank'.*\['min_scale'\]"),
        ("iaf", 3, 5, {"num_step": 2}, ValueError, r"no option 'num_step'.*'num_steps'"),
        ("diagonal", 0, 5, {}, ValueError, r"dim must be an integer >= 1, got 0"),
        ("planar", 2.0, 5, {}, TypeError, r"dim must be an integer, got 2.0"),
        ("full_rank", 3, 0, {}, ValueError, r"features must be an integer >= 1, got 0"),
        ("diagonal", 3, 5, {"min_scale": -1.0}, ValueError, r"min_scale must be >= 0"),
        ("low_rank", 3, 5, {"rank": 4}, ValueError, r"rank must be at most dim=3, got 4"),
        ("low_rank", 3, 5, {"rank": 0}, ValueError, r"rank must be an integer >= 1, got 0"),
        ("mixture", 3, 5, {"components": 0}, ValueError, r"components must be .* >= 1, got 0"),
        ("affine_coupling", 1, 5, {}, ValueError, r"dim must be >= 2 for affine_coupling.*got 1"),
        ("radial", 3, 5, {"num_steps": 0}, ValueError, r"num_steps must be .* >= 1, got 0"),
        ("sylvester", 3, 5, {"num_reflections": 0}, ValueError, r"num_reflections must be"),
        ("householder", 3, 5, {"num_reflections": 1.5}, TypeError, r"num_reflections must be"),
        ("planar", 3, 5, {"hidden": []}, TypeError, r"hidden must be a non-empty list"),
        ("planar", 3, 5, {"hidden": 16}, TypeError, r"hidden must be a non-empty list"),
        ("radial", 3, 5, {"hidden": [8, 0]}, ValueError, r"hidden\[1\] must be .* >= 1, got 0"),
        ("iaf", 4, 5, {"hidden": [3]}, ValueError, r"at least dim=4 units, got hidden=\[3\]"),
        ("spline_ar", 3, 5, {"count_bins": 1}, ValueError, r"count_bins must be .* >= 2, got 1"),
        ("spline_ar", 3, 5, {"count_bins": 2000}, ValueError, r"count_bins must be at most 1000"),
        ("spline_ar", 3, 5, {"bound": 0.0}, ValueError, r"bound must be > 0"),
    ],
)
def test_bad_configuration(name, dim, features, options, error, match):
    with pytest.raises(error, match=match):
        make_family(name, dim, features, **options)


def test_bad_context():
    family = make_family("diagonal", 3, 5)
    with pytest.raises(ValueError, match=r"context must have shape \[..., 5\].*got \(2, 4\)"):
        family(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"context must have shape"):
        family(torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"context must be a floating-point tensor"):
        family([0.0] * 5)
    with pytest.raises(TypeError, match=r"context must be a floating-point tensor"):
        family(torch.zeros(2, 5, dtype=torch.long))
