"""Service benchmarks (CPU here; the same script runs on a GPU machine): writes benchmarks/results/<name>.json.
Every ratio comes from one run of this script on one machine.

    python benchmarks/bench_service.py --out benchmarks/results/service_cpu.json [--duration 10]

1. raw ONNX Runtime: images/s of invert + generator (what /invert runs per image) at batch 1, 8, 32, 256.
2. the service over HTTP: /invert with one image per request at 1 / 8 / 32 concurrent clients, and 8 clients
   sending 16 images per request ("8x16"), micro-batching on and off: images/s, p50 and p99 request latency.
   The API is `python -m service` in its own process; the load generator (httpx, asyncio) runs in this one —
   on a 2-core machine both share the cores, so this is a lower bound.
3. ONNX Runtime vs torch eager on the CPU for the same graphs (batch 1 and 256).
4. DFI vs DFI^opt per image (one forward pass vs 50 Adam steps of eq. 2).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dfi_core.bundle import load_bundle  # noqa: E402
from dfi_core.datasets import load_split  # noqa: E402
from dfi_core.preprocessing import to_model_range  # noqa: E402
from service.embedded_redis import free_port  # noqa: E402


def timed(fn, min_seconds: float = 1.0, min_calls: int = 3) -> float:
    """Seconds per call: repeat until both bounds are met (after one warm-up call)."""
    fn()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def raw_onnx(bundle, images: np.ndarray) -> dict:
    invert = bundle.open_graph("invert", providers=["CPUExecutionProvider"])
    generator = bundle.open_graph("generator", providers=["CPUExecutionProvider"])
    out = {}
    for batch in (1, 8, 32, 256):
        x = to_model_range(images[:batch])
        seconds = timed(lambda x=x: generator(invert(x)))
        out[str(batch)] = round(batch / seconds, 1)
    return {"images_per_s_by_batch": out, "provider": invert.provider}


def torch_vs_onnx(bundle, images: np.ndarray) -> dict:
    import torch

    from dfi_core.refinement import load_refinement_generator
    from training.export.bundle import INVERTER_FILE
    from training.inversion.dfi import load_export_ready

    G = load_refinement_generator(bundle.path("generator.safetensors"))
    inverter = load_export_ready(bundle.path(INVERTER_FILE)).eval()
    invert = bundle.open_graph("invert", providers=["CPUExecutionProvider"])
    generator = bundle.open_graph("generator", providers=["CPUExecutionProvider"])
    out = {}
    for batch in (1, 256):
        x = to_model_range(images[:batch])
        xt = torch.from_numpy(x)
        with torch.no_grad():
            t_torch = timed(lambda xt=xt: G(inverter(xt)))
        t_onnx = timed(lambda x=x: generator(invert(x)))
        out[str(batch)] = {
            "torch_images_per_s": round(batch / t_torch, 1),
            "onnx_images_per_s": round(batch / t_onnx, 1),
            "onnx_over_torch": round(t_torch / t_onnx, 2),
        }
    return {"torch_threads": torch.get_num_threads(), "by_batch": out}


def refinement_cost(bundle, images: np.ndarray) -> dict:
    import torch

    from dfi_core.refinement import load_refinement_generator, refine

    G = load_refinement_generator(bundle.path("generator.safetensors"))
    invert = bundle.open_graph("invert", providers=["CPUExecutionProvider"])
    out = {}
    for batch in (1, 64):
        x = to_model_range(images[:batch])
        z0 = invert(x)
        t_dfi = timed(lambda x=x: invert(x))
        t_opt = timed(lambda x=x, z0=z0: refine(G, torch.from_numpy(x), torch.from_numpy(z0), steps=50), min_calls=2)
        out[str(batch)] = {"dfi_ms_per_image": round(1000 * t_dfi / batch, 3),
                           "dfi_opt50_ms_per_image": round(1000 * t_opt / batch, 2),
                           "opt_over_dfi": round(t_opt / t_dfi, 1)}  # fmt: skip
    return out


def png_b64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def start_api(model: str, batching: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DFI_MODELS": json.dumps([model]), "DFI_DEFAULT_MODEL": model,
           "DFI_BATCHING": "true" if batching else "false", "DFI_LOG_LEVEL": "warning"}  # fmt: skip
    env.pop("REDIS_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "service"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("API did not start")


async def load(url: str, payloads: list[str], clients: int, duration: float, per_request: int = 1) -> dict:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        k = i
        while time.perf_counter() < stop:
            body = {"images": [payloads[(k + j) % len(payloads)] for j in range(per_request)]}
            start = time.perf_counter()
            response = await http.post("/invert", json=body)
            latencies.append(time.perf_counter() - start)
            errors += response.status_code != 200
            k += clients

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        await http.post("/invert", json={"images": payloads[:1]})  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "images_per_s": round(per_request * len(latencies) / elapsed, 1),
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
    }


def service_load(model: str, images: np.ndarray, duration: float) -> dict:
    payloads = [png_b64(im) for im in images[:64]]
    out: dict = {}
    for batching in (True, False):
        process, url = start_api(model, batching)
        try:
            key = "batching_on" if batching else "batching_off"
            # "clients" or "clients x images per request"
            levels = {"1": (1, 1), "8": (8, 1), "32": (32, 1), "8x16": (8, 16)}
            out[key] = {name: asyncio.run(load(url, payloads, c, duration, n)) for name, (c, n) in levels.items()}
        finally:
            process.terminate()
            process.wait(30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "service_cpu.json")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load level")
    parser.add_argument("--models", default="fashion-mnist,emoji")
    args = parser.parse_args()
    import onnxruntime

    results: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": {
        "platform": platform.platform(), "cpus": os.cpu_count(), "onnxruntime": onnxruntime.__version__},
        "models": {}}  # fmt: skip
    for model in args.models.split(","):
        bundle = load_bundle(ROOT / "models" / model)
        images = load_split(bundle.manifest.dataset.name, "test").images[:256]
        print(f"[{model}] raw ONNX Runtime", flush=True)
        entry = {"raw_onnx": raw_onnx(bundle, images)}
        print(f"[{model}] ONNX Runtime vs torch", flush=True)
        entry["onnx_vs_torch"] = torch_vs_onnx(bundle, images)
        print(f"[{model}] DFI vs DFI^opt", flush=True)
        entry["dfi_vs_refinement"] = refinement_cost(bundle, images)
        print(f"[{model}] service load ({args.duration:g} s per level)", flush=True)
        entry["service"] = service_load(model, images, args.duration)
        best_raw = max(entry["raw_onnx"]["images_per_s_by_batch"].values())
        best_service = max(v["images_per_s"] for v in entry["service"]["batching_on"].values())
        on32, off32 = (entry["service"][k]["32"]["images_per_s"] for k in ("batching_on", "batching_off"))
        entry["ratios"] = {"service_over_raw_best": round(best_service / best_raw, 3),
                           "batching_on_over_off_at_32_clients": round(on32 / off32, 2)}  # fmt: skip
        results["models"][model] = entry
        print(json.dumps(entry["ratios"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
