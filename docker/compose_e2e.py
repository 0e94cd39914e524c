"""The compose stack end to end, on podman: build the images, start redis + api + worker, use them, tear them down.

    python3 docker/compose_e2e.py            # a machine like ours: local Debian base, torch from a wheel folder
    python3 docker/compose_e2e.py --upstream # anywhere that pulls python:3.11-slim / redis:7-alpine and reaches
                                             # the PyTorch CPU index: docker-compose.yml alone, as users run it
    python3 docker/compose_e2e.py --keep     # leave the stack running afterwards (down: see the last line it prints)

What it checks, in order (each raises AssertionError with what it saw; tests/docker/test_compose_stack.py runs the
same function under pytest -m slow):
  1. builds redis (local only), api and worker with podman-compose; times it
  2. `up -d`; waits for /readyz through the published port; times start → ready
  3. inverts the first Fashion-MNIST test images (the IDX files of ../shared/DATA.md, read with dfi_core.datasets)
     through the published port: mean PSNR of G(E(x)) against x above PSNR_BOUND_DB (first answer timed)
  4. a metric job (1000 test images, PSNR + SSIM) runs on the worker to completion and matches the bundle's
     manifest (the training package's numbers on the same images) within 1e-3
  5. restarts the redis container: the finished job is still there, with the same result (AOF on a named volume)
  6. inside the running containers: non-root users, /models mounted read-only (a write fails), and every
     service's healthcheck passes (`podman healthcheck run`)
  7. `down -v` (containers, network and the project's volumes), also when a check failed (unless --keep)
Podman must be set up as in docker/README.md (runc, cgroupfs, containers.conf); podman-compose comes from PyPI.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # dfi_core: the data set reader (numpy only) shared with the service

from dfi_core.datasets import load_fashion_mnist  # noqa: E402

BASE_IMAGE = "localhost/dfi-base:bookworm-py311"
TORCH_SPEC = "torch==2.13.0"  # pyproject's `worker` pin
# The manifest's DFI PSNR is 17.00 dB ± 2.74 (std) over the first 1000 test images; over the first 100 the standard
# error is ~0.3 dB, so 15 dB is far below what a working stack gives and far above a broken one (a blank or
# mis-scaled reconstruction scores ~5–9 dB).
PSNR_BOUND_DB = 15.0
N_INVERT = 100
N_METRIC_JOB = 1000


@dataclass
class Stack:
    project: str = "dfie2e"
    port: int = 18000
    local: bool = True
    wheels_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    # --- plumbing ---------------------------------------------------------------------------------------------

    def files(self) -> list[str]:
        files = ["-f", str(ROOT / "docker-compose.yml")]
        return files + (["-f", str(ROOT / "docker-compose.local.yml")] if self.local else [])

    def env(self) -> dict[str, str]:
        env = dict(os.environ, DFI_API_PORT=str(self.port))
        # podman builds OCI images unless told otherwise, and OCI images drop HEALTHCHECK; docker format keeps it.
        env["BUILDAH_FORMAT"] = "docker"
        if self.wheels_dir:
            env["TORCH_WHEELS_DIR"] = str(self.wheels_dir)
        return env

    def compose(self, *args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "podman_compose", "-p", self.project, *self.files(), *args]
        print("+", " ".join(cmd[2:]), flush=True)
        return subprocess.run(cmd, cwd=ROOT, env=self.env(), check=check, text=True,
                              capture_output=capture)  # fmt: skip

    @staticmethod
    def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", *args], check=check, text=True, capture_output=True)

    def container(self, service: str) -> str:
        labels = [f"label=io.podman.compose.project={self.project}", f"label=com.docker.compose.service={service}"]
        out = self.podman("ps", "--filter", labels[0], "--filter", labels[1], "--format", "{{.Names}}")
        names = out.stdout.split()
        assert len(names) == 1, f"expected one running {service} container, found {names}"
        return names[0]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def http(self, path: str, body: dict | None = None, timeout: float = 60) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url(path), data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def wait_http(self, path: str, timeout: float, what: str) -> tuple[float, Any]:
        start, last = time.monotonic(), None
        while time.monotonic() - start < timeout:
            try:
                status, body = self.http(path, timeout=5)
                if status == 200:
                    return time.monotonic() - start, body
                last = (status, body)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                last = error
            time.sleep(1)
        raise AssertionError(f"{what}: {path} not 200 within {timeout} s; last answer: {last}")

    # --- steps ------------------------------------------------------------------------------------------------

    def preflight(self) -> None:
        assert shutil.which("podman"), "podman missing: apt-get install -y podman runc (docker/README.md)"
        runtime = self.podman("info", "--format", "{{.Host.OCIRuntime.Name}}").stdout.strip()
        assert runtime == "runc", f'podman\'s runtime is {runtime!r}; set runtime = "runc" (docker/README.md)'
        if not self.local:
            return
        assert self.podman("image", "exists", BASE_IMAGE, check=False).returncode == 0, (
            f"{BASE_IMAGE} missing: bash docker/make_base.sh"
        )
        if self.wheels_dir is None:
            # pip's own configuration knows where the CPU wheel lies (a find-links folder here); --no-deps: only
            # torch's wheel, its requirements come from PyPI inside the build.
            self.wheels_dir = Path.home() / ".cache" / "dfi" / "torch-wheels"
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", TORCH_SPEC, "--no-deps", "-d",
                            str(self.wheels_dir)], check=True)  # fmt: skip
        wheels = sorted(p.name for p in self.wheels_dir.glob("torch-2.13.0*.whl"))
        assert wheels, f"no torch 2.13.0 wheel in {self.wheels_dir}"
        self.results["torch_wheel"] = wheels[-1]

    def build(self) -> None:
        start = time.monotonic()
        self.compose("build", *(["redis"] if self.local else []), "api", "worker")
        self.timings["build_s"] = round(time.monotonic() - start, 1)

    def up(self) -> None:
        start = time.monotonic()
        self.compose("up", "-d")
        self.timings["up_command_s"] = round(time.monotonic() - start, 1)
        ready_after, body = self.wait_http("/readyz", 240, "api")
        self.timings["start_to_ready_s"] = round(time.monotonic() - start, 1)
        self.results["readyz"] = body
        assert body["status"] == "ready" and "fashion-mnist" in body["models"], body
        self._started = start

    def invert(self) -> None:
        test = load_fashion_mnist("test")
        images = test.images[:N_INVERT]
        encoded = [base64.b64encode(_png(im)).decode("ascii") for im in images]
        t0 = time.monotonic()
        status, body = self.http("/invert", {"images": encoded}, timeout=120)
        self.timings["first_invert_s"] = round(time.monotonic() - t0, 2)
        self.timings["start_to_first_answer_s"] = round(time.monotonic() - self._started, 1)
        assert status == 200, (status, body)
        recon = np.stack([_decode(r["reconstruction_png"]) for r in body["results"]])
        assert recon.shape == images.shape, (recon.shape, images.shape)
        psnr = _psnr(recon, images)
        self.results["invert"] = {"n": N_INVERT, "psnr_mean_db": round(float(psnr.mean()), 3),
                                  "psnr_min_db": round(float(psnr.min()), 3), "bound_db": PSNR_BOUND_DB}  # fmt: skip
        assert psnr.mean() > PSNR_BOUND_DB, self.results["invert"]

    def metric_job(self) -> None:
        t0 = time.monotonic()
        status, job = self.http("/jobs", {"n": N_METRIC_JOB, "batch_size": 250, "metrics": ["psnr", "ssim"]})
        assert status == 202, (status, job)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status, job = self.http(f"/jobs/{job['id']}")
            if job["status"] in ("complete", "failed", "aborted"):
                break
            time.sleep(1)
        self.timings["metric_job_s"] = round(time.monotonic() - t0, 1)
        assert job["status"] == "complete", job
        assert job["workers"], job  # finished by a worker (the API runs no chunks)
        manifest = json.loads((ROOT / "models" / "fashion-mnist" / "manifest.json").read_text())["metrics"]["dfi"]
        got = job["result"]["metrics"]
        self.results["metric_job"] = {"id": job["id"], "psnr": got["psnr"]["mean"], "ssim": got["ssim"]["mean"],
                                      "manifest_psnr": manifest["psnr"], "manifest_ssim": manifest["ssim"]}  # fmt: skip
        assert abs(got["psnr"]["mean"] - manifest["psnr"]) < 1e-3, self.results["metric_job"]
        assert abs(got["ssim"]["mean"] - manifest["ssim"]) < 1e-3, self.results["metric_job"]
        self._job = job

    def restart_redis(self) -> None:
        redis = self.container("redis")
        t0 = time.monotonic()
        self.podman("restart", redis)
        deadline = time.monotonic() + 60
        while self.podman("exec", redis, "redis-cli", "ping", check=False).stdout.strip() != "PONG":
            assert time.monotonic() < deadline, "redis did not answer PING within 60 s of its restart"
            time.sleep(0.5)
        # The API reconnects on its own; job routes answer 503 until it has.
        deadline, last = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            status, job = self.http(f"/jobs/{self._job['id']}")
            if status == 200:
                break
            last = (status, job)
            time.sleep(1)
        else:
            raise AssertionError(f"job route not back within 60 s of the redis restart: {last}")
        self.timings["redis_restart_to_job_s"] = round(time.monotonic() - t0, 1)
        assert job["status"] == "complete" and job["result"] == self._job["result"], (job, self._job)
        self.results["after_redis_restart"] = {"status": job["status"], "same_result": True}

    def inside(self) -> None:
        checks: dict[str, Any] = {}
        for service in ("redis", "api", "worker"):
            name = self.container(service)
            uid = self.podman("exec", name, "id", "-u").stdout.strip()
            health = self.podman("healthcheck", "run", name, check=False)
            config = json.loads(self.podman("inspect", name).stdout)[0]
            test = (config["Config"].get("Healthcheck") or {}).get("Test")
            checks[service] = {"uid": uid, "healthcheck": test, "healthcheck_run": health.returncode}
            assert uid != "0", f"{service} runs as root"
            assert test, f"{service}: no healthcheck configured"
            assert health.returncode == 0, f"{service}: healthcheck failed: {health.stdout}{health.stderr}"
            if service in ("api", "worker"):
                assert uid == "10001", (service, uid)
                (models,) = [m for m in config["Mounts"] if m["Destination"] == "/models"]
                write = self.podman("exec", name, "sh", "-c", "touch /models/.write-test", check=False)
                checks[service]["models_rw"] = models["RW"]
                checks[service]["models_write"] = (write.stderr or write.stdout).strip()
                assert models["RW"] is False and write.returncode != 0, checks[service]
                assert "Read-only file system" in write.stderr, write.stderr
        assert "/readyz" in " ".join(checks["api"]["healthcheck"]), checks["api"]  # compose's, not the image's
        self.results["inside"] = checks

    def down(self) -> None:
        self.compose("down", "-v", check=False)

    def leftovers(self) -> list[str]:
        """Containers and volumes of this project (none after `down -v`)."""
        label = f"label=io.podman.compose.project={self.project}"
        containers = self.podman("ps", "-a", "-q", "--filter", label).stdout.split()
        return containers + self.podman("volume", "ls", "-q", "--filter", label).stdout.split()


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode(text: str) -> np.ndarray:
    array = np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))
    return array[:, :, None] if array.ndim == 2 else array


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # On [0, 1] images, data_range 1: the manifest's convention (torchmetrics in the training package).
    mse = ((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(1.0 / mse)


def run(stack: Stack, keep: bool = False) -> Stack:
    """Every step in order; the stack comes down afterwards (also after a failure) unless keep."""
    stack.preflight()
    if stack.leftovers():
        stack.down()  # a stack left by an earlier run under the same project name
    try:
        stack.build()
        stack.up()
        stack.invert()
        stack.metric_job()
        stack.restart_redis()
        stack.inside()
    except BaseException:
        subprocess.run(["podman", "ps", "-a", "--filter", f"label=io.podman.compose.project={stack.project}"])
        for service in ("api", "worker", "redis"):
            stack.compose("logs", "--tail", "40", service, check=False)
        raise
    finally:
        print(json.dumps({"timings": stack.timings, "results": stack.results}, indent=1, default=str), flush=True)
        if keep:
            print(f"kept running; stop with: podman-compose -p {stack.project} {' '.join(stack.files())} down -v")
        else:
            stack.down()
    return stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", action="store_true", help="docker-compose.yml alone (upstream bases)")
    parser.add_argument("--port", type=int, default=18000, help="host port for the API (DFI_API_PORT)")
    parser.add_argument("--project", default="dfie2e", help="compose project name")
    parser.add_argument("--wheels-dir", type=Path, default=os.environ.get("TORCH_WHEELS_DIR"),
                        help="folder with the CPU torch wheel (default: pip download into ~/.cache/dfi)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--json", type=Path, help="also write timings and results here")
    args = parser.parse_args()
    stack = Stack(project=args.project, port=args.port, local=not args.upstream, wheels_dir=args.wheels_dir)
    run(stack, keep=args.keep)
    if args.json:
        args.json.write_text(json.dumps({"timings": stack.timings, "results": stack.results}, indent=1) + "\n")
    print("compose_e2e: all checks passed")


if __name__ == "__main__":
    main()
