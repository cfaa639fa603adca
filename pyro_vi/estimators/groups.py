"""Which parameters the model uses and which only the guide uses, read off the autograd graph.

Estimators that give the guide its own gradient (DReG with several latent sites, PIWAE) need the
two groups. Reading them from ``pyro.param`` sites alone misses a ``torch.nn.Parameter`` that a
model or guide captures by closure; the autograd graph sees every leaf tensor a loss depends on.

A leaf is a *model* parameter when the model's log-densities reach it without passing through
a sample the guide drew (the path through a sample belongs to the guide); the other leaves the
loss reaches are the guide's own. A parameter used by both counts as the model's: it receives the
bound's ordinary gradient.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from pyro_vi.estimators.core import LogWeights
from pyro_vi.traces import is_latent, is_point_mass, log_prob_of

__all__ = ["leaves", "parameter_groups", "shares_parameters"]


def leaves(
    roots: Iterable[torch.Tensor], stop: Iterable[torch.Tensor] = ()
) -> dict[int, torch.Tensor]:
    """Leaf tensors that require grad and that ``roots`` depend on, by id, not following the
    graph through the tensors in ``stop``."""
    stop = list(stop)
    stop_nodes = {t.grad_fn for t in stop if t.grad_fn is not None}
    stop_leaves = {id(t) for t in stop if t.grad_fn is None}
    found: dict[int, torch.Tensor] = {}
    pending = []
    for root in roots:
        if not isinstance(root, torch.Tensor) or not root.requires_grad:
            continue
        if root.grad_fn is None:
            if id(root) not in stop_leaves:
                found[id(root)] = root
        else:
            pending.append(root.grad_fn)
    seen = set()
    while pending:
        node = pending.pop()
        if node in seen or node in stop_nodes:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # an AccumulateGrad node holds its leaf
        if variable is not None and id(variable) not in stop_leaves:
            found[id(variable)] = variable
        pending.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
    return found


def parameter_groups(
    weights: LogWeights,
    surrogates: Iterable[torch.Tensor],
    *,
    point_masses_are_parameters: bool = False,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(parameters the model uses, parameters only the guide uses) among the leaves that
    ``surrogates`` depend on.

    With ``point_masses_are_parameters``, the value of a ``Delta`` guide site (a MAP estimate)
    is no sample: a parameter that reaches the model through it is the model's, as if the model
    read it directly.
    """
    model_roots, samples = [], []
    for run in weights.passes:
        for site in run.model_trace.nodes.values():
            if site["type"] == "sample":
                model_roots.append(log_prob_of(site))
        for site in run.guide_trace.nodes.values():
            if not is_latent(site) or not isinstance(site["value"], torch.Tensor):
                continue
            if point_masses_are_parameters and is_point_mass(site["fn"]):
                continue
            samples.append(site["value"])
    model = leaves(model_roots, stop=samples)
    every = leaves(surrogates)
    # Param-store parameters first, in the order the program reads them; closure-captured
    # leaves after, in the order found: a stable order for callers that slice the groups.
    order = {}
    for run in weights.passes:
        for trace in (run.model_trace, run.guide_trace):
            for site in trace.nodes.values():
                if site["type"] == "param":
                    order.setdefault(id(_unconstrained(site["value"])), len(order))
    rank = {key: order.get(key, len(order) + i) for i, key in enumerate(every)}
    ranked = sorted(every, key=rank.__getitem__)
    model_group = [every[key] for key in ranked if key in model]
    model_group += [tensor for key, tensor in model.items() if key not in every]
    return model_group, [every[key] for key in ranked if key not in model]


def shares_parameters(weights: LogWeights) -> bool:
    """Whether a ``pyro.param`` (or module parameter registered with Pyro) appears in both the
    model's and the guide's traces. Cheap: it reads the param sites, not the autograd graph."""

    def ids(trace: object) -> set[int]:
        return {
            id(_unconstrained(site["value"]))
            for site in trace.nodes.values()
            if site["type"] == "param"
        }

    model = set().union(*(ids(run.model_trace) for run in weights.passes))
    guide = set().union(*(ids(run.guide_trace) for run in weights.passes))
    return bool(model & guide)


def _unconstrained(value: torch.Tensor) -> torch.Tensor:
    unconstrained = getattr(value, "unconstrained", None)
    return unconstrained() if callable(unconstrained) else value
