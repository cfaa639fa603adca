"""Device resolution."""

import pytest
import torch

from pyro_vi.devices import environment, resolve_device


def test_cpu_and_none():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_bad_values():
    with pytest.raises(TypeError, match="device must be a string"):
        resolve_device(3)
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda'"):
        resolve_device("gpu please")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_cuda_without_a_gpu():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:1")


@pytest.mark.cuda
def test_cuda_index_out_of_range():
    count = torch.cuda.device_count()
    assert resolve_device("cuda").type == "cuda"
    with pytest.raises(ValueError, match=f"has {count} CUDA"):
        resolve_device(f"cuda:{count}")


def test_environment_names_the_versions_and_device():
    info = environment("cpu")
    assert info["device"] == "cpu" and info["torch"] == torch.__version__
    assert info["device_name"] and info["date"]
