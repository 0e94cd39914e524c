"""Checkpoints as one safetensors file: module weights, optimiser states, RNG state, and the run config.

safetensors holds flat tensors only, so nested optimiser states are flattened to `opt.<name>.state.<i>.<key>`
and the non-tensor parts (param groups, step, config) go to the JSON metadata. The config inside is enough to
rebuild every module without the run folder (nanoGPT's rule).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn


def _flatten_optimizer(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(value)
            tensors[f"{prefix}.state.{index}.{key}"] = value.detach().cpu().contiguous()
    return tensors, state["param_groups"]


def save_checkpoint(
    path: str | Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    config: dict[str, Any],
    step: int,
    rng: torch.Generator | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            value = value.detach().cpu().contiguous()
            if value.data_ptr() in seen:  # a shared submodule (RFGAN's encoder inside D): store a copy
                value = value.clone()
            seen.add(value.data_ptr())
            tensors[f"{name}.{key}"] = value
    groups = {}
    for name, optimizer in optimizers.items():
        flat, groups[name] = _flatten_optimizer(f"opt.{name}", optimizer)
        tensors.update(flat)
    if rng is not None:
        tensors["rng.state"] = rng.get_state()
    metadata = {
        "format": "dfi-checkpoint/1",
        "config": json.dumps(config),
        "step": str(step),
        "param_groups": json.dumps(groups),
        "extra": json.dumps(extra or {}),
    }
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint under the real name
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if meta.get("format") != "dfi-checkpoint/1":
        raise ValueError(f"{path} is not a DFI checkpoint (format {meta.get('format')!r})")
    return {
        "config": json.loads(meta["config"]),
        "step": int(meta["step"]),
        "param_groups": json.loads(meta["param_groups"]),
        "extra": json.loads(meta.get("extra", "{}")),
    }


def load_checkpoint(
    path: str | Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    rng: torch.Generator | None = None,
) -> dict[str, Any]:
    meta = read_metadata(path)
    tensors = load_file(str(path))
    for name, module in modules.items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    for name, optimizer in (optimizers or {}).items():
        prefix = f"opt.{name}.state."
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith(prefix):
                index, field = key[len(prefix) :].split(".", 1)
                state.setdefault(int(index), {})[field] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"][name]})
    if rng is not None and "rng.state" in tensors:
        rng.set_state(tensors["rng.state"])
    return meta
