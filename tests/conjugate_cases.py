"""The conjugate reference models as the tests use them: fixed float64 instances and helpers.

Shared by ``tests/models`` and ``tests/estimators`` (pytest puts ``tests/`` on the path, as the
folder of the top-level conftest).
"""

import torch

from pyro_vi.models.conjugate import FactorAnalysis, NormalNormal, NormalNormalGlobal

F64 = torch.float64


def make_conjugate(name, dtype=F64, device="cpu"):
    """The conjugate model ``name`` with fixed parameters (the same values in every dtype)."""
    generator = torch.Generator().manual_seed(1)

    def draw(*shape, uniform=False):
        values = (torch.rand if uniform else torch.randn)(*shape, dtype=F64, generator=generator)
        return values.to(device=device, dtype=dtype)

    if name == "normal_normal":
        return NormalNormal(draw(3), 1.3, 0.7)
    if name == "factor_analysis":
        weight = draw(5, 2)
        noise = draw(5, uniform=True) + 0.2
        return FactorAnalysis(weight, draw(5), noise)
    return NormalNormalGlobal(draw(3), 1.3, 0.7)


def conjugate_and_data(name, num_data, dtype=F64, device="cpu"):
    """The model on ``device`` and ``num_data`` datapoints drawn from it.

    The data are drawn on the CPU, the same draws whatever the device, and moved there.
    """
    model = make_conjugate(name, dtype)
    data = model.sample(num_data)
    if torch.device(device).type == "cpu":
        return model, data
    return make_conjugate(name, dtype, device), data.to(device)


CONJUGATE = ["normal_normal", "factor_analysis", "normal_normal_global"]


def total_evidence(model, x, num_data=None):
    """log p(x) of the (possibly minibatch-scaled) model, one number, differentiable."""
    evidence = model.log_evidence(x, num_data)
    if model.local:
        evidence = (1.0 if num_data is None else num_data / len(x)) * evidence.sum()
    return evidence
