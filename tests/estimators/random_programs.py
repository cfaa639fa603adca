"""Random Pyro programs with a known evidence and a known exact posterior, for property tests.

A program is a forest of Gaussian sites: site c draws ``N(a_c * parent + b_c, s_c^2)`` (a root
draws ``N(b_c, s_c^2)``), latent or observed, inside a random subset of up to three nested
plates (fixed dims in a random order, or automatic dims), scalar or with an event dimension, as
users write hierarchical models. A child lies in every plate of its parent, so each latent entry
has one parent entry and the model is a linear-Gaussian tree per entry. Then

- log p(x) is exact by passing Gaussian messages from the leaves up (``evidence``);
- the exact posterior factorizes top-down, q(c | parent, x) ∝ p(c | parent) prod_children
  m_child(c), each a Gaussian (``guide``), so log p(x, z) - log q(z) = log p(x) for every z.

Messages are ``log m(v) = -lam v^2 / 2 + eta v + kappa`` elementwise, in the *full layout*: a
tensor with one axis per plate dim (the plate's size where the site lies in it, else 1) and the
event axis. Integrating a child c ~ N(mu, s^2) against its incoming message gives, in mu,
lam' = lam / (1 + s^2 lam), eta' = eta / (1 + s^2 lam),
kappa' = kappa - log(1 + s^2 lam) / 2 + eta^2 / (2 (1/s^2 + lam)); an observed child is the
message (1/s^2, x/s^2, -x^2/(2 s^2) - log s - log(2 pi)/2); substituting mu = a v + b gives the
message to the parent, summed over the plates the child has and the parent has not.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from hypothesis import strategies as st
from pyro import poutine

from pyro_vi.guides.families.diagonal import NoiseNormal

F64 = torch.float64
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class Site:
    name: str
    parent: int | None  # index of an earlier latent site
    plates: tuple[int, ...]  # indices of the plates it lies in, in nesting order
    observed: bool
    coef: float
    shift: float
    scale: float
    weight: float = 1.0  # an observed site's poutine.scale factor
    masked: bool = False  # an observed site masked by a random pattern (fn.mask)


@dataclass(frozen=True)
class Mixture:
    """An observed site ``mix`` whose mean is chosen by a model-only discrete latent ``c``,
    marked ``infer={"enumerate": "parallel"}``: x | c ~ N(locs[c], scale^2) per entry (every
    event component), c ~ Categorical(probs). Estimators sum c out exactly."""

    plates: tuple[int, ...]
    probs: tuple[float, ...]
    locs: tuple[float, ...]
    scale: float


@dataclass(frozen=True)
class Program:
    sizes: tuple[int, ...]  # plate sizes, in nesting order
    dims: tuple[int, ...] | None  # each plate's dim, or None for automatic dims
    event: int  # 0: scalar sites; else the size of one event dimension
    sites: tuple[Site, ...]
    expand: bool  # the model expands its distributions to the plates itself
    subsample: tuple[int, int] | None = None  # (plate, subsample size): every site lies in it
    reparameterized: bool = True  # False: the guide's Normals without rsample (score gradients)
    noise_scored: bool = False  # the guide's Normals score their own samples from the noise
    guide_order: tuple[int, ...] | None = None  # the guide's order of the latents (parents first)
    factor: float | None = None  # a pyro.factor outside every plate (a constant term of log p)
    deterministic: bool = False  # the model records pyro.deterministic sites
    mixture: Mixture | None = None  # an observation with an enumerated discrete latent

    # -- shapes -------------------------------------------------------------------------------

    @property
    def nesting(self) -> int:
        return len(self.sizes)

    def dim_of(self, plate: int) -> int:
        return self.dims[plate] if self.dims is not None else -(plate + 1)

    def layout(self, site: Site | Mixture) -> tuple[int, ...]:
        """The full layout: one axis per plate dim (-nesting .. -1), then the event axis."""
        shape = [1] * self.nesting
        for plate in site.plates:
            shape[self.nesting + self.dim_of(plate)] = self.sizes[plate]
        return tuple(shape) + ((self.event,) if self.event else ())

    def batch_shape(self, site: Site | Mixture) -> tuple[int, ...]:
        """The batch shape a user writes: the layout without its leading 1s (no event axis)."""
        shape = list(self.layout(site)[: self.nesting])
        while shape and shape[0] == 1:
            shape.pop(0)
        return tuple(shape)

    def run_shape(self, site: Site | Mixture) -> tuple[int, ...]:
        """The batch shape of the site in a run: the subsampled plate has the minibatch's size."""
        shape = list(self.batch_shape(site))
        if self.subsample and self.subsample[0] in site.plates:
            shape[len(shape) + self.dim_of(self.subsample[0])] = self.subsample[1]
        return tuple(shape)

    def event_shape(self) -> tuple[int, ...]:
        return (self.event,) if self.event else ()

    def make_plates(self) -> list:
        """The plates, made once per run of a program (as users do: a plate's subsample site
        is recorded when it is made) and entered by every site that lies in them."""
        made = []
        for i, size in enumerate(self.sizes):
            sub = self.subsample[1] if self.subsample and self.subsample[0] == i else None
            dim = None if self.dims is None else self.dims[i]
            made.append(pyro.plate(f"p{i}", size, subsample_size=sub, dim=dim))
        return made

    @contextlib.contextmanager
    def plates(self, site: Site | Mixture, made: list):
        """Enter the site's plates; yields a function taking a tensor in the site's batch
        layout to its rows of the subsampled plate's minibatch (the identity otherwise)."""
        with contextlib.ExitStack() as stack:
            select = _identity
            for plate in site.plates:
                index = stack.enter_context(made[plate])
                if self.subsample and plate == self.subsample[0]:
                    select = _selector(len(self.batch_shape(site)) + self.dim_of(plate), index)
            yield select

    def evidence_per_entry(self, data: dict[str, torch.Tensor]) -> torch.Tensor:
        """log p(x) of each entry of the subsampled plate ``[N]`` (every site lies in it, so
        the program factorizes over its entries)."""
        _, _, roots = self._pass(data)
        axis = self.nesting + self.dim_of(self.subsample[0])
        total = 0
        for kappa in roots:
            dims = [d for d in range(kappa.dim()) if d != axis]
            total = total + (kappa.sum(dims) if dims else kappa)
        return total

    # -- data ---------------------------------------------------------------------------------

    def data(self, seed: int) -> dict[str, torch.Tensor]:
        """Each observed site's values, and ``"<name>_mask"`` for a masked one."""
        generator = torch.Generator().manual_seed(seed)
        data = {}
        for site in self.sites:
            if site.observed:
                shape = self.batch_shape(site) + self.event_shape()
                data[site.name] = torch.randn(shape, generator=generator, dtype=F64)
                if site.masked:
                    keep = torch.rand(self.batch_shape(site), generator=generator) < 0.6
                    data[site.name + "_mask"] = keep
        if self.mixture is not None:
            shape = self.batch_shape(self.mixture) + self.event_shape()
            data["mix"] = 2 * torch.randn(shape, generator=generator, dtype=F64)
        return data

    def _mixture_terms(self, data: dict[str, torch.Tensor]) -> torch.Tensor:
        """log sum_c p(c) p(x | c) of each entry of the mixture site, in its full layout (the
        event axis kept with size 1)."""
        mix = self.mixture
        x = data["mix"].reshape(self.layout(mix))
        locs = torch.tensor(mix.locs, dtype=F64).reshape((-1,) + (1,) * x.dim())
        log_px = dist.Normal(locs, mix.scale).log_prob(x)  # [C, *layout]
        if self.event:
            log_px = log_px.sum(-1, keepdim=True)
        log_pc = torch.tensor(mix.probs, dtype=F64).log().reshape((-1,) + (1,) * x.dim())
        return torch.logsumexp(log_pc + log_px, dim=0)

    def _weight(self, site: Site, data: dict[str, torch.Tensor]) -> torch.Tensor:
        """An observed site's scale times its mask, in its full layout."""
        weight = torch.full(self.layout(site)[: self.nesting], site.weight, dtype=F64)
        if site.masked:
            mask = data[site.name + "_mask"].reshape(weight.shape)
            weight = weight * mask
        return weight.reshape(self.layout(site)[: self.nesting] + (1,) * bool(self.event))

    # -- exact inference ----------------------------------------------------------------------

    def messages(self, data: dict[str, torch.Tensor]) -> tuple[dict, torch.Tensor]:
        """(incoming (lam, eta, kappa) of each latent site in its full layout, log p(x))."""
        incoming, evidence, _ = self._pass(data)
        return incoming, evidence

    def _pass(self, data: dict[str, torch.Tensor]) -> tuple[dict, torch.Tensor, list]:
        """The messages, log p(x), and each root's log-normalizer in its full layout."""
        roots = []
        incoming = {
            i: [torch.zeros(self.layout(s), dtype=F64) for _ in range(3)]
            for i, s in enumerate(self.sites)
            if not s.observed
        }
        evidence = torch.zeros((), dtype=F64)
        for i in reversed(range(len(self.sites))):
            site = self.sites[i]
            var = site.scale**2
            if site.observed:
                x = data[site.name].reshape(self.layout(site))
                lam = torch.full_like(x, 1 / var)
                eta = x / var
                kappa = -0.5 * x**2 / var - math.log(site.scale) - HALF_LOG_2PI
                weight = self._weight(site, data)  # log p(x | .) scaled and masked
                lam, eta, kappa = weight * lam, weight * eta, weight * kappa
            else:
                lam_in, eta_in, kappa_in = incoming[i]
                lam = lam_in / (1 + var * lam_in)
                eta = eta_in / (1 + var * lam_in)
                kappa = (
                    kappa_in
                    - 0.5 * torch.log1p(var * lam_in)
                    + eta_in**2 / (2 * (1 / var + lam_in))
                )
            a, b = (site.coef if site.parent is not None else 0.0), site.shift
            kappa_v = kappa - 0.5 * lam * b**2 + eta * b
            if site.parent is None:
                evidence = evidence + kappa_v.sum()
                roots.append(kappa_v)
                continue
            lam_v, eta_v = a**2 * lam, a * (eta - lam * b)
            target = self.layout(self.sites[site.parent])
            summed = [d for d in range(len(target)) if target[d] == 1 and lam.shape[d] > 1]
            for k, term in enumerate((lam_v, eta_v, kappa_v)):
                if summed:
                    term = term.sum(summed, keepdim=True)
                incoming[site.parent][k] = incoming[site.parent][k] + term
        if self.factor is not None:
            evidence = evidence + self.factor
        if self.mixture is not None:
            terms = self._mixture_terms(data)
            evidence = evidence + terms.sum()
            roots.append(terms)
        return incoming, evidence, roots

    # -- the Pyro programs --------------------------------------------------------------------

    def _loc(self, site: Site, values: dict[str, torch.Tensor]) -> torch.Tensor:
        loc = torch.full(self.event_shape(), site.shift, dtype=F64)
        if site.parent is not None:
            loc = site.coef * values[self.sites[site.parent].name] + loc
        return loc

    def model(self, data: dict[str, torch.Tensor]):
        def model():
            values, made = {}, self.make_plates()
            for site in self.sites:
                with self.plates(site, made) as select:
                    fn = dist.Normal(self._loc(site, values), torch.tensor(site.scale, dtype=F64))
                    if self.expand:
                        shape = torch.broadcast_shapes(
                            fn.batch_shape, self.run_shape(site) + self.event_shape()
                        )
                        fn = fn.expand(shape)
                    if self.event:
                        fn = fn.to_event(1)
                    if site.observed:
                        if site.masked:
                            fn = fn.mask(select(data[site.name + "_mask"]))
                        with poutine.scale(scale=site.weight):
                            pyro.sample(site.name, fn, obs=select(data[site.name]))
                    else:
                        values[site.name] = pyro.sample(site.name, fn)
                        if self.deterministic:
                            pyro.deterministic(site.name + "_twice", 2 * values[site.name])
            if self.factor is not None:
                pyro.factor("constant", torch.tensor(self.factor, dtype=F64))
            if self.mixture is not None:
                mix = self.mixture
                with self.plates(mix, made) as select:
                    probs = torch.tensor(mix.probs, dtype=F64)
                    c = pyro.sample("c", dist.Categorical(probs), infer={"enumerate": "parallel"})
                    loc = torch.tensor(mix.locs, dtype=F64)[c]
                    if self.event:
                        loc = loc.unsqueeze(-1).expand(*loc.shape, self.event)
                    fn = dist.Normal(loc, torch.tensor(mix.scale, dtype=F64))
                    if self.event:
                        fn = fn.to_event(1)
                    pyro.sample("mix", fn, obs=select(data["mix"]))

        return model

    def guide(self, data: dict[str, torch.Tensor], trainable: bool = False):
        """The exact posterior, sampled top-down. With ``trainable``, each latent's loc and
        scale carry a ``pyro.param`` (a shift and a log-scale, both 0: still exact), so that
        estimators compute gradients for the guide."""
        incoming, _ = self.messages(data)

        order = self.guide_order
        if order is None:
            order = [i for i, site in enumerate(self.sites) if not site.observed]

        def guide():
            values, made = {}, self.make_plates()
            for i in order:
                site = self.sites[i]
                lam_in, eta_in, _ = incoming[i]
                shape = self.batch_shape(site) + self.event_shape()
                lam_in, eta_in = lam_in.reshape(shape), eta_in.reshape(shape)
                with self.plates(site, made) as select:
                    lam_in, eta_in = select(lam_in), select(eta_in)
                    precision = 1 / site.scale**2 + lam_in
                    loc = (self._loc(site, values) / site.scale**2 + eta_in) / precision
                    scale = precision.rsqrt()
                    if trainable:
                        zero = torch.zeros(self.event_shape(), dtype=F64)
                        loc = loc + pyro.param(site.name + "_shift", zero)
                        scale = scale * pyro.param(site.name + "_log_scale", zero).exp()
                    normal = dist.Normal if self.reparameterized else ScoreNormal
                    if self.reparameterized and self.noise_scored:
                        normal = NoiseNormal  # the diagonal guide family's distribution
                    fn = normal(loc, scale)
                    if self.event:
                        fn = fn.to_event(1)
                    values[site.name] = pyro.sample(site.name, fn)

        return guide


class ScoreNormal(dist.Normal):
    """A Normal without ``rsample``: estimators must use score-function gradients. (A class
    attribute rather than ``has_rsample_(False)``, which Pyro's plates cannot broadcast under
    ``to_event``: the expanded ``Independent`` has no setter for it.)"""

    has_rsample = False


def _identity(value: torch.Tensor) -> torch.Tensor:
    return value


def _selector(axis: int, index: torch.Tensor):
    def select(value: torch.Tensor) -> torch.Tensor:
        return value.index_select(axis, index)

    return select


@st.composite
def programs(draw, max_sites: int = 5, subsampled: bool = False) -> Program:
    """A random program (module docstring); with ``subsampled``, one plate holds every site and
    is subsampled (a minibatch of its entries, scaled by N / B)."""
    nesting = draw(st.integers(1 if subsampled else 0, 3))
    sizes = [draw(st.integers(1, 4)) for _ in range(nesting)]
    automatic = draw(st.booleans())
    dims = None if automatic else tuple(draw(st.permutations(range(-nesting, 0))))
    subsample = None
    if subsampled:
        # Under automatic dims every site's plates are a prefix, so plate 0 holds them all.
        plate = 0 if automatic else draw(st.integers(0, nesting - 1))
        sizes[plate] = draw(st.integers(2, 6))
        subsample = (plate, draw(st.integers(1, sizes[plate] - 1)))
    sizes = tuple(sizes)
    count = draw(st.integers(1, max_sites))
    sites: list[Site] = []
    for i in range(count):
        latent = [j for j, s in enumerate(sites) if not s.observed]
        parent = draw(st.sampled_from([None, *latent])) if latent else None
        base = sites[parent].plates if parent is not None else ()
        if subsample:
            base = tuple(sorted({*base, subsample[0]}))
        if automatic:
            # Automatic dims are consistent between sites only for nested prefixes.
            depth = draw(st.integers(max(len(base), 1 if subsample else 0), nesting))
            plates = tuple(range(depth))
        else:
            extra = draw(st.sets(st.sampled_from(range(nesting))) if nesting else st.just(set()))
            plates = tuple(sorted(set(base) | extra))
        sites.append(
            Site(
                name=f"s{i}",
                parent=parent,
                plates=plates,
                observed=i > 0 and draw(st.booleans()),
                coef=draw(st.floats(-1.5, 1.5)),
                shift=draw(st.floats(-1.0, 1.0)),
                scale=draw(st.floats(0.5, 2.0)),
                weight=draw(st.sampled_from([1.0, 1.0, 0.5, 3.0])),
                masked=draw(st.booleans()),
            )
        )
    return Program(
        sizes=sizes,
        dims=dims,
        event=draw(st.sampled_from([0, 2])),
        sites=tuple(sites),
        expand=draw(st.booleans()),
        subsample=subsample,
        reparameterized=draw(st.booleans()),
        noise_scored=draw(st.booleans()),
        guide_order=draw(_topological_orders(sites)),
        factor=draw(st.one_of(st.none(), st.floats(-3.0, 3.0))),
        deterministic=draw(st.booleans()),
        mixture=draw(st.one_of(st.none(), _mixtures(nesting, automatic, subsample))),
    )


@st.composite
def _mixtures(draw, nesting: int, automatic: bool, subsample: tuple | None) -> Mixture:
    """A mixture observation in random plates (the subsampled one included)."""
    base = {subsample[0]} if subsample else set()
    if automatic:
        plates = tuple(range(draw(st.integers(len(base), nesting))))
    else:
        extra = draw(st.sets(st.sampled_from(range(nesting))) if nesting else st.just(set()))
        plates = tuple(sorted(base | extra))
    count = draw(st.integers(2, 3))
    weights = [draw(st.floats(0.2, 1.0)) for _ in range(count)]
    return Mixture(
        plates=plates,
        probs=tuple(w / sum(weights) for w in weights),
        locs=tuple(draw(st.floats(-3.0, 3.0)) for _ in range(count)),
        scale=draw(st.floats(0.5, 2.0)),
    )


@st.composite
def _topological_orders(draw, sites: list[Site]) -> tuple[int, ...]:
    """A random order of the latent sites in which every parent comes before its children."""
    left = [i for i, site in enumerate(sites) if not site.observed]
    order: list[int] = []
    while left:
        ready = [i for i in left if sites[i].parent is None or sites[i].parent in order]
        chosen = draw(st.sampled_from(ready))
        order.append(chosen)
        left.remove(chosen)
    return tuple(order)
