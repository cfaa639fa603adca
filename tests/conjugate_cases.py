"""The conjugate reference models as the tests use them: fixed float64 instances and helpers.

Shared by ``tests/models`` and ``tests/estimators`` (pytest puts ``tests/`` on the path, as the
folder of the top-level conftest).
"""

import torch

from pyro_vi.models.conjugate import FactorAnalysis, NormalNormal, NormalNormalGlobal

F64 = torch.float64


def make_conjugate(name):
    generator = torch.Generator().manual_seed(1)
    if name == "normal_normal":
        return NormalNormal(torch.randn(3, dtype=F64, generator=generator), 1.3, 0.7)
    if name == "factor_analysis":
        weight = torch.randn(5, 2, dtype=F64, generator=generator)
        noise = torch.rand(5, dtype=F64, generator=generator) + 0.2
        return FactorAnalysis(weight, torch.randn(5, dtype=F64, generator=generator), noise)
    return NormalNormalGlobal(torch.randn(3, dtype=F64, generator=generator), 1.3, 0.7)


CONJUGATE = ["normal_normal", "factor_analysis", "normal_normal_global"]


def total_evidence(model, x, num_data=None):
    """log p(x) of the (possibly minibatch-scaled) model, one number, differentiable."""
    evidence = model.log_evidence(x, num_data)
    if model.local:
        evidence = (1.0 if num_data is None else num_data / len(x)) * evidence.sum()
    return evidence
