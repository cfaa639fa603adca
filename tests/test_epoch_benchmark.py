"""The epoch-time benchmark beside pythae runs, and its hand-written loop trains the objective
pyro_vi's ``meanfield`` estimator computes (else its ratios would compare different work).

The objective is checked in float64 with identical parameters and identical noise: the two sides
sum the same ~850 terms per image in a different order, which leaves ~1e-13 relative, so rtol
1e-10 still catches a missing or extra term (a KL constant of 25 nats would be 2e-1 relative).
"""

import importlib.util
import json
from pathlib import Path

import pyro
import pytest
import torch

from pyro_vi import estimators
from pyro_vi.architectures import iwae_mlp_vae

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "epoch_vs_pythae", BENCHMARKS / "epoch_vs_pythae.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_handwritten_loss_is_the_meanfield_objective(bench):
    pyro.set_rng_seed(0)
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3, dtype=torch.float64))
    model, guide = iwae_mlp_vae()
    with pyro.poutine.block():
        guide(x.float())  # builds the guide's heads
    model.double()
    guide.double()
    family = guide.families["z"]
    torch.manual_seed(1)
    library = estimators.get("meanfield").differentiable_loss(model, guide, x)
    torch.manual_seed(1)
    # The guide draws its noise as Normal.rsample does: one standard normal tensor [B, D].
    eps = torch.empty(8, 50, dtype=torch.float64).normal_()
    hand = bench.meanfield_loss(
        lambda flat: guide.encoder(flat.view(-1, 1, 28, 28)),
        family.loc_head,
        family.scale_head,
        lambda z: model.decoder(z).flatten(1),
        x.flatten(1),
        eps,
    )
    # The library's loss sums over the batch, the loop's averages.
    torch.testing.assert_close(hand * 8, library, rtol=1e-10, atol=0.0)


def test_smoke_writes_valid_json(bench, tmp_path):
    threads = torch.get_num_threads()
    try:
        result = bench.main(["--smoke", "--variants", "pyro_vi_meanfield", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    loaded = json.loads(
        (tmp_path / "epoch_vs_pythae_cpu_smoke.json").read_text(), parse_constant=pytest.fail
    )
    assert loaded == json.loads(json.dumps(result))
    assert set(loaded["variants"]) == {"pyro_vi_meanfield", "handwritten"}
    for row in loaded["variants"].values():
        assert row["median_s"] > 0
        assert len(row["epoch_seconds"]) == loaded["settings"]["rounds"] * (
            loaded["settings"]["epochs"] - 1
        )
    assert loaded["variants"]["handwritten"]["vs_handwritten"] == 1.0
    markdown = (tmp_path / "epoch_vs_pythae_cpu_smoke.md").read_text()
    assert markdown.count("\n|") >= 4


def test_unknown_variant_is_refused(bench):
    with pytest.raises(SystemExit, match="--variants: unknown"):
        bench.main(["--smoke", "--variants", "keras"])
