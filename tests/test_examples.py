"""Every example runs under --smoke, prints its result and writes into --out."""

import importlib.util
from pathlib import Path

import pytest
import torch

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))

#: Files (relative to --out) that an example exists to produce, beyond printing.
PRODUCES = {
    "ae_vs_vae_2d": ["ae_vs_vae_2d.png", "results.json"],
    "compose_spec": ["metrics.json", "spec.toml"],
    "conv_vae_mnist": ["metrics.json", "checkpoint.pt"],
    "count_table": ["cells.csv", "results.json", "poisson/latents.png"],
    "cvae_digits": ["chosen_digits.png"],
    "discrete_vae": ["results.json", "results.md"],
    "flow_guide": ["diagonal/metrics.json", "iaf-4/metrics.json"],
    "image_folder": ["shapes/disc/0000.png", "run/reconstructions.png", "run/samples.png"],
    "iwae_vs_vae": ["comparison.md", "elbo/metrics.json", "iwae-k5/metrics.json"],
    "vq_vae": ["reconstructions.png"],
}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: with another CPU job running on a 2-core machine, two intra-op threads
    contend and made this file 5x slower (41 s against 8 s); alone, one thread costs ~10%."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_smoke(path, tmp_path, capsys, monkeypatch):
    # An empty data directory: examples that want MNIST must fall back to the embedded digits
    # under --smoke, so the test never reads (or depends on) files.
    monkeypatch.setenv("PYRO_VI_DATA", str(tmp_path / "no-data"))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / path.stem
    module.main(["--smoke", "--out", str(out)])
    assert capsys.readouterr().out
    assert any(out.iterdir()), f"{path.name} wrote nothing into --out"
    for name in PRODUCES.get(path.stem, []):
        assert (out / name).is_file(), f"{path.name} did not write {name}"


def test_examples_fall_back_to_digits_only_under_smoke(tmp_path, monkeypatch):
    """Without --smoke, missing MNIST is the loader's clear error, not a silent switch."""
    from pyro_vi.data import DatasetNotFoundError

    monkeypatch.setenv("PYRO_VI_DATA", str(tmp_path / "no-data"))
    path = next(p for p in EXAMPLES if p.stem == "conv_vae_mnist")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(DatasetNotFoundError):
        module.main(["--epochs", "1", "--out", str(tmp_path / "out")])
