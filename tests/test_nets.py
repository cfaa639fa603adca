"""Encoder and decoder networks: shapes with leading batch dimensions, validation."""

import pytest
import torch

from pyro_vi.nets import MLP, ConcatMLPEncoder, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder


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


def test_mlp_encoder_reads_scalar_and_integer_data():
    # A scalar per datapoint is one input feature: the same as the [..., 1] vector, exactly.
    encoder = MLPEncoder((), [6])
    counts = torch.tensor([[0, 3, 7], [1, 1, 2]])  # integer counts, batch [2, 3]
    features = encoder(counts)
    assert features.shape == (2, 3, 6) and features.dtype == torch.float32
    vector = MLPEncoder((1,), [6])
    vector.load_state_dict(encoder.state_dict())
    assert torch.equal(vector(counts.unsqueeze(-1).float()), features)


def test_concat_encoder_is_an_mlp_of_the_concatenated_datapoints():
    encoder = ConcatMLPEncoder([(2, 2), ()], [8, 5])
    x, y = torch.randn(3, 4, 2, 2), torch.randn(3, 4)
    single = MLPEncoder((5,), [8, 5])
    single.load_state_dict(encoder.state_dict())
    joined = torch.cat([x.flatten(-2), y.unsqueeze(-1)], dim=-1)  # x's 4 features, then y's 1
    assert torch.equal(encoder(x, y), single(joined))
    assert encoder(x, y).shape == (3, 4, 5) and encoder.out_features == 5


def test_bad_arguments():
    with pytest.raises(ValueError, match="height, width >= 4"):
        ConvEncoder((1, 2, 2))
    with pytest.raises(TypeError, match="hidden must be a sequence"):
        MLP(3, 5, 2)
    with pytest.raises(ValueError, match=r"hidden\[1\]"):
        MLP(3, [4, 0], 2)
    with pytest.raises(TypeError, match="data_shape"):
        MLPEncoder("1x8x8", [4])
    with pytest.raises(TypeError, match=r"\(\) for a scalar per datapoint"):
        MLPEncoder(3, [4])
    with pytest.raises(ValueError, match=r"x must have shape \[\.\.\., \*data_shape\] with "):
        MLPEncoder((3,), [4])(torch.randn(5, 2))
    with pytest.raises(TypeError, match="data_shapes must be a non-empty list"):
        ConcatMLPEncoder([], [4])
    with pytest.raises(ValueError, match=r"data_shapes\[1\]\[0\] must be an integer >= 1"):
        ConcatMLPEncoder([(2,), (0,)], [4])
    encoder = ConcatMLPEncoder([(2,), ()], [4])
    with pytest.raises(ValueError, match="this encoder reads 2 inputs"):
        encoder(torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"inputs\[0\] must have shape .* got \(5, 3\)"):
        encoder(torch.randn(5, 3), torch.randn(5))
    with pytest.raises(ValueError, match="must share their batch dimensions"):
        encoder(torch.randn(5, 2), torch.randn(4))
