"""Load and soak of /invert (the reliability issue): 32 concurrent clients for 60 s, then a soak at 8 clients
for 10 minutes while the API process's resident memory is sampled. Loopback only; API in its own process.

    python benchmarks/load_soak.py [--load-seconds 60] [--soak-seconds 600] [--model fashion-mnist]

Writes benchmarks/results/load_soak.json and benchmarks/results/load_soak.png (RSS and p99 over the soak).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_service import png_b64, start_api  # noqa: E402

from dfi_core.datasets import load_split  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def run_load(url: str, payloads: list[str], clients: int, seconds: float, pid: int, sample_every: float):
    import httpx

    latencies: list[tuple[float, float]] = []  # (time since start, seconds)
    statuses: dict[int, int] = {}
    memory: list[tuple[float, float]] = []
    start = time.perf_counter()
    stop = start + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        k = i
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                response = await http.post("/invert", json={"images": [payloads[k % len(payloads)]]})
                code = response.status_code
            except httpx.HTTPError:
                code = 0  # a transport error counts as an error
            latencies.append((t0 - start, time.perf_counter() - t0))
            statuses[code] = statuses.get(code, 0) + 1
            k += clients

    async def sampler() -> None:
        while time.perf_counter() < stop:
            memory.append((time.perf_counter() - start, rss_mib(pid)))
            await asyncio.sleep(sample_every)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        await asyncio.gather(sampler(), *(client(i, http) for i in range(clients)))
    return latencies, statuses, memory


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--soak-seconds", type=float, default=600)
    parser.add_argument("--model", default="fashion-mnist")
    args = parser.parse_args()
    images = load_split(args.model, "test").images[:256]
    payloads = [png_b64(im) for im in images]
    process, url = start_api(args.model, batching=True)
    out: dict = {"command": " ".join(["python", *sys.argv]), "model": args.model}
    try:
        rss_start = rss_mib(process.pid)
        lat, codes, _ = asyncio.run(run_load(url, payloads, 32, args.load_seconds, process.pid, 5))
        seconds = [s for _, s in lat]
        out["load_32_clients"] = {"seconds": args.load_seconds, "requests": len(seconds), "status_counts": codes,
                                  "errors": sum(v for k, v in codes.items() if k != 200),
                                  "requests_per_s": round(len(seconds) / args.load_seconds, 1),
                                  "p50_ms": round(1000 * percentile(seconds, 0.5), 1),
                                  "p99_ms": round(1000 * percentile(seconds, 0.99), 1)}  # fmt: skip
        print(json.dumps(out["load_32_clients"]), flush=True)
        lat, codes, memory = asyncio.run(run_load(url, payloads, 8, args.soak_seconds, process.pid, 10))
        tenth = max(1, len(memory) // 10)
        early = sum(m for _, m in memory[:tenth]) / tenth
        late = sum(m for _, m in memory[-tenth:]) / tenth
        out["soak_8_clients"] = {"seconds": args.soak_seconds, "requests": len(lat), "status_counts": codes,
                                 "errors": sum(v for k, v in codes.items() if k != 200),
                                 "rss_mib_at_start_of_run": round(rss_start, 1),
                                 "rss_mib_first_tenth": round(early, 1), "rss_mib_last_tenth": round(late, 1),
                                 "rss_growth_mib": round(late - early, 1),
                                 "rss_samples": [(round(t, 1), round(m, 1)) for t, m in memory],
                                 "p99_ms": round(1000 * percentile([s for _, s in lat], 0.99), 1)}  # fmt: skip
        print(json.dumps({k: v for k, v in out["soak_8_clients"].items() if k != "rss_samples"}), flush=True)
        _plot(lat, memory, ROOT / "benchmarks" / "results" / "load_soak.png")
    finally:
        process.terminate()
        process.wait(30)
    (ROOT / "benchmarks" / "results" / "load_soak.json").write_text(json.dumps(out, indent=2) + "\n")


def _plot(latencies: list[tuple[float, float]], memory: list[tuple[float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    top.plot([t / 60 for t, _ in memory], [m for _, m in memory], marker=".")
    top.set_ylabel("API RSS (MiB)")
    top.set_title("Soak: 8 clients on /invert (fashion-mnist), 2-core CPU")
    buckets: dict[int, list[float]] = {}
    for t, s in latencies:
        buckets.setdefault(int(t // 30), []).append(s)
    keys = sorted(buckets)
    bottom.plot([(k + 0.5) / 2 for k in keys], [1000 * percentile(buckets[k], 0.99) for k in keys], marker=".")
    bottom.set_ylabel("p99 per 30 s (ms)")
    bottom.set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
