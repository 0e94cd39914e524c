"""DiffAugment (training/gan/augment.py): each operation does what the paper's reference code does, lets gradients
through to G, and draws only from the generator it is given (so a resumed run repeats the same augmentations)."""

from __future__ import annotations

import pytest
import torch

from training.gan.augment import DiffAugment, color, cutout, parse_policy, translation


def _dot(n: int = 64, side: int = 16, at: tuple[int, int] = (8, 8)) -> torch.Tensor:
    x = torch.zeros(n, 1, side, side)
    x[:, :, at[0], at[1]] = 1.0
    return x


def test_translation_moves_the_content_by_at_most_an_eighth_of_the_side_and_keeps_it() -> None:
    x = _dot()
    y = translation(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert torch.all(y.flatten(1).sum(1) == 1)  # a dot 2 px from any border is never pushed out by ≤ 2 px
    where = y[:, 0].flatten(1).argmax(1)
    rows, cols = where // 16, where % 16
    assert (rows - 8).abs().max() <= 2 and (cols - 8).abs().max() <= 2  # 16 / 8 = 2 px
    assert len({(int(r), int(c)) for r, c in zip(rows, cols, strict=True)}) > 10  # the shifts really vary


def test_translation_fills_with_zeros_where_the_image_left_the_frame() -> None:
    x = torch.ones(32, 1, 16, 16)
    y = translation(x, torch.Generator().manual_seed(1))
    shifted = y.flatten(1).sum(1) < 256
    assert shifted.any() and set(y.unique().tolist()) <= {0.0, 1.0}


def test_cutout_zeroes_one_square_of_half_the_side() -> None:
    x = torch.ones(256, 3, 16, 16)
    y = cutout(x, torch.Generator().manual_seed(0))
    zeroed = (y[:, 0] == 0).flatten(1).sum(1)
    assert zeroed.max() == 64  # 8 × 8 when the square is wholly inside
    assert zeroed.min() > 0  # the square's centre is always inside the frame
    assert torch.equal(y[:, 0], y[:, 2])  # the same square on every channel


def test_color_keeps_grey_images_grey_and_changes_brightness_and_contrast() -> None:
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    y = color(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.allclose(x, y)
    rgb = torch.rand(16, 3, 8, 8) * 2 - 1
    grey = rgb.mean(1, keepdim=True).expand_as(rgb).contiguous()
    out = color(grey, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[:, 0], out[:, 1])  # saturation scales colour away from the mean: none here


def test_the_policy_is_differentiable_and_a_function_of_the_rng_alone() -> None:
    augment = DiffAugment("color,translation,cutout")
    x = torch.randn(8, 3, 16, 16, requires_grad=True)
    augment(x, torch.Generator().manual_seed(3)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    a = augment(x, torch.Generator().manual_seed(3))
    b = augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(4)))
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(before, torch.random.get_rng_state())  # the global RNG is never drawn from


def test_policies_are_parsed_and_unknown_operations_named() -> None:
    assert parse_policy("") == () and not DiffAugment("")
    assert parse_policy("translation, cutout") == ("translation", "cutout")
    with pytest.raises(ValueError, match="unknown augmentation \\['flip'\\]"):
        parse_policy("translation,flip")
    points = torch.randn(4, 2)
    assert DiffAugment("cutout")(points, torch.Generator()) is points  # no pixels to move
