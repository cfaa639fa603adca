"""Encoder and decoder networks: shapes with leading batch dimensions, validation."""

import pytest
import torch

from pyro_vi.nets import MLP, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder


def test_mlp_layers():
    mlp = MLP(5, [7, 7], 3, activation="relu")
    assert mlp(torch.randn(2, 4, 5)).shape == (2, 4, 3)
    assert sum(isinstance(m, torch.nn.ReLU) for m in mlp) == 2


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 15, 13)])
def test_conv_pair_shapes_with_particle_dimension(shape):
    encoder, decoder = ConvEncoder(shape, 32), ConvDecoder(5, shape)
    assert encoder(torch.rand(3, 2, *shape)).shape == (3, 2, 32)
    assert decoder(torch.randn(4, 2, 5)).shape == (4, 2, *shape)


def test_conv_encoder_layers_follow_the_spec():
    convs = [m for m in ConvEncoder((1, 28, 28)).modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.stride) for c in convs] == [(32, (2, 2)), (64, (2, 2))]


def test_mlp_encoder_decoder_shapes():
    assert MLPEncoder((1, 8, 8), [16, 8])(torch.rand(3, 2, 1, 8, 8)).shape == (3, 2, 8)
    assert MLPDecoder(4, [16], (1, 8, 8))(torch.randn(3, 2, 4)).shape == (3, 2, 1, 8, 8)


def test_bad_arguments():
    with pytest.raises(ValueError, match="height, width >= 4"):
        ConvEncoder((1, 2, 2))
    with pytest.raises(TypeError, match="hidden must be a sequence"):
        MLP(3, 5, 2)
    with pytest.raises(ValueError, match=r"hidden\[1\]"):
        MLP(3, [4, 0], 2)
    with pytest.raises(TypeError, match="data_shape"):
        MLPEncoder("1x8x8", [4])
