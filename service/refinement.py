"""DFI^opt in the service: IJCV eq. 2 with torch on a differentiable G of the bundle.

ONNX Runtime gives no gradients, so refinement runs where torch is installed: in the API when this process has
torch (the local run and the worker image), always in the worker for metric jobs. The slim API image has no torch
and answers refine_steps > 0 with a 400 naming that. G comes from `dfi_core.refinement.load_bundle_generator`
(through `LoadedModel.refinement_generator`): generator.onnx via onnx2torch for any bundle — a user's own GAN
included — or generator.safetensors where the manifest names it. A bundle whose generator.onnx holds an op
onnx2torch cannot convert (and that has no generator.safetensors) answers refine_steps > 0 with a 400 naming the
op, and its metric jobs with refine_steps > 0 fail with that reason; refine_steps = 0 keeps working.
`dfi_core.refinement.refine` is the same code the training package evaluates with, so a refined latent here
matches the offline DFI^opt for the same image and steps.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable

import numpy as np

from service.errors import APIError

_lock = threading.Lock()  # torch uses all its threads per call; one refinement at a time keeps latency sane


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def require_torch() -> None:
    if not torch_available():
        raise APIError(
            400,
            "refine_steps > 0 needs torch in the API process; this API runs ONNX only "
            "(install the `worker` extra, or send the images as a metric job)",
            limit={"refine_steps": 0},
        )


def refine_latents(
    generator,  # noqa: ANN001
    x: np.ndarray,
    z0: np.ndarray,
    steps: int,
    threads: int | None = None,
    *,
    step: Callable[[int], None] | None = None,
    wait: Callable[[float], None] | None = None,
) -> np.ndarray:
    """x [N, C, H, W] float32 [-1, 1], z0 [N, |z|] → refined z [N, |z|] after `steps` Adam steps (eq. 2).

    `step(k)` runs in this thread before Adam step k + 1 (k = 0 … steps − 1; through dfi_core.refinement.refine's
    callback) and `wait(seconds)` every 0.1 s while another refinement holds the process: either may raise to stop
    — the API's request deadline does — and the exception propagates from here, with the lock released."""
    import torch

    from dfi_core.refinement import refine

    waiting = time.monotonic()
    while not _lock.acquire(timeout=0.1 if wait is not None else -1):
        wait(time.monotonic() - waiting)  # type: ignore[misc]
    try:
        if threads:
            torch.set_num_threads(threads)
        if step is not None:
            step(0)

        def callback(done: int, _z: object, _loss: float) -> None:
            if done < steps:  # after the last step the work is done: return it
                step(done)  # type: ignore[misc]

        z, _ = refine(generator, torch.from_numpy(x), torch.from_numpy(z0), steps=steps, method="adam",
                      callback=callback if step is not None else None)  # fmt: skip
    finally:
        _lock.release()
    return z.numpy().astype(np.float32)
