"""Issue 19, item 5: Redis SIGKILLed and restarted while a job runs, N times over. Each run: a fresh redis-server
(append-only file, as compose runs it), `python -m service` and two `python -m service.worker` processes; an invert
job of 3,000 Fashion-MNIST test images with 3 refinement steps (4 chunks); after a random delay Redis is SIGKILLed,
left down for a random 0.5–3 s and restarted on the same files. A run passes when the job completes within the
deadline with the same bytes as a fault-free run; it is "stuck" if not finished by then, "lost" if the job is gone
or failed. Also counted: attempts spent (a chunk with attempts > 1 — a reconnect should spend none).

    python benchmarks/redis_kill_runs.py --runs 20 --out benchmarks/results/redis_kill.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.embedded_redis import free_port, start  # noqa: E402

REQUEST = {"kind": "invert", "n": 3000, "refine_steps": 3}
DEADLINE_S = 180


def _env(redis_port: int, api_port: int, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFI_")}
    env.update({"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "DFI_MODELS": '["fashion-mnist"]',
                "DFI_MODELS_DIR": str(ROOT / "models"), "DFI_RESULTS_DIR": str(work / "results"),
                "DFI_WORKER_METRICS_PORT": "0", "DFI_JOB_HEARTBEAT_S": "3", "DFI_WORKER_SWEEP_S": "1",
                "PORT": str(api_port), "DFI_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"})  # fmt: skip
    return env


def _wait_ready(url: str, logs: list[Path], deadline_s: float = 90) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            ready = httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            ready = False
        if ready and all("models [" in log.read_text(errors="replace") for log in logs):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("stack not ready: " + " | ".join(log.read_text()[-500:] for log in logs))
        time.sleep(0.2)


def _get(client: httpx.Client, path: str) -> httpx.Response | None:
    try:
        response = client.get(path)
    except httpx.HTTPError:
        return None
    return None if response.status_code == 503 else response  # 503: Redis is down, ask again


def one_run(work: Path, rng: random.Random | None, reference: str | None) -> dict:
    work.mkdir(parents=True)
    redis_port, api_port = free_port(), free_port()
    redis = start(redis_port, work / "redis", appendonly=True)
    env = _env(redis_port, api_port, work)
    spawn = lambda args, name: subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,  # noqa: E731
                                                stdout=(work / name).open("ab"), stderr=subprocess.STDOUT)  # fmt: skip
    api = spawn(["-m", "service"], "api.log")
    workers = [spawn(["-m", "service.worker"], f"worker-{i}.log") for i in range(2)]
    url = f"http://127.0.0.1:{api_port}"
    outcome: dict = {}
    try:
        _wait_ready(url, [work / "worker-0.log", work / "worker-1.log"])
        with httpx.Client(base_url=url, timeout=30) as client:
            submitted = client.post("/jobs", json=REQUEST)
            if submitted.status_code != 202:
                raise RuntimeError(f"submit: {submitted.status_code} {submitted.text[:300]}")
            job_id = submitted.json()["id"]
            submitted = time.monotonic()
            if rng is not None:
                time.sleep(rng.uniform(0.5, 4.5))  # the job alone takes ~5 s: most kills land inside it
                state = _get(client, f"/jobs/{job_id}")
                outcome["job_at_kill"] = state.json()["chunks"] if state is not None else None
                outcome["kill_at_s"] = round(time.monotonic() - submitted, 2)
                redis.send_signal(signal.SIGKILL)
                redis.wait(10)
                down = rng.uniform(0.5, 3.0)
                time.sleep(down)
                redis = start(redis_port, work / "redis", appendonly=True)
                outcome.update(down_s=round(down, 2))
            job = None
            while time.monotonic() - submitted < DEADLINE_S:
                response = _get(client, f"/jobs/{job_id}")
                if response is not None and response.status_code == 404:
                    job = {"status": "lost (404)"}
                    break
                if response is not None:
                    job = response.json()
                    if job["status"] in ("complete", "failed", "aborted"):
                        break
                time.sleep(0.2)
            status = job["status"] if job else "no answer"
            if status in ("queued", "active", "aborting", "no answer"):
                status = f"stuck ({status})"
            outcome.update(status=status, seconds=round(time.monotonic() - submitted, 2))
            if job and job["status"] == "complete":
                result = client.get(f"/jobs/{job_id}/result").content
                digest = hashlib.sha256(result).hexdigest()
                outcome.update(sha256=digest, identical=reference is None or digest == reference,
                               attempts=job["attempts"], chunk_runs=job["chunk_runs"],
                               chunks=job["chunks"]["total"])  # fmt: skip
            elif job:
                outcome.update(error=job.get("error"), chunks=job.get("chunks"))
        repairs = sum(log.read_text(errors="replace").count("repair: ") for log in work.glob("worker-*.log"))
        outcome["repairs"] = repairs
    finally:
        for process in [*workers, api]:
            process.send_signal(signal.SIGTERM)
        for process in [*workers, api]:
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
        redis.terminate()
        redis.wait(10)
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "redis_kill.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="redis-kill-"))
    reference = one_run(work / "reference", None, None)
    assert reference["status"] == "complete", reference
    print("reference", json.dumps(reference), flush=True)
    rng = random.Random(args.seed)
    runs = []
    for i in range(args.runs):
        run = one_run(work / f"run-{i:02d}", rng, reference["sha256"])
        runs.append(run)
        print(i, json.dumps(run), flush=True)
    complete = [r for r in runs if r["status"] == "complete"]
    summary = {
        "command": f"python benchmarks/redis_kill_runs.py --runs {args.runs} --seed {args.seed}",
        "request": REQUEST,
        "runs": len(runs),
        "complete": len(complete),
        "identical": sum(r.get("identical", False) for r in complete),
        "stuck": sum(r["status"].startswith("stuck") for r in runs),
        "lost": sum(r["status"] not in ("complete",) and not r["status"].startswith("stuck") for r in runs),
        "runs_with_an_attempt_spent": sum(r.get("attempts", 1) > 1 for r in complete),
        "runs_with_repairs": sum(r.get("repairs", 0) > 0 for r in runs),
        "killed_mid_job": sum(
            bool(r.get("job_at_kill")) and r["job_at_kill"]["done"] < r["job_at_kill"]["total"] for r in runs
        ),
        "reference": reference,
        "each": runs,
    }
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print({k: v for k, v in summary.items() if k not in ("each", "reference")})


if __name__ == "__main__":
    main()
