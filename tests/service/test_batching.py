"""Micro-batching: merging requests never changes a caller's result; concurrent callers share graph calls."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.batching import MicroBatcher


def affine(x: np.ndarray) -> np.ndarray:
    return x * 2.0 + 1.0


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.mark.parametrize("enabled", [True, False])
def test_each_caller_gets_its_own_rows(enabled: bool) -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(affine, max_batch=16, max_delay_s=0.01, enabled=enabled, on_batch=sizes.append)
    inputs = [np.full((n, 3), float(i), dtype=np.float32) for i, n in enumerate([1, 5, 2, 7, 3, 1])]

    async def main() -> list[np.ndarray]:
        out = await asyncio.gather(*(batcher(x) for x in inputs))
        await batcher.close()
        return out

    for x, y in zip(inputs, run(main()), strict=True):
        np.testing.assert_array_equal(y, affine(x))
    assert sum(sizes) == sum(len(x) for x in inputs)
    assert max(sizes) <= 16
    if enabled:
        assert len(sizes) < len(inputs)  # concurrent callers were merged
    else:
        assert len(sizes) == len(inputs)


def test_requests_larger_than_max_batch_are_chunked() -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(affine, max_batch=4, on_batch=sizes.append)
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    np.testing.assert_array_equal(run(batcher(x)), affine(x))


def test_an_error_reaches_every_waiting_caller_and_the_batcher_recovers() -> None:
    calls = {"n": 0}

    def flaky(x: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return x

    batcher = MicroBatcher(flaky, max_batch=64, max_delay_s=0.02)

    async def main():
        first = await asyncio.gather(*(batcher(np.ones((1, 1), np.float32)) for _ in range(3)), return_exceptions=True)
        second = await batcher(np.ones((2, 1), np.float32))
        await batcher.close()
        return first, second

    first, second = run(main())
    assert all(isinstance(r, RuntimeError) for r in first)
    assert second.shape == (2, 1)


def test_a_lone_call_skips_the_queue_and_callers_arriving_meanwhile_are_merged_after_it() -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(affine, max_batch=64, max_delay_s=0.0, on_batch=sizes.append)
    inputs = [np.full((n, 2), float(i), dtype=np.float32) for i, n in enumerate([3, 1, 2, 4, 1])]

    async def main() -> tuple[np.ndarray, bool, list[np.ndarray]]:
        alone = await batcher(inputs[0])
        no_task = batcher._task is None  # the idle path ran it directly: no batching task was ever needed
        together = await asyncio.gather(*(batcher(x) for x in inputs))
        await batcher.close()
        return alone, no_task, together

    alone, no_task, together = run(main())
    np.testing.assert_array_equal(alone, affine(inputs[0]))
    assert no_task
    for x, y in zip(inputs, together, strict=True):
        np.testing.assert_array_equal(y, affine(x))
    # The first of the burst found the graph idle and ran alone; the four that came while it ran were merged.
    assert sizes == [3, 3, 8]
