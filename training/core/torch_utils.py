"""Small torch helpers every stage uses: the device rule and freezing a module (G and D are frozen for DFI)."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def resolve_device(name: str) -> torch.device:
    """`auto` → CUDA when present, else CPU; any other name as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def frozen(module: M) -> M:
    """Eval mode and no gradients: the frozen G and D of DFI (IJCV sec. 3.1), judges and feature networks."""
    module.eval()
    module.requires_grad_(False)
    return module
