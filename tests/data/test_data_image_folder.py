"""Folders of PNG/JPEG images: colour, size, class folders, and every way a folder can be wrong."""

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_vi.data import DatasetCorruptedError, DatasetNotFoundError
from pyro_vi.data.image_folder import read_image_folder


def write(path, size=(6, 4), mode="RGB", value=200):
    """An image of ``size`` (width, height) in ``mode``, every channel ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": (3,), "RGBA": (4,), "L": ()}[mode]
    pixels = np.full((size[1], size[0], *channels), value, dtype=np.uint8)
    Image.fromarray(pixels, mode).save(path)
    return path


def test_rgb_images_in_file_name_order(tmp_path):
    write(tmp_path / "b.png", value=255)
    write(tmp_path / "a.jpg", value=0)
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.png").write_bytes(b"ignored too")
    images, labels = read_image_folder(tmp_path)
    assert images.shape == (2, 3, 4, 6) and images.dtype == torch.float32 and labels is None
    assert float(images[0].max()) < 0.05 and float(images[1].min()) == 1.0  # a.jpg first


def test_colour_by_default_as_stored_or_as_told(tmp_path):
    write(tmp_path / "grey" / "a.png", mode="L")
    write(tmp_path / "grey" / "b.png", mode="L")
    assert read_image_folder(tmp_path / "grey")[0].shape[1] == 1
    assert read_image_folder(tmp_path / "grey", color="rgb")[0].shape[1] == 3
    write(tmp_path / "mixed" / "a.png", mode="L")
    write(tmp_path / "mixed" / "b.png", mode="RGBA")  # alpha is dropped
    assert read_image_folder(tmp_path / "mixed")[0].shape[1] == 3
    assert read_image_folder(tmp_path / "mixed", color="grey")[0].shape[1] == 1


def test_resize_makes_one_size(tmp_path):
    write(tmp_path / "a.png", size=(10, 8))
    write(tmp_path / "b.png", size=(5, 5))
    with pytest.raises(ValueError, match=r"differ in size: a.png is 8x10 .* b.png is 5x5; set"):
        read_image_folder(tmp_path)
    images, _ = read_image_folder(tmp_path, image_size=[7, 9])
    assert images.shape == (2, 3, 7, 9)
    # A constant image stays constant through the resize: values stay in [0, 1], unshifted.
    assert torch.allclose(images, torch.full_like(images, 200 / 255), atol=1e-6)


def test_class_folders_are_labels(tmp_path):
    write(tmp_path / "dog" / "1.png")
    write(tmp_path / "cat" / "1.png")
    write(tmp_path / "cat" / "2.png")
    images, labels = read_image_folder(tmp_path)
    assert len(images) == 3 and torch.equal(labels, torch.tensor([0, 0, 1]))  # cat, cat, dog


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        read_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"holds no .png/.jpg/.jpeg image"):
        read_image_folder(tmp_path / "empty")
    (tmp_path / "classes" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"class folder\(s\) \['cat'\] hold no"):
        read_image_folder(tmp_path / "classes")


def test_files_beside_class_folders(tmp_path):
    write(tmp_path / "a.png")
    write(tmp_path / "cat" / "b.png")
    with pytest.raises(ValueError, match="holds both images .* and folders"):
        read_image_folder(tmp_path)


def test_corrupt_and_truncated_images(tmp_path):
    write(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DatasetCorruptedError, match="bad.png.*Pillow cannot read it"):
        read_image_folder(tmp_path)
    (tmp_path / "bad.png").unlink()
    big = write(tmp_path / "cut.png", size=(64, 64))
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(big)  # noise compresses badly: the cut lands in the pixels
    big.write_bytes(big.read_bytes()[:-500])
    with pytest.raises(DatasetCorruptedError, match="cut.png"):
        read_image_folder(tmp_path, image_size=[4, 4])


def test_sixteen_bit_images_are_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), dtype=np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(DatasetCorruptedError, match="Pillow mode 'I;16'.*8 bits"):
        read_image_folder(tmp_path)


def test_bad_options(tmp_path):
    write(tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"color must be one of \['rgb', 'grey'\]"):
        read_image_folder(tmp_path, color="gray")
    with pytest.raises(TypeError, match=r"image_size must be \[height, width\]"):
        read_image_folder(tmp_path, image_size=32)
    with pytest.raises(ValueError, match=r"image_size\[1\] must be an integer >= 1"):
        read_image_folder(tmp_path, image_size=[4, 0])
