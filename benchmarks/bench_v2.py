"""Serving paths side by side, in one run, on the same Fashion-MNIST test images: writes benchmarks/results/v2_cpu.json.

    python benchmarks/bench_v2.py --out benchmarks/results/v2_cpu.json [--duration 8]

1. raw ONNX Runtime: the bundle's invert graph (`load_bundle(...).open_graph("invert")`) at batch 1 and 16, in this
   process, called back to back;
2. HTTP, each at 1 and 16 images per request, with 1 and 8 concurrent clients:
   - bare: a tiny ASGI app (`BareApp`, below) under uvicorn in its own process, taking a raw float32 body and
     answering the latents' bytes: HTTP + ONNX Runtime and nothing else, the serving limit of this machine;
   - `/v2/models/fashion-mnist.invert/infer` with the binary tensor data extension (bodies built by
     tritonclient's own `generate_request_body`), and with JSON tensors;
   - `/invert` with multipart PNG files, and with JSON base64 PNGs (the default answer: latents + a reconstruction
     PNG per image), and JSON without the reconstruction (`return_reconstruction: false`, 1 image per request);
   - /invert JSON (1 image per request) and /v2 binary (16 images per request) on variants of the same service
     (SERVICE_VARIANTS, settings only): ONNX Runtime's pool threads spinning between calls as ONNX Runtime's own
     default has them (DFI_INTRA_OP_SPINNING=true; the service's default is off), and one intra-op thread
     (DFI_INTRA_OP_THREADS=1).
   The API is a real `python -m service` process (its defaults: access log on, micro-batching on); the load generator
   (httpx, asyncio, pre-built bodies) runs in this process. All servers run at once (an idle one costs nothing) and
   every level, raw ONNX Runtime included, runs `--duration` seconds split into `--rounds` slices, one round going
   through every level before the next (reversed on odd rounds): a change in the machine's load falls on every path
   alike. Per level: images/s, p50 and p99 request latency, and the CPU the server and the load generator used per
   image (from /proc and process_time);
3. a profile of `/invert` at 1 image per request, the app in this process (httpx.ASGITransport, sequential):
   a. ablation: the same request with one piece removed or bypassed (each middleware, the decode thread, the
      micro-batcher — graph calls on the event loop, or a bare thread-pool call in its place — the reconstruction
      PNG), one request of each in turn (paired); the
      marginal cost of a piece is the median of the paired differences;
   b. the components timed alone (JSON, pydantic, base64 + PNG decode, ONNX Runtime, PNG encode, response
      serialisation, Prometheus, uvicorn's access-log line);
   c. cProfile self time grouped by library.

The machine's load (os.getloadavg) is recorded at the start, per level and at the end: another job on the same two
cores changes absolute numbers; the ratios come from the one run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dfi_core.bundle import load_bundle  # noqa: E402
from dfi_core.datasets import load_split  # noqa: E402
from dfi_core.preprocessing import to_model_range  # noqa: E402
from service.embedded_redis import free_port  # noqa: E402

MODEL = "fashion-mnist"
V2_MODEL = f"{MODEL}.invert"
BASELINE_INVERT_IMAGES_PER_S = 145.0  # the issue's /invert, one image per request
IMAGES = 256  # test images the bodies cycle through
BODIES = 64  # pre-built bodies per (path, images per request)
PATHS = ("bare", "v2_binary", "v2_json", "invert_multipart", "invert_json")
BOUNDARY = "dfibenchboundary"
WARM_UP_S = 0.3  # per slice, on its fresh connections


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def timed(fn: Callable[[], object], min_seconds: float = 1.0, min_calls: int = 3) -> float:
    """Seconds per call: repeat until both bounds are met (after one warm-up call)."""
    fn()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


# --- The bare endpoint: uvicorn + ONNX Runtime, nothing else ----------------------------------------------------


class BareApp:
    """POST: a raw float32 body [N, C, H, W] → the latents' float32 bytes; GET: 200 "ok". ONNX Runtime runs on the
    event loop (a call is ~0.3 ms here): no thread hop, no validation, no middleware."""

    def __init__(self, graph: Any) -> None:
        self.session, self.input_name, self.output_name = graph.session, graph.input_name, graph.output_name
        self.shape = tuple(graph.input_shape[1:])

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if scope["method"] == "GET":
            body = b"ok"
        else:
            x = np.frombuffer(b"".join(chunks), dtype=np.float32).reshape(-1, *self.shape)
            body = self.session.run([self.output_name], {self.input_name: x})[0].tobytes()
        headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def serve_bare(port: int) -> None:
    import uvicorn

    graph = load_bundle(ROOT / "models" / MODEL).open_graph("invert")
    uvicorn.run(BareApp(graph), host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


# --- Processes --------------------------------------------------------------------------------------------------


def wait_ready(process: subprocess.Popen, url: str) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{url} did not answer")


def start_bare(log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(port)], cwd=ROOT, stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_ready(process, f"{url}/ready")
    return process, url


# Variants of the same service, each its own process, by settings only: name → extra environment.
# "intra_op_spinning_on": ONNX Runtime's own default (pool threads busy-wait between calls), which the service turned
# off (DFI_INTRA_OP_SPINNING, default false); "intra_op_threads_1": one thread per operator (no pool to spin).
SERVICE_VARIANTS: dict[str, dict[str, str]] = {
    "intra_op_spinning_on": {"DFI_INTRA_OP_SPINNING": "true"},
    "intra_op_threads_1": {"DFI_INTRA_OP_THREADS": "1"},
}


def start_api(log: Path, variant: str | None = None, code: Path = ROOT) -> tuple[subprocess.Popen, str]:
    """`python -m service` with its defaults (log level info: uvicorn's access log on), one bundle, no Redis; or one
    of SERVICE_VARIANTS; `code`: a folder holding another version's service/ and dfi_core/ (`--before`), serving
    this checkout's bundles."""
    port = free_port()
    extra = SERVICE_VARIANTS.get(variant or "", {})
    env = {**os.environ, "PORT": str(port), "DFI_MODELS": json.dumps([MODEL]), "DFI_REFINEMENT_WARM_UP": "false",
           "DFI_MODELS_DIR": str(ROOT / "models"), "PYTHONPATH": str(code), **extra}  # fmt: skip
    env.pop("REDIS_URL", None)
    command = [sys.executable, "-m", "service"]
    with open(log, "ab") as out:
        process = subprocess.Popen(command, env=env, cwd=code, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(process, f"{url}/readyz")
    return process, url


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- Request bodies -----------------------------------------------------------------------------------------------


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(pngs: list[bytes]) -> bytes:
    parts = []
    for i, data in enumerate(pngs):
        head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="{i}.png"\r\n'
                "Content-Type: image/png\r\n\r\n")  # fmt: skip
        parts += [head.encode(), data, b"\r\n"]
    return b"".join([*parts, f"--{BOUNDARY}--\r\n".encode()])


def v2_binary_body(x: np.ndarray, input_name: str, output_name: str) -> tuple[bytes, dict[str, str]]:
    """Built by tritonclient itself (what a Triton client sends): JSON header + the tensor's bytes."""
    from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

    tensor = InferInput(input_name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    body, json_size = InferenceServerClient.generate_request_body(
        [tensor], outputs=[InferRequestedOutput(output_name, binary_data=True)]
    )
    return body, {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(json_size)}


def build_bodies(images: np.ndarray, n: int, input_name: str, output_name: str) -> dict[str, dict]:
    """path → {"url", "headers", "bodies"}: BODIES bodies of n images each, cycling through `images`."""
    pngs = [png_bytes(image) for image in images]
    x_all = to_model_range(images)
    index = [[(k * n + j) % len(images) for j in range(n)] for k in range(BODIES)]
    json_headers = {"Content-Type": "application/json"}
    v2_url = f"/v2/models/{V2_MODEL}/infer"
    out: dict[str, dict] = {
        "bare": {"url": "/invert", "headers": {"Content-Type": "application/octet-stream"},
                 "bodies": [np.ascontiguousarray(x_all[rows]).tobytes() for rows in index]},
        "v2_binary": {"url": v2_url, "headers": v2_binary_body(x_all[index[0]], input_name, output_name)[1],
                      "bodies": [v2_binary_body(x_all[rows], input_name, output_name)[0] for rows in index]},
        "v2_json": {"url": v2_url, "headers": json_headers, "bodies": [json.dumps({"inputs": [
            {"name": input_name, "shape": list(x_all[rows].shape), "datatype": "FP32",
             "data": x_all[rows].ravel().tolist()}]}).encode() for rows in index]},
        "invert_multipart": {"url": "/invert", "headers": {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                             "bodies": [multipart([pngs[i] for i in rows]) for rows in index]},
        "invert_json": {"url": "/invert", "headers": json_headers, "bodies": [json.dumps(
            {"images": [base64.b64encode(pngs[i]).decode() for i in rows]}).encode() for rows in index]},
    }  # fmt: skip
    # The same bodies to /invert without the reconstruction: DFI's latents only, as /v2 answers.
    out["invert_json_latents_only"] = {"url": "/invert", "headers": json_headers, "bodies": [json.dumps(
        {"images": [base64.b64encode(pngs[i]).decode() for i in rows], "return_reconstruction": False}).encode()
        for rows in index]}  # fmt: skip
    return out


def latents_from(path: str, response: httpx.Response, output_name: str, n: int) -> np.ndarray:
    if path == "bare":
        return np.frombuffer(response.content, dtype=np.float32).reshape(n, -1)
    if path == "v2_binary":
        from tritonclient.http import InferenceServerClient

        length = int(response.headers["Inference-Header-Content-Length"])
        result = InferenceServerClient.parse_response_body(response.content, header_length=length)
        return result.as_numpy(output_name)
    body = response.json()
    if path == "v2_json":
        return np.asarray(body["outputs"][0]["data"], dtype=np.float32).reshape(n, -1)
    return np.asarray([r["latent"] for r in body["results"]], dtype=np.float32)


# --- Load ---------------------------------------------------------------------------------------------------------


class Tally:
    """One (server, path, level) over all its slices."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = self.images = 0
        self.elapsed = self.server_cpu = self.own_cpu = 0.0
        self.loads: list[float] = []
        self.slices: list[float] = []  # images/s of each slice

    def summary(self) -> dict:
        ordered = sorted(self.latencies)
        return {
            "images_per_s": round(self.images / self.elapsed, 1),
            "requests": len(ordered),
            "errors": self.errors,
            "p50_ms": round(1000 * statistics.median(ordered), 2),
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
            "server_cpu_ms_per_image": round(1000 * self.server_cpu / self.images, 3) if self.server_cpu else None,
            "loadgen_cpu_ms_per_image": round(1000 * self.own_cpu / self.images, 3),
            "cpu_cores_used": round((self.server_cpu + self.own_cpu) / self.elapsed, 2),
            "loadavg_1m": round(statistics.mean(self.loads), 2),
            "slices_images_per_s": [round(v, 1) for v in self.slices],
        }


async def load(tally: Tally, url: str, spec: dict, clients: int, seconds: float, per_request: int,
               server_pid: int) -> None:  # fmt: skip
    """One slice: `clients` concurrent clients for `seconds` (after a short warm-up on fresh connections)."""
    latencies: list[float] = []
    errors = 0
    bodies, headers, path = spec["bodies"], spec["headers"], spec["url"]

    async def client(i: int, http: httpx.AsyncClient, stop_at: float) -> None:
        nonlocal errors
        k = i + len(tally.latencies)
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            response = await http.post(path, content=bodies[k % len(bodies)], headers=headers)
            latencies.append(time.perf_counter() - start)
            errors += response.status_code != 200
            k += clients

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        await asyncio.gather(*(client(i, http, time.perf_counter() + WARM_UP_S) for i in range(clients)))
        latencies.clear()
        errors = 0
        tally.loads.append(os.getloadavg()[0])
        server_cpu, own_cpu, start = cpu_seconds(server_pid), time.process_time(), time.perf_counter()
        await asyncio.gather(*(client(i, http, start + seconds) for i in range(clients)))
        elapsed = time.perf_counter() - start
        tally.elapsed += elapsed
        tally.slices.append(per_request * len(latencies) / elapsed)
        tally.server_cpu += cpu_seconds(server_pid) - server_cpu
        tally.own_cpu += time.process_time() - own_cpu
    tally.latencies += latencies
    tally.errors += errors
    tally.images += per_request * len(latencies)


def raw_slice(tally: Tally, graph: Any, x: np.ndarray, seconds: float) -> None:
    """One slice of raw ONNX Runtime in this process: the graph called back to back on one batch."""
    graph(x)
    tally.loads.append(os.getloadavg()[0])
    own_cpu, start, images = time.process_time(), time.perf_counter(), 0
    while (now := time.perf_counter()) < start + seconds:
        graph(x)
        tally.latencies.append(time.perf_counter() - now)
        images += len(x)
    elapsed = time.perf_counter() - start
    tally.images += images
    tally.elapsed += elapsed
    tally.slices.append(images / elapsed)
    tally.own_cpu += time.process_time() - own_cpu


def run_interleaved(plan: list[tuple[str, str, int, int]], servers: dict[str, tuple[subprocess.Popen, str]],
                    specs: dict[int, dict], duration: float, rounds: int, graph: Any,
                    inputs: dict[int, np.ndarray]) -> dict[str, dict[str, dict]]:  # fmt: skip
    """plan: (result key, server, clients, images per request); each entry runs `rounds` slices of duration/rounds
    seconds, every round through the whole plan (reversed on odd rounds), so that a change in the machine's load
    falls on every path alike. Server "raw" is ONNX Runtime in this process (`graph` on `inputs[n]`). Returns
    result key → "CxN" → summary."""
    tallies = {(key, server, c, n): Tally() for key, server, c, n in plan}
    for r in range(rounds):
        for key, server, c, n in plan if r % 2 == 0 else plan[::-1]:
            if server == "raw":
                raw_slice(tallies[key, server, c, n], graph, inputs[n], duration / rounds)
                continue
            process, url = servers[server]
            path = key.rsplit("/", 1)[-1]
            asyncio.run(load(tallies[key, server, c, n], url, specs[n][path], c, duration / rounds, n, process.pid))
        print(f"  round {r + 1}/{rounds} done", flush=True)
    out: dict[str, dict[str, dict]] = {}
    for (key, _, c, n), tally in tallies.items():
        result = out.setdefault(key, {})[f"{c}x{n}"] = tally.summary()
        print(f"  {key:50s} {c}x{n:<3d} {result['images_per_s']:8.1f} images/s  p50 {result['p50_ms']:7.2f} ms  "
              f"p99 {result['p99_ms']:7.2f} ms  errors {result['errors']}", flush=True)  # fmt: skip
    return out


def parity(url: str, path: str, spec: dict, expected: np.ndarray, output_name: str, n: int) -> float:
    response = httpx.post(url + spec["url"], content=spec["bodies"][0], headers=spec["headers"], timeout=60)
    response.raise_for_status()
    return float(np.abs(latents_from(path, response, output_name, n) - expected).max())


def triton_client_check(url: str, x: np.ndarray, input_name: str, output_name: str, expected: np.ndarray) -> dict:
    """One call with tritonclient's own HTTP client: a Triton client works unchanged."""
    from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

    client = InferenceServerClient(url.removeprefix("http://"))
    try:
        tensor = InferInput(input_name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        result = client.infer(V2_MODEL, [tensor], outputs=[InferRequestedOutput(output_name, binary_data=True)])
        z = result.as_numpy(output_name)
        return {"server_live": client.is_server_live(), "model_ready": client.is_model_ready(V2_MODEL),
                "max_abs_diff_vs_raw": float(np.abs(z - expected).max())}  # fmt: skip
    finally:
        client.close()


# --- Raw ONNX Runtime ---------------------------------------------------------------------------------------------


def raw_onnx(graph: Any, images: np.ndarray, batches: list[int]) -> dict[str, float]:
    out = {}
    for b in batches:
        x = to_model_range(images[:b])
        out[str(b)] = round(b / timed(lambda x=x: graph(x), min_seconds=1.5), 1)
    return out


# --- Profile: /invert at one image per request, in this process -------------------------------------------------


def build_app(settings: Any, drop: set[str] = frozenset()) -> tuple[Any, Any]:
    """(the ASGI app, the FastAPI app): create_app(settings) without the middleware named in `drop` (V2ErrorShape,
    BodyLimit, RequestContext, AccessControl), wrapped in ReadTimeout as `python -m service` does unless "ReadTimeout"
    is dropped."""
    from service.app import create_app
    from service.timeouts import ReadTimeout

    app = create_app(settings)

    app.user_middleware = [m for m in app.user_middleware if m.cls.__name__ not in drop]
    return (app if "ReadTimeout" in drop else ReadTimeout(app, settings.request_read_timeout_s)), app


class Floor:
    """The client and transport alone: a constant JSON answer, no work."""

    body = json.dumps({"model": MODEL, "results": [{"latent": [0.0] * 100}]}).encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        while (await receive()).get("more_body", False):
            pass
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


@contextlib.contextmanager
def patched(target: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, old)


def profile_invert(images: np.ndarray, requests: int, cprofile_requests: int) -> dict:
    import service.inference
    import service.routers.invert
    from service.registry import LoadedModel
    from service.settings import Settings

    settings = Settings(models=[MODEL], refinement_warm_up=False, log_level="warning", api_keys=[], rate_limit=None,
                        cors_origins=[], batching=True, max_batch_delay_ms=0.0)  # fmt: skip
    pngs = [png_bytes(image) for image in images[:BODIES]]
    json_bodies = [json.dumps({"images": [base64.b64encode(p).decode()]}).encode() for p in pngs]
    no_recon = [json.dumps({"images": [base64.b64encode(p).decode()], "return_reconstruction": False}).encode()
                for p in pngs]  # fmt: skip
    multipart_bodies = [multipart([p]) for p in pngs]
    json_type = {"Content-Type": "application/json"}
    multipart_type = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

    full = build_app(settings)
    apps = {
        "full": full,
        "no_ReadTimeout": build_app(settings, {"ReadTimeout"}),
        "no_V2ErrorShape": build_app(settings, {"V2ErrorShape"}),
        "no_BodyLimit": build_app(settings, {"BodyLimit"}),
        "no_AccessControl": build_app(settings, {"AccessControl"}),
        "no_RequestContext": build_app(settings, {"RequestContext"}),
        "no_middleware": build_app(
            settings, {"ReadTimeout", "V2ErrorShape", "BodyLimit", "AccessControl", "RequestContext"}
        ),
        "floor": (Floor(), None),
    }

    async def inline_thread(deadline: Any, function: Callable, *args: Any) -> Any:
        return function(*args)

    async def inline_run(self: Any, graph: str, array: np.ndarray) -> np.ndarray:
        session = self.graphs[graph]
        return session.session.run([session.output_name], {session.input_name: session.validate(array)})[0]

    pool = ThreadPoolExecutor(max_workers=1)

    async def pool_run(self: Any, graph: str, array: np.ndarray) -> np.ndarray:  # the batcher's thread hop alone
        session = self.graphs[graph]
        return await asyncio.get_running_loop().run_in_executor(pool, session, array)

    constant_png = "iVBORw0KGgo="

    # name → (app, bodies, headers, patch)
    variants: dict[str, tuple[Any, list[bytes], dict, Callable[[], Any]]] = {
        "full": (apps["full"], json_bodies, json_type, contextlib.nullcontext),
        "no_ReadTimeout": (apps["no_ReadTimeout"], json_bodies, json_type, contextlib.nullcontext),
        "no_V2ErrorShape": (apps["no_V2ErrorShape"], json_bodies, json_type, contextlib.nullcontext),
        "no_BodyLimit": (apps["no_BodyLimit"], json_bodies, json_type, contextlib.nullcontext),
        "no_AccessControl": (apps["no_AccessControl"], json_bodies, json_type, contextlib.nullcontext),
        "no_RequestContext": (apps["no_RequestContext"], json_bodies, json_type, contextlib.nullcontext),
        "no_middleware": (apps["no_middleware"], json_bodies, json_type, contextlib.nullcontext),
        "decode_inline": (apps["full"], json_bodies, json_type,
                          lambda: patched(service.inference, "in_thread", inline_thread)),
        "no_micro_batcher": (apps["full"], json_bodies, json_type, lambda: patched(LoadedModel, "run", inline_run)),
        "thread_pool_not_batcher": (apps["full"], json_bodies, json_type,
                                    lambda: patched(LoadedModel, "run", pool_run)),
        "png_encode_stubbed": (apps["full"], json_bodies, json_type,
                               lambda: patched(service.inference, "png_base64", lambda image: constant_png)),
        "no_reconstruction": (apps["full"], no_recon, json_type, contextlib.nullcontext),
        # The one thread hop off (service.inference.small_images → None): decode, invert, generator hop apart.
        "three_hops": (apps["full"], json_bodies, json_type,
                       lambda: patched(service.inference, "small_images", lambda encoded, settings: None)),
        "multipart": (apps["full"], multipart_bodies, multipart_type, contextlib.nullcontext),
        "floor": (apps["floor"], json_bodies, json_type, contextlib.nullcontext),
    }  # fmt: skip

    async def run() -> dict:
        inner = full[1]
        async with inner.router.lifespan_context(inner):
            for _, app in apps.values():  # the other apps share the one registry (their lifespan is not run)
                if app is not None and app is not inner:
                    app.state.registry, app.state.queue = inner.state.registry, inner.state.queue
            clients = {key: httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://bench")
                       for key, (asgi, _) in apps.items()}  # fmt: skip
            try:
                return await measure(clients)
            finally:
                for client in clients.values():
                    await client.aclose()

    async def measure(clients: dict[str, httpx.AsyncClient]) -> dict:
        wall: dict[str, list[float]] = {name: [] for name in variants}
        loop_cpu: dict[str, list[float]] = {name: [] for name in variants}
        app_key = {name: next(k for k, a in apps.items() if a is v[0]) for name, v in variants.items()}
        for name, (_, bodies, headers, patch) in variants.items():  # warm-up and check
            with patch():
                for i in range(20):
                    response = await clients[app_key[name]].post("/invert", content=bodies[i % len(bodies)],
                                                                 headers=headers)  # fmt: skip
                    if response.status_code != 200:
                        raise RuntimeError(f"profile variant {name}: {response.status_code} {response.text[:300]}")
        names = list(variants)
        for i in range(requests):  # one request of every variant in turn, in a rotating order: paired samples
            for name in names[i % len(names) :] + names[: i % len(names)]:
                _, bodies, headers, patch = variants[name]
                with patch():
                    start, cpu = time.perf_counter(), time.thread_time()
                    await clients[app_key[name]].post("/invert", content=bodies[i % len(bodies)], headers=headers)
                    wall[name].append(time.perf_counter() - start)
                    loop_cpu[name].append(time.thread_time() - cpu)
        base_cpu = statistics.mean(loop_cpu["full"])
        ablation = {}
        for name in names:
            saved = sorted(f - v for f, v in zip(wall["full"], wall[name], strict=True))
            q1, q3 = saved[len(saved) // 4], saved[3 * len(saved) // 4]
            cpu = statistics.mean(loop_cpu[name])
            ablation[name] = {"median_ms": round(1000 * statistics.median(wall[name]), 3),
                              "saved_ms": round(1000 * statistics.median(saved), 3),
                              "saved_ci95_ms": round(1000 * 1.58 * (q3 - q1) / len(saved) ** 0.5, 3),
                              "saved_share": round(statistics.median(saved) / statistics.median(wall["full"]), 3),
                              "loop_thread_cpu_ms": round(1000 * cpu, 3),
                              "loop_cpu_saved_ms": round(1000 * (base_cpu - cpu), 3)}  # fmt: skip
        profile = cProfile.Profile()
        client = clients["full"]
        profile.enable()
        start = time.perf_counter()
        for i in range(cprofile_requests):
            await client.post("/invert", content=json_bodies[i % len(json_bodies)], headers=json_type)
        elapsed = time.perf_counter() - start
        profile.disable()
        return {"ablation": ablation, "cprofile": grouped_profile(profile, cprofile_requests, elapsed)}

    print(f"[profile] ablation: {requests} requests × {len(variants)} variants, interleaved", flush=True)
    try:  # the loop uvicorn runs the service on
        import uvloop

        out, loop = uvloop.run(run()), "uvloop"
    except ImportError:
        out, loop = asyncio.run(run()), "asyncio"
    out["event_loop"] = loop
    out["components_us"] = components(images, settings)
    out["requests_per_variant"] = requests
    return out


GROUPS = [  # (group, path fragments of the file a function lives in); first match wins
    ("idle (epoll wait)", ("select.epoll",)),
    ("starlette BaseHTTPMiddleware (none left in the service)", ("starlette/middleware/base.py",)),
    ("anyio (task groups, streams, to_thread)", ("anyio/", "sniffio/")),
    ("httpx client + ASGITransport (load side)", ("httpx/", "httpcore/", "h11/")),
    ("PIL (PNG decode + encode)", ("PIL/", "Imaging", "zlib")),
    ("pydantic", ("pydantic", "validate_python", "serialize")),
    ("FastAPI routing, dependencies, serialisation", ("fastapi/",)),
    ("starlette routing, requests, responses", ("starlette/",)),
    ("prometheus_client", ("prometheus_client/",)),
    ("json", ("json/", "_json")),
    ("base64", ("base64", "binascii")),
    ("numpy", ("numpy/", "numpy.")),
    ("threads, futures, queues", ("threading.py", "concurrent/futures", "queue.py")),
    ("event loop (asyncio, uvloop)", ("asyncio/", "_asyncio", "contextvars", "uvloop")),
    ("service code (own time)", ("/service/",)),
    ("dfi_core", ("/dfi_core/",)),
]


def _group(func: tuple[str, int, str]) -> str | None:
    filename, _, name = func
    text = f"{filename} {name}" if filename != "~" else name
    for group, fragments in GROUPS:
        if any(fragment in text for fragment in fragments):
            return group
    return None if filename == "~" else "other"


def grouped_profile(profile: cProfile.Profile, requests: int, elapsed: float) -> dict:
    """Self time by library; C built-ins that match no group are charged to their callers' groups (pro rata)."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    for func, (_, _, own, _, callers) in stats.items():
        group = _group(func)
        if group is not None:
            totals[group] = totals.get(group, 0.0) + own
            continue
        weights = {c: v[2] for c, v in callers.items()} or {("?", 0, "?"): 1.0}
        total_weight = sum(weights.values()) or 1.0
        for caller, weight in weights.items():
            caller_group = _group(caller) or "other"
            totals[caller_group] = totals.get(caller_group, 0.0) + own * weight / total_weight
    busy = sum(v for k, v in totals.items() if not k.startswith("idle"))
    ordered = sorted(totals.items(), key=lambda kv: -kv[1])
    top = sorted(stats.items(), key=lambda kv: -kv[1][2])[:20]
    return {
        "requests": requests,
        "wall_ms_per_request_under_cprofile": round(1000 * elapsed / requests, 3),
        "note": "self time on the event-loop thread under cProfile (which inflates Python-heavy code); share of busy",
        "groups": {
            k: {
                "ms_per_request": round(1000 * v / requests, 3),
                "share_of_busy": None if k.startswith("idle") else round(v / busy, 3),
            }
            for k, v in ordered
        },
        "top_self_time": [
            {
                "function": f"{Path(f[0]).name}:{f[1]}({f[2]})" if f[0] != "~" else f[2],
                "group": _group(f) or "C built-in",
                "ms_per_request": round(1000 * v[2] / requests, 3),
            }
            for f, v in top
        ],
    }


def _drive(coroutine: Any) -> Any:
    """Run a coroutine that never suspends (FastAPI's serialize_response with a coroutine endpoint)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended")


def components(images: np.ndarray, settings: Any) -> dict:
    """Each piece of /invert's work for one image, timed alone (µs per call)."""
    from fastapi.routing import APIRoute, serialize_response
    from uvicorn.logging import AccessFormatter

    from service.errors import json_object
    from service.images import decode_base64, decode_image, png_base64, to_model_input
    from service.metrics import ApiMetrics
    from service.routers.invert import router as invert_router
    from service.schemas import InversionPublic, InvertRequest, InvertResponse, Timings

    bundle = load_bundle(ROOT / "models" / MODEL)
    invert, generator = bundle.open_graph("invert"), bundle.open_graph("generator")
    invert_1, generator_1 = (bundle.open_graph(g, intra_op_threads=1) for g in ("invert", "generator"))
    spec = bundle.manifest.image
    png = png_bytes(images[0])
    text = base64.b64encode(png).decode()
    raw = json.dumps({"images": [text]}).encode()
    x = to_model_input([images[0]])
    z = invert(x)
    reconstruction = generator(z)
    response = InvertResponse(model=MODEL, results=[InversionPublic(latent=z[0].tolist(), method="dfi",
                              reconstruction_png=png_base64(reconstruction[0]))], timings=Timings())  # fmt: skip
    route = next(r for r in invert_router.routes if isinstance(r, APIRoute) and r.path == "/invert")
    metrics = ApiMetrics()
    access = logging.getLogger("bench.access")
    access.propagate = False
    with tempfile.TemporaryDirectory() as folder:
        handler = logging.FileHandler(Path(folder) / "access.log")
        handler.setFormatter(AccessFormatter('%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        pieces: dict[str, Callable[[], object]] = {
            "json.loads + InvertRequest.model_validate": lambda: InvertRequest.model_validate(
                json_object(raw, InvertRequest)),
            "base64 decode + PNG decode (decode_image)": lambda: decode_image(
                decode_base64(text, "i", settings.max_image_bytes), spec, "i", settings.max_image_bytes,
                settings.max_image_pixels),
            "to_model_input": lambda: to_model_input([images[0]]),
            "ONNX Runtime invert, batch 1 (OnnxGraph)": lambda: invert(x),
            "ONNX Runtime generator, batch 1 (OnnxGraph)": lambda: generator(z),
            "ONNX Runtime invert, batch 1, intra_op_threads=1": lambda: invert_1(x),
            "ONNX Runtime generator, batch 1, intra_op_threads=1": lambda: generator_1(z),
            "PNG encode + base64 of the reconstruction (png_base64)": lambda: png_base64(reconstruction[0]),
            "z.tolist + InversionPublic + InvertResponse": lambda: InvertResponse(model=MODEL, results=[
                InversionPublic(latent=z[0].tolist(), method="dfi", reconstruction_png="x")], timings=Timings()),
            "FastAPI serialize_response (validate + dump, response_model)": lambda: _drive(serialize_response(
                field=route.response_field, response_content=response, dump_json=True)),
            "Prometheus: counter + histogram (RequestContext)": lambda: (
                metrics.requests.labels("/invert", "POST", "200").inc(),
                metrics.latency.labels("/invert", "POST").observe(0.004)),
            "uuid4().hex (request id)": lambda: uuid.uuid4().hex,
            "uvicorn access-log line to a file": lambda: access.info(
                '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5555", "POST", "/invert", "1.1", 200),
        }  # fmt: skip
        out = {name: round(1e6 * timed(fn, min_seconds=0.4), 1) for name, fn in pieces.items()}
        access.removeHandler(handler)
        handler.close()
    return out


# --- Report: the tables of benchmarks/README.md, from a results file ------------------------------------------------

LABELS = {"bare": "bare uvicorn + ONNX Runtime", "v2_binary": "/v2 binary", "v2_json": "/v2 JSON",
          "invert_multipart": "/invert multipart PNG", "invert_json": "/invert JSON base64",
          "invert_json_latents_only": "/invert JSON, `return_reconstruction: false`"}  # fmt: skip


def _row(label: str, level: str, cell: dict) -> str:
    slices = cell.get("slices_images_per_s") or []
    spread = f"{min(slices):.0f}–{max(slices):.0f}" if slices else "–"
    cpu = cell.get("server_cpu_ms_per_image")
    return (f"| {label} | {level.replace('x', '×')} | {cell['images_per_s']:.1f} | {cell['p50_ms']:.2f} | "
            f"{cell['p99_ms']:.2f} | {'–' if cpu is None else f'{cpu:.2f}'} | {spread} |")  # fmt: skip


def report(results: dict) -> str:
    """Markdown: every path and level (raw ONNX Runtime first at each batch), the setting variants, the ratios."""
    head = ["| path | clients × images/request | images/s | p50 ms | p99 ms | server CPU ms/image | slices images/s |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    lines, http, variants = list(head), results["http"], results.get("service_variants", {})
    raw = results["raw_onnx"]["interleaved"]
    for batch in sorted(raw, key=int):
        lines.append(_row(f"raw ONNX Runtime, batch {batch}", "–", raw[batch]))
        for key, label in LABELS.items():
            for level, cell in http.get(key, {}).items():
                if level.endswith(f"x{batch}"):
                    lines.append(_row(label, level, cell))
        for key, label in (("invert_json", "/invert JSON base64"), ("invert_multipart", "/invert multipart PNG"),
                           ("v2_binary", "/v2 binary")):  # fmt: skip
            for level, cell in variants.get("before", {}).get(key, {}).items():
                if level.endswith(f"x{batch}"):
                    lines.append(_row(f"**before**: {label}", level, cell))
    lines += ["", "| service | /invert JSON 1×1 | 8×1 | server CPU ms/image (8×1) | /v2 binary 1×16 | 8×16 "
              "| server CPU ms/image (8×16) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    rows = {"default": {"invert_json": http["invert_json"], "v2_binary": http["v2_binary"]}, **variants}
    for name, paths in rows.items():
        j, v = paths.get("invert_json", {}), paths.get("v2_binary", {})

        def get(cells: dict, level: str, key: str = "images_per_s") -> str:
            value = cells.get(level, {}).get(key)
            return "–" if value is None else f"{value:.1f}" if key == "images_per_s" else f"{value:.2f}"

        cpu = "server_cpu_ms_per_image"
        lines.append(f"| {name} | {get(j, '1x1')} | {get(j, '8x1')} | {get(j, '8x1', cpu)} | "
                     f"{get(v, '1x16')} | {get(v, '8x16')} | {get(v, '8x16', cpu)} |")  # fmt: skip
    lines += ["", "Ratios: " + "; ".join(f"{k} {v['value'] if isinstance(v, dict) else v}"
                                         for k, v in results["ratios"].items())]  # fmt: skip
    machine = results["machine"]
    lines += ["", f"Load average at start {machine['loadavg_start']}, at end {machine.get('loadavg_end')}; "
              f"{results.get('seconds')} s; command: `{results['command']}`"]  # fmt: skip
    return "\n".join(lines)


# --- Main ---------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "v2_cpu.json")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per load level (all rounds together)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds the duration is split into")
    parser.add_argument("--clients", default="1,8", help="concurrent clients per level")
    parser.add_argument("--per-request", default="1,16", help="images per request")
    parser.add_argument("--profile-requests", type=int, default=500, help="requests per ablation variant")
    parser.add_argument("--cprofile-requests", type=int, default=600)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--before", metavar="GIT_REF", help="also serve this commit's service, side by side")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, metavar="RESULTS", help="print the README tables of a results file")
    args = parser.parse_args()
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    import onnxruntime

    started = time.perf_counter()
    clients = [int(c) for c in args.clients.split(",")]
    per_request = [int(n) for n in args.per_request.split(",")]
    levels = [(c, n) for n in per_request for c in clients]
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "onnxruntime": onnxruntime.__version__, "httpx": httpx.__version__,
                    "loadavg_start": loadavg()},
        "setup": {"model": MODEL, "images": f"first {IMAGES} of load_split('fashion-mnist', 'test')",
                  "duration_s": args.duration, "levels": [f"{c}x{n}" for c, n in levels],
                  "level_key": "clients x images per request",
                  "api": "python -m service, PORT, DFI_MODELS=[\"fashion-mnist\"], DFI_REFINEMENT_WARM_UP=false; "
                         "every other setting its default (log level info, micro-batching on, delay 0)"},
    }  # fmt: skip
    bundle = load_bundle(ROOT / "models" / MODEL)
    images = load_split("fashion-mnist", "test").images[:IMAGES]
    graph = bundle.open_graph("invert")
    batches = sorted(set(per_request))
    print("[raw ONNX Runtime]", flush=True)
    raw_start = raw_onnx(graph, images, batches)
    print(f"  {raw_start}", flush=True)
    if not args.skip_http:
        specs = {n: build_bodies(images, n, graph.input_name, graph.output_name) for n in per_request}
        expected = {n: graph(to_model_range(images[:n])) for n in per_request}
        checks: dict[str, Any] = {}
        only = [(c, 1) for c in clients]
        big = [(c, max(per_request)) for c in clients]
        # result key, server, levels; then the service variants (SERVICE_VARIANTS) on /invert JSON at 1 image per
        # request and (the ONNX Runtime thread variants) /v2 binary at 16.
        paths = [("raw_onnx", "raw", [(1, n) for n in per_request]), ("bare", "bare", levels),
                 *((path, "service", levels) for path in PATHS[1:]),
                 ("invert_json_latents_only", "service", only)]  # fmt: skip
        variants = [*SERVICE_VARIANTS, *(["before"] if args.before else [])]
        for variant in variants:
            paths.append((f"{variant}/invert_json", variant, only))
            paths.append((f"{variant}/v2_binary", variant, big))
        if args.before:
            paths.append(("before/invert_multipart", "before", only))
        plan = [(key, server, c, n) for level in levels for key, server, keys in paths for c, n in [level]
                if level in keys]  # fmt: skip
        servers: dict[str, tuple[subprocess.Popen, str]] = {}
        with tempfile.TemporaryDirectory() as folder:
            log = Path(folder) / "servers.log"
            try:
                print(f"[servers: bare uvicorn + ONNX Runtime; python -m service: default, {list(SERVICE_VARIANTS)}]",
                      flush=True)  # fmt: skip
                servers["bare"] = start_bare(log)
                servers["service"] = start_api(log)
                for variant in SERVICE_VARIANTS:
                    servers[variant] = start_api(log, variant)
                if args.before:  # the service as it was at another commit: its service/ and dfi_core/ only
                    code = Path(folder) / "before"
                    code.mkdir()
                    archive = subprocess.run(["git", "archive", args.before, "service", "dfi_core"], cwd=ROOT,
                                             check=True, capture_output=True).stdout  # fmt: skip
                    subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
                    servers["before"] = start_api(log, "before", code)
                url = servers["service"][1]
                x_big = to_model_range(images[: max(per_request)])
                checks["tritonclient"] = triton_client_check(url, x_big, graph.input_name, graph.output_name,
                                                             expected[max(per_request)])  # fmt: skip
                for path in [*PATHS, "invert_json_latents_only"]:
                    checks[path] = {str(n): parity(servers["bare" if path == "bare" else "service"][1], path,
                                                   specs[n][path], expected[n], graph.output_name, n)
                                    for n in per_request}  # fmt: skip
                seconds = len(plan) * (args.duration + args.rounds * WARM_UP_S)
                print(f"[{len(plan)} load levels × {args.duration:g} s in {args.rounds} interleaved rounds, "
                      f"~{seconds:.0f} s]", flush=True)  # fmt: skip
                inputs = {n: to_model_range(images[:n]) for n in per_request}
                http = run_interleaved(plan, servers, specs, args.duration, args.rounds, graph, inputs)
            finally:
                for process, _ in servers.values():
                    stop(process)
            results["server_log_lines"] = log.read_bytes().count(b"\n")
        results["parity_max_abs_diff_vs_raw"] = checks
        results["http"] = {key: http[key] for key, _, _ in paths if "/" not in key and key != "raw_onnx"}
        raw_interleaved = {k.split("x")[1]: v for k, v in http["raw_onnx"].items()}
        results["service_variants"] = {variant: {key.split("/")[1]: value for key, value in http.items()
                                                 if key.startswith(variant + "/")}
                                       for variant in variants}  # fmt: skip
        if args.before:
            results["before"] = {
                "commit": subprocess.run(
                    ["git", "rev-parse", args.before], cwd=ROOT, check=True, capture_output=True, text=True
                ).stdout.strip(),
                "note": "service_variants.before: that commit's service/ and dfi_core/, defaults",
            }
    else:
        raw_interleaved = {}
    raw_end = raw_onnx(graph, images, batches)
    one_thread = raw_onnx(bundle.open_graph("invert", intra_op_threads=1), images, batches)
    print(f"[raw ONNX Runtime] before {raw_start}, after {raw_end}, 1 thread {one_thread}", flush=True)
    results["raw_onnx"] = {
        "provider": graph.provider,
        "images_per_s_by_batch": {n: v["images_per_s"] for n, v in raw_interleaved.items()} or raw_end,
        "interleaved": raw_interleaved,
        "before_http": raw_start,
        "after_http": raw_end,
        "intra_op_threads_1_after_http": one_thread,
        "note": "images_per_s_by_batch: the slices interleaved with the HTTP levels (what the ratios use)",
    }
    if not args.skip_http:
        results["ratios"] = ratios(results, results["raw_onnx"]["images_per_s_by_batch"], clients, per_request)
        print(json.dumps(results["ratios"], indent=1), flush=True)
    if not args.skip_profile:
        results["profile_invert_1_image"] = profile_invert(images, args.profile_requests,
                                                           args.cprofile_requests)  # fmt: skip
        print(json.dumps(results["profile_invert_1_image"]["ablation"], indent=1), flush=True)
    results["machine"]["loadavg_end"] = loadavg()
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(args.out, f"({results['seconds']} s)")


def ratios(results: dict, raw: dict[str, float], clients: list[int], per_request: list[int]) -> dict:
    http = results["http"]
    big, one = max(per_request), min(per_request)

    def best(path: str, n: int) -> tuple[float, str]:
        level = max((f"{c}x{n}" for c in clients), key=lambda k: http[path][k]["images_per_s"])
        return http[path][level]["images_per_s"], level

    v2_big, v2_level = best("v2_binary", big)
    bare_big, _ = best("bare", big)
    bare_one, _ = best("bare", one)
    out: dict[str, Any] = {
        f"v2_binary_{big}_over_raw_onnx_batch_{big}": {"value": round(v2_big / raw[str(big)], 3), "target": 0.8,
                                                       "v2_level": v2_level},
        f"v2_binary_{big}_over_bare_{big}": round(v2_big / bare_big, 3),
        f"bare_{big}_over_raw_onnx_batch_{big}": round(bare_big / raw[str(big)], 3),
    }  # fmt: skip
    for path in ("invert_json", "invert_multipart"):
        value, level = best(path, one)
        out[f"{path}_{one}_over_baseline_{BASELINE_INVERT_IMAGES_PER_S:g}"] = {
            "value": round(value / BASELINE_INVERT_IMAGES_PER_S, 3), "target": 2.0, "level": level}  # fmt: skip
        out[f"{path}_{one}_over_bare_{one}"] = round(value / bare_one, 3)
    v2_one, _ = best("v2_binary", one)
    out[f"v2_binary_{one}_over_bare_{one}"] = round(v2_one / bare_one, 3)
    out[f"bare_{one}_over_raw_onnx_batch_{one}"] = round(bare_one / raw[str(one)], 3)
    for variant, paths in results.get("service_variants", {}).items():
        levels = paths.get("invert_json", {})
        if levels:
            level = max(levels, key=lambda k: levels[k]["images_per_s"])
            value = levels[level]["images_per_s"]
            out[f"{variant}/invert_json_{one}_over_baseline_{BASELINE_INVERT_IMAGES_PER_S:g}"] = {
                "value": round(value / BASELINE_INVERT_IMAGES_PER_S, 3), "target": 2.0, "level": level}  # fmt: skip
    before = results.get("service_variants", {}).get("before")
    if before:  # side by side, same run, same level: the speed-up over the code at --before
        for path in ("invert_json", "invert_multipart", "v2_binary"):
            for level, now in http[path].items():
                if level in before.get(path, {}):
                    ratio = now["images_per_s"] / before[path][level]["images_per_s"]
                    out[f"{path}_{level}_over_before"] = round(ratio, 3)
    return out


if __name__ == "__main__":
    main()
