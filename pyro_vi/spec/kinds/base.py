"""The base class of a model kind, and the registry of kinds by name.

A kind is what a spec's ``model.kind`` names. It knows, for its kind of model:

- its spec keys and their validation (:attr:`ModelKind.fields`, :meth:`ModelKind.check`);
- how to build the model and guide from a spec, by calling its public builder in
  :mod:`pyro_vi.architectures` (:meth:`ModelKind.build`): the spec compiles to the call a
  Python user writes;
- what its model and guide offer an estimator (:meth:`ModelKind.capabilities`);
- which metrics apply and which extra ones it has (:meth:`ModelKind.extra_metrics`);
- which figures it draws (:meth:`ModelKind.figures`) and how a comparison describes it.

The spec resolver, the builder, run evaluation, figures and comparisons ask the kind; none of
them compares ``model.kind`` with a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from pyro_vi._registry import Registry
from pyro_vi.spec.capabilities import Capabilities, Missing
from pyro_vi.spec.schema import Field

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pyro_vi.spec.build import Built, DataInfo
    from pyro_vi.spec.resolve import Spec


class ModelKind:
    """One kind of model a spec can name: its keys, build, capabilities, metrics and figures.

    A subclass sets

    - ``name``: the value of ``model.kind``;
    - ``shared_keys``: which of the keys every kind may take it uses, among ``"latent_dim"``,
      ``"likelihood"``, ``"prior"`` and ``"decoder"`` (the resolver validates those);
    - ``fields``: its own keys of ``[model]``, as :class:`~pyro_vi.spec.schema.Field`\\ s;
    - ``guide_keys``: the keys of ``[guide]`` it takes; without ``"family"``, ``no_family``
      says why (it is shown with an unknown-key error);
    - ``max_layers``: how many stochastic layers ``latent_dim`` may list (1 or 2);
    - the flags that decide the metrics and figures: ``has_prior``, ``deterministic_encoder``,
      ``reports_active_units``;

    implements :meth:`build`, and overrides what differs from the defaults below.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    shared_keys: ClassVar[tuple[str, ...]] = ("latent_dim", "likelihood", "decoder")
    fields: ClassVar[Mapping[str, Field]] = {}
    guide_keys: ClassVar[tuple[str, ...]] = ("encoder",)
    no_family: ClassVar[str | None] = None
    max_layers: ClassVar[int] = 1
    #: p(z) is a distribution: the test ELBO is a bound on log p(x), and the prior can be sampled.
    has_prior: ClassVar[bool] = True
    #: q(z | x) is a point mass: only the one-particle ELBO trains it, and IWAE-K equals it.
    deterministic_encoder: ClassVar[bool] = False
    #: Whether the run reports the active units of each latent site.
    reports_active_units: ClassVar[bool] = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # -- the spec ------------------------------------------------------------------------------

    @property
    def model_keys(self) -> tuple[str, ...]:
        """Every key of ``[model]`` this kind takes."""
        return ("kind", *self.shared_keys, *self.fields)

    def complete(self, model: dict[str, Any]) -> dict[str, Any]:
        """The resolved ``[model]`` table with values that depend on others filled in (or left
        out); the default returns it unchanged."""
        return model

    def check(self, spec: Spec, raw: Mapping[str, Any]) -> None:
        """Raise :class:`~pyro_vi.spec.schema.SpecError` for keys that are valid alone but not
        together for this kind. ``raw`` holds the sections as the user wrote them."""

    def latent_dims(self, model: Mapping[str, Any]) -> list[int]:
        """The sizes of the stochastic layers, data side first (one entry for one layer)."""
        dims = model["latent_dim"]
        return list(dims) if isinstance(dims, list | tuple) else [dims]

    def conditional(self, model: Mapping[str, Any]) -> bool:
        """Whether model and guide also take the labels (``model(x, y)``)."""
        return False

    def capabilities(self, spec: Spec) -> Capabilities:
        """What the spec's model and guide offer an estimator (:mod:`pyro_vi.spec.capabilities`).

        The default: a point mass has no spread for several particles to explore, and no
        closed-form KL; any other kind offers everything unless it says otherwise.
        """
        if not self.deterministic_encoder:
            return Capabilities()
        part = f"model.kind = {self.name!r}"
        point_mass = Missing(
            part,
            "its encoder is deterministic",
            "allowed: estimator.name = 'elbo' with num_particles = 1",
        )
        return Capabilities(stochastic_encoder=point_mass, closed_form_kl=point_mass)

    # -- the model -----------------------------------------------------------------------------

    def build(self, spec: Spec, info: DataInfo) -> tuple[nn.Module, nn.Module]:
        """The model and guide that ``spec`` describes, for data shaped ``info``."""
        raise NotImplementedError

    def for_evaluation(self, model: nn.Module, guide: nn.Module) -> tuple[nn.Module, nn.Module]:
        """The model and guide a trained pair is judged as (the default: themselves)."""
        return model, guide

    def latent_sites(self, spec: Spec) -> list[str]:
        """The latent sites, data side first."""
        return ["z"]

    def decoder_site(self, spec: Spec) -> str:
        """The latent site the decoder reads (interpolations decode along it)."""
        return self.latent_sites(spec)[0]

    def scatter_site(self, spec: Spec) -> str:
        """The latent site the scatter plot shows (the top of the hierarchy)."""
        return self.latent_sites(spec)[-1]

    # -- runs ----------------------------------------------------------------------------------

    def extra_metrics(self, built: Built, test: tuple[torch.Tensor, ...]) -> dict[str, Any]:
        """Metrics only this kind has, on the test tensors (the default: none)."""
        return {}

    def figures(
        self,
        built: Built,
        test: tuple[torch.Tensor, ...],
        test_labels: torch.Tensor | None,
        labels: list[int] | None = None,
        num_images: int = 32,
    ) -> dict[str, Figure]:
        """The figures of a trained run, by name: samples (when it has a prior),
        reconstructions, interpolation and the latent scatter plot. Data that are not images
        of 1 or 3 channels (a table ``[N, D]``) get the latent scatter plot only: the other
        figures draw datapoints as images.

        Arguments:
            built: The run's model and guide, as judged (:meth:`for_evaluation`).
            test: The model's arguments for the test set.
            test_labels: Labels to colour the scatter plot by, or ``None``.
            labels: The labels a conditional model generates, one row each.
            num_images: Images per grid.
        """
        # matplotlib is imported when a figure is drawn, not with the spec.
        from pyro_vi import report

        model, guide, spec = built.model, built.guide, built.spec
        first = tuple(item[:num_images] for item in test)
        drawn: dict[str, Figure] = {}
        images = first[0].dim() == 4 and first[0].shape[1] in (1, 3)
        if images and self.has_prior:
            drawn["samples"] = self.sample_grid(built, first[0], labels)
        if images:
            drawn["reconstructions"] = report.reconstruction_grid(model, guide, first)
        if images and len(test[0]) >= 2:
            # A line needs two ends: with one image per grid it runs to the next test image
            # (a test set of one image has no line to draw).
            ends = tuple(item[: max(num_images, 2)] for item in test)
            drawn["interpolation"] = report.interpolation_grid(
                model, guide, ends, site=self.decoder_site(spec)
            )
        drawn["latents"] = report.latent_scatter(
            model,
            guide,
            tuple(item[: report.SCATTER_POINTS] for item in test),
            test_labels,
            site=self.scatter_site(spec),
        )
        return drawn

    def sample_grid(
        self, built: Built, like: torch.Tensor, labels: list[int] | None = None
    ) -> Figure:
        """Prior samples in a grid, one per row of ``like`` (whose values are unused)."""
        from pyro_vi import report

        return report.sample_grid(built.model, like)

    def describe_model(self, spec: Spec) -> str:
        """The model, in a few words for a comparison table."""
        layers = len(self.latent_dims(spec.model))
        return self.name + ("" if layers == 1 else f" ({layers} layers)")

    def describe_guide(self, spec: Spec) -> str:
        """The guide, in a few words for a comparison table."""
        return "deterministic" if self.deterministic_encoder else "amortized"


#: Every model kind by name, in the order the docs list them.
KINDS: Registry[ModelKind] = Registry("model kind")


def register(kind: type[ModelKind]) -> type[ModelKind]:
    """Class decorator: register an instance of ``kind`` under ``kind.name``."""
    KINDS.register(kind.name, kind())
    return kind


def kind_of(spec: Spec) -> ModelKind:
    """The kind of a resolved spec's model."""
    return KINDS[spec.model["kind"]]
