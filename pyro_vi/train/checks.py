"""Checks of a user's program and data before :func:`~pyro_vi.train.fit` trains: that model and
guide take the data's fields, that a program given ``num_data`` scales by it, that the guide
samples the model's latents (Pyro's own ELBOs only warn), that an autoguide can take minibatches.

Each turns what would be a deep error from torch or Pyro, or a silently different bound, into a
``ValueError``/``TypeError`` that names the problem and the remedy. They run the program on the
first batch, on forks of the random number generators and with the networks in eval mode, so
training is the same with or without them.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO

from pyro_vi import estimators
from pyro_vi._callables import eval_mode

__all__ = ["accepts_num_data", "check_call", "check_local_guide", "check_program"]


def _signature(fn: Callable) -> inspect.Signature | None:
    """The call signature of a model or guide (an ``nn.Module``'s is its ``forward``'s)."""
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


def _data_hint(data: Any) -> str:
    """How to give the program the arguments it takes, for the data the user passed."""
    if isinstance(data, list):
        return (
            "; a list is read as the model's positional arguments, one tensor each: for a list of "
            "datapoints, pass torch.stack(the_list) or pyro_vi.data.as_batchable(the_list)"
        )
    if isinstance(data, torch.utils.data.DataLoader):
        data = data.dataset
    if isinstance(data, torch.utils.data.Dataset) and not hasattr(data, "to"):
        return (
            "; each field of the dataset's items is one positional argument: keep the ones the "
            "model takes with pyro_vi.data.as_batchable(dataset, fields=0) (or fields=[...])"
        )
    return ""


def check_call(
    name: str, data: Any, count: int, kwargs: dict, model: Callable, guide: Callable
) -> None:
    """Model and guide must take the ``count`` data fields as positional arguments (and
    ``kwargs``): checked on their signatures, before a deep TypeError from inside Pyro."""
    for role, fn in (("model", model), ("guide", guide)):
        signature = _signature(fn)
        if signature is None:
            continue
        try:
            signature.bind(*range(count), **kwargs)
        except TypeError as error:
            keywords = f" and the keyword(s) {sorted(kwargs)}" if kwargs else ""
            raise TypeError(
                f"{name} holds {count} field(s), passed to the {role} as {count} positional "
                f"argument(s){keywords}, but the {role} takes {signature} ({error})"
                f"{_data_hint(data)}"
            ) from None


def accepts_num_data(fn: Callable) -> bool:
    signature = _signature(fn)
    if signature is None:
        return False
    parameters = signature.parameters.values()
    return any(p.name == "num_data" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def check_local_guide(guide: Callable, num_data: int, batch_size: int) -> None:
    """A LocalGuide reads each datapoint's own parameters by position, which fit's minibatches
    do not carry: it trains on the whole data set at once."""
    from pyro_vi.guides.local import LocalGuide

    if isinstance(guide, LocalGuide) and batch_size < num_data:
        raise ValueError(
            f"batch_size={batch_size} is below the {num_data} datapoints, but a LocalGuide (free "
            "parameters per datapoint) needs every datapoint in each step under fit, which does "
            f"not pass the minibatch's positions: use batch_size={num_data} or more"
        )


def _scale(site: dict) -> float | None:
    """A site's scale as a number (``None`` when it is a tensor of several values)."""
    scale = site["scale"]
    if isinstance(scale, torch.Tensor):
        return float(scale) if scale.numel() == 1 else None
    return float(scale)


def check_program(
    model: Callable, guide: Callable, batch: tuple, kwargs: dict, loss: ELBO, total: int
) -> None:
    """Runs of the guide and the model replayed on it, on the first batch, before training:

    - when fit passes ``num_data = N`` (both accept it, perhaps through ``**kwargs``), the model
      must scale its minibatch of B < N datapoints by N / B and the guide its local latents
      alike: a program that ignores it would train on a different bound and report a loss
      B / N of the true one. Checked by running the program with ``num_data = N`` and with
      ``num_data = B``: some site of the model must change its scale, and a latent's scale must
      change in the guide exactly when it changes in the model;
    - with a Pyro ELBO (which only warns), every latent of the model needs a guide site of the
      same name and the guide no latent the model lacks; this package's estimators check that
      themselves, among much else.

    The runs draw from forks of the random number generators, with the networks in eval mode
    (batch-norm statistics untouched): training is unchanged by them.
    """
    num_data = kwargs.get("num_data")
    size = len(batch[0])
    _check_autoguide_takes_minibatches(model, guide, batch, kwargs, total)
    checks_scale = num_data is not None and size < num_data
    if isinstance(loss, estimators.Estimator) and not checks_scale:
        return
    model_trace, guide_trace = _traces(model, guide, batch, kwargs)
    if not isinstance(loss, estimators.Estimator):
        _check_sites_match(model_trace, guide_trace)
    if checks_scale:
        unscaled = _traces(model, guide, batch, {**kwargs, "num_data": size})
        _check_num_data((model_trace, guide_trace), unscaled, num_data, size)


def _check_autoguide_takes_minibatches(
    model: Callable, guide: Callable, batch: tuple, kwargs: dict, total: int
) -> None:
    """A Pyro autoguide makes its parameters at its first call, for the latents it then sees: a
    latent in a plate of the minibatch's size (``pyro.plate("data", len(x))``) gets one row of
    parameters per *position* in the minibatch, not per datapoint, and a batch of another size
    fails deep in torch. Run on one datapoint fewer, such a guide is refused by name."""
    from pyro.infer.autoguide import AutoGuide

    size = len(batch[0])
    if not isinstance(guide, AutoGuide) or size >= total or size < 2:
        return
    try:
        _traces(model, guide, tuple(item[: size - 1] for item in batch), kwargs)
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"the guide {type(guide).__name__} made its parameters for the first minibatch of "
            f"{size} datapoints and fails on {size - 1} ({str(error).splitlines()[0][:120]}): "
            "an autoguide over latents local to the datapoints needs the model's data plate to "
            f"subsample the whole data set, pyro.plate('data', {total}, subsample=index) with "
            f"the minibatch's indices, or batch_size >= {total} (the whole data each step)"
        ) from None


def _traces(
    model: Callable, guide: Callable, batch: tuple, kwargs: dict
) -> tuple[poutine.Trace, poutine.Trace]:
    """The model's and the guide's traces of one run, plates' index sites left out, with no
    effect on the random number generators, the parameter store's gradients or the networks'
    batch-norm statistics."""
    from pyro.poutine.util import prune_subsample_sites

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with (
        torch.no_grad(),
        torch.random.fork_rng(devices=devices),
        eval_mode(model, guide),
        poutine.block(),
        pyro.validation_enabled(False),
    ):
        guide_trace = poutine.trace(guide).get_trace(*batch, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *batch, **kwargs
        )
    return prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace)


def _check_sites_match(model_trace: poutine.Trace, guide_trace: poutine.Trace) -> None:
    """Every latent of the model has a guide site of its name (but those the model marks for
    enumeration, which TraceEnum_ELBO sums out, and point masses, whose log-density is 0
    whatever the guide), and the guide samples no latent the model lacks (but its
    ``is_auxiliary`` sites)."""
    from pyro_vi.traces import is_point_mass

    def latents(trace: poutine.Trace) -> dict[str, dict]:
        return {
            name: site
            for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"]
        }

    model_latents = {
        name
        for name, site in latents(model_trace).items()
        if not site["infer"].get("enumerate") and not is_point_mass(site["fn"])
    }
    guide_latents = latents(guide_trace)
    for name in sorted(model_latents - set(guide_latents)):
        raise ValueError(
            f"the model samples latent site {name!r} but the guide does not; every latent of the "
            f"model needs a guide site of the same name (the guide has {sorted(guide_latents)}), "
            "or, for a discrete one that the loss sums out, infer={'enumerate': 'parallel'}"
        )
    for name, site in sorted(guide_latents.items()):
        if name not in model_trace.nodes and not site["infer"].get("is_auxiliary"):
            raise ValueError(
                f"the guide samples site {name!r} but the model has no site of that name (the "
                f"model's latent sites are {sorted(model_latents)}); a guide-only variable must "
                "be marked infer={'is_auxiliary': True}"
            )


def _check_num_data(
    scaled: tuple[poutine.Trace, poutine.Trace],
    unscaled: tuple[poutine.Trace, poutine.Trace],
    num_data: int,
    size: int,
) -> None:
    """``scaled``: the (model, guide) traces run with ``num_data = N``; ``unscaled``: with
    ``num_data = B``, the minibatch's own size. A site's scale that differs between the two
    reads ``num_data``."""
    remedy = (
        "declare the data plate with it, pyro.plate('data', num_data, subsample=torch.arange("
        "len(x))), in both; or let neither take num_data (nor **kwargs, e.g. wrap it: "
        "fit(lambda x: model(x), ...)) for an unscaled minibatch bound"
    )

    def reads_num_data(name: str, role: int) -> bool | None:
        """Whether the site's scale depends on num_data (``None``: not a sample site of both
        runs, or a scale of several values)."""
        sites = [traces[role].nodes.get(name) for traces in (scaled, unscaled)]
        if any(site is None or site["type"] != "sample" for site in sites):
            return None
        values = [_scale(site) for site in sites]
        if None in values:
            return None
        return not math.isclose(values[0], values[1])

    model_sites = [n for n, s in scaled[0].nodes.items() if s["type"] == "sample"]
    reads = {name: reads_num_data(name, 0) for name in model_sites}
    if not any(reads.values()) and None not in reads.values():
        raise ValueError(
            f"fit passes num_data={num_data} to the model and the guide, since both accept it, "
            f"but no site of the model changes its scale when num_data goes from {size} (the "
            f"minibatch's size) to {num_data} (the model ignores it, through **kwargs "
            f"perhaps), so the minibatch bound and the reported loss would be wrong; {remedy}"
        )
    for name, site in scaled[1].nodes.items():
        if site["type"] != "sample" or site["is_observed"] or reads.get(name) is None:
            continue
        in_guide = reads_num_data(name, 1)
        if in_guide is not None and in_guide != reads[name]:
            ignoring, reading = ("guide", "model") if reads[name] else ("model", "guide")
            raise ValueError(
                f"fit passes num_data={num_data} to the model and the guide, since both accept "
                f"it, but at latent site {name!r} the {reading} scales the minibatch by "
                f"num_data / batch and the {ignoring} does not: the {ignoring} ignores "
                f"num_data (through **kwargs perhaps); {remedy}"
            )
