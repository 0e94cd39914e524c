"""Hardening from an outside probe: access and transport. Wrong API keys are throttled per client IP, the worker's
Prometheus port listens on loopback only, bad settings stop both processes with one line per problem, and the
server refuses oversized headers and sheds slow clients (header deadline, body idle timeout) without blocking
anyone else. Real components throughout: `python -m service` / `python -m service.worker` processes, a real Redis,
raw sockets for the slow clients, and loopback addresses other than 127.0.0.1 for other client IPs (Linux routes
all of 127/8 to `lo`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.embedded_redis import free_port
from service.settings import Settings
from tests.service.conftest import ROOT, LiveAPI, make_settings, png_b64, process_env

KEY = "probe-access-key-0123456789"
TIMEOUT_S = 2.0  # request_read_timeout_s of the live API: short, so that every stall below resolves quickly
# A refusal that should come at TIMEOUT_S may come later on this 2-core machine: the event loop shares it with the
# test process, Redis and the other sockets; 3 s covers the worst seen (about 0.1 s) many times over.
SLACK_S = 3.0
KEEP_ALIVE_S = 1  # keep_alive_timeout_s of the live API: below uvicorn's default (5 s), so the test sees it is used


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("probe-access") / "api.log"
    live = LiveAPI(make_settings(redis_url), log, DFI_API_KEYS=KEY, DFI_REQUEST_READ_TIMEOUT_S=str(TIMEOUT_S),
                   DFI_KEEP_ALIVE_TIMEOUT_S=str(KEEP_ALIVE_S))  # fmt: skip
    live.log = log  # type: ignore[attr-defined]
    yield live
    live.stop()


def no_tracebacks(api: LiveAPI) -> None:
    text = api.log.read_text()  # type: ignore[attr-defined]
    assert "Traceback" not in text and "ERROR" not in text, text[-3000:]


def client_from(api: LiveAPI, address: str) -> httpx.Client:
    """An HTTP client whose connections come from `address` (another client IP to the server)."""
    return httpx.Client(base_url=api.url, timeout=30, transport=httpx.HTTPTransport(local_address=address))


# 1. Wrong API keys are throttled per client IP ------------------------------------------------------------------


def test_wrong_keys_are_throttled_per_client_ip_and_a_right_key_waits_too(api: LiveAPI) -> None:
    with client_from(api, "127.0.0.2") as guesser, client_from(api, "127.0.0.3") as neighbour:
        codes = [guesser.get("/models", headers={"X-API-Key": f"guess-{i:04d}-0123456789"}).status_code
                 for i in range(60)]  # fmt: skip
        # The default auth_failure_limit (10 per minute): ten answers say the key is wrong, then the client waits.
        assert codes == [403] * 10 + [429] * 50
        throttled = guesser.get("/models", headers={"X-API-Key": "another-guess-0123456789"})
        assert throttled.status_code == 429 and 1 <= int(throttled.headers["Retry-After"]) <= 60
        error = throttled.json()["error"]
        assert error["limit"] == {"auth_failure_limit": "10 per 1 minute"} and "wrong API keys" in error["message"]
        assert error["request_id"] == throttled.headers["X-Request-ID"]
        # While throttled, the right key is refused as well (else the 200 would tell the guesser it found it) ...
        assert guesser.get("/models", headers={"X-API-Key": KEY}).status_code == 429
        assert guesser.get("/models").status_code == 429
        # ... but probes need no key and are never throttled, and another address has its own count.
        assert guesser.get("/healthz").status_code == 200
        assert neighbour.get("/models", headers={"X-API-Key": KEY}).status_code == 200
        assert neighbour.get("/models", headers={"X-API-Key": "x" * 20}).status_code == 403
    no_tracebacks(api)


def test_accepted_and_missing_keys_never_count_as_failures(api: LiveAPI) -> None:
    with client_from(api, "127.0.0.4") as client:
        assert {client.get("/models", headers={"X-API-Key": KEY}).status_code for _ in range(30)} == {200}
        assert {client.get("/models").status_code for _ in range(20)} == {401}
        # Had any of the 50 counted, a 429 would come before the tenth wrong key.
        wrong = [client.get("/models", headers={"X-API-Key": "y" * 20}).status_code for _ in range(11)]
        assert wrong == [403] * 10 + [429]


@pytest.mark.slow  # seconds of waiting on timeouts; run with -m slow
def test_the_throttle_lifts_when_the_window_passes_and_can_be_turned_off(redis_url: str) -> None:
    assert Settings().auth_failure_limit == "10/minute"  # the shipped default
    settings = make_settings(redis_url, api_keys=[KEY], auth_failure_limit="3/2 seconds")
    with TestClient(create_app(settings)) as client:
        assert [client.get("/models", headers={"X-API-Key": "z" * 20}).status_code for _ in range(4)] == [403] * 3 + [
            429
        ]
        retry = int(client.get("/models", headers={"X-API-Key": KEY}).headers["Retry-After"])
        assert 1 <= retry <= 2
        time.sleep(retry + 0.2)  # the moving window has passed its oldest failure (0.2 s: the clock's granularity)
        assert client.get("/models", headers={"X-API-Key": KEY}).status_code == 200
    with TestClient(create_app(make_settings(redis_url, api_keys=[KEY], auth_failure_limit="off"))) as client:
        assert {client.get("/models", headers={"X-API-Key": "z" * 20}).status_code for _ in range(15)} == {403}
    with pytest.raises(ValueError, match="DFI_AUTH_FAILURE_LIMIT"):
        make_settings(None, auth_failure_limit="lots")


# 2. The worker's Prometheus port listens on loopback only --------------------------------------------------------


def listening_addresses(port: int) -> list[str]:
    """Local addresses (hex, as the kernel writes them) of the sockets listening on `port`, IPv4 and IPv6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.append(address)
    return found


def connects(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def test_the_worker_metrics_port_listens_on_loopback_only(redis_url: str, tmp_path: Path) -> None:
    # Control: on this machine a socket bound to every address is reachable through 127.0.0.2, so the check below
    # would see a worker that bound 0.0.0.0.
    with socket.create_server(("0.0.0.0", 0)) as everywhere:
        assert connects("127.0.0.2", everywhere.getsockname()[1])
    port = free_port()
    env = process_env(make_settings(redis_url), DFI_WORKER_METRICS_PORT=str(port))
    env.pop("DFI_WORKER_METRICS_HOST", None)  # the default
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "service.worker"], env=env, cwd=ROOT, stdout=log.open("wb"),
                              stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not connects("127.0.0.1", port):
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        assert "dfi_" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert not connects("127.0.0.2", port)
        assert listening_addresses(port) == ["0100007F"]  # 127.0.0.1 only: no 0.0.0.0, no IPv6 socket
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)


# 3. Bad settings: one line per problem, naming the variable, exit status 2 ----------------------------------------

SECRET = "a-long-secret-key-that-must-not-leak"


def start_with(module: str, **env: str) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DFI_") and k not in ("PORT", "REDIS_URL")}
    return subprocess.Popen([sys.executable, "-m", module], env={**base, **env}, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_bad_settings_stop_both_processes_with_one_line_per_problem() -> None:
    cases = {  # (module, environment) → the lines expected on stderr
        ("service", (("DFI_PORT", "abc"), ("REDIS_URL", "redis://:hunter2-password@redis:6379/0"))): [
            "settings: DFI_PORT: Input should be a valid integer, unable to parse string as an integer (got 'abc')"
        ],
        ("service", (("DFI_API_KEYS", f"{SECRET},short-secret"),)): [
            "settings: DFI_API_KEYS: each key must be at least 16 characters (1 of 2 shorter)"
        ],
        ("service", (("REDIS_URL", "5"),)): [
            "settings: REDIS_URL: must start with redis://, rediss:// or unix:// (got '5')"
        ],
        ("service", (("DFI_PUBLIC_PATHS", "{"),)): [
            'settings: DFI_PUBLIC_PATHS: not valid JSON (give a JSON list, e.g. ["a", "b"]): '
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
        ],
        ("service", (("DFI_JOB_HEARTBEAT_S", "4000"),)): [
            "settings: DFI_JOB_HEARTBEAT_S must be shorter than DFI_JOB_TIMEOUT_S"
        ],
        ("service.worker", (("DFI_MAX_BATCH_SIZE", "-1"), ("PORT", "x"), ("DFI_LOG_LEVEL", "verbose"))): [
            "settings: PORT: Input should be a valid integer, unable to parse string as an integer (got 'x')",
            "settings: DFI_LOG_LEVEL: Input should be 'debug', 'info', 'warning' or 'error' (got 'verbose')",
            "settings: DFI_MAX_BATCH_SIZE: Input should be greater than or equal to 1 (got '-1')",
        ],
    }
    started = {case: start_with(case[0], **dict(case[1])) for case in cases}  # all at once: imports take a while
    for case, process in started.items():
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 2, (case, stdout, stderr)
        assert sorted(stderr.splitlines()) == sorted(cases[case]), (case, stderr)
        assert "Traceback" not in stdout + stderr and SECRET not in stdout + stderr
        assert "short-secret" not in stderr and "hunter2" not in stderr


# 4. Header cap, header deadline, body idle timeout ----------------------------------------------------------------


def connect(api: LiveAPI, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=TIMEOUT_S + SLACK_S, source_address=(source, 0))
    return sock


def send(sock: socket.socket, data: bytes) -> None:
    # The server may answer (and stop reading) before all of an oversized request is sent: the answer is read anyway.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without an answer: {data[:300]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-answer"
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def request(method: str, path: str, *headers: str, body: bytes = b"", length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: probe", *headers]
    if method == "POST":
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_oversized_headers_are_refused_with_431(api: LiveAPI) -> None:
    # 200 KB arrives over several reads (refused while the headers are still incomplete), 20 KB in one read
    # (refused once parsed); both above max_header_bytes, whose default is 16 KiB. 8 KB is served.
    for size in (200_000, 20_000):
        with connect(api) as sock:
            send(sock, request("GET", "/healthz", "X-Filler: " + "a" * size))
            status, headers, body = read_answer(sock)
            assert status == 431 and headers["connection"] == "close", body
            error = json.loads(body)["error"]
            assert error["limit"] == {"max_header_bytes": 16384} and "max_header_bytes" in error["message"]
            assert error["request_id"] == headers["x-request-id"]
            assert closed_by_server(sock, SLACK_S)
    with connect(api) as sock:
        send(sock, request("GET", "/healthz", "X-Filler: " + "a" * 8_000))
        assert read_answer(sock)[0] == 200
    no_tracebacks(api)


def test_silent_connections_and_stalled_headers_are_answered_408(api: LiveAPI) -> None:
    opened = time.monotonic()
    silent, partial = connect(api), connect(api)
    send(partial, b"GET /healthz HTTP/1.1\r\nHost: probe\r\n")  # and never the blank line
    for sock in (silent, partial):
        with sock:
            status, headers, body = read_answer(sock)
            waited = time.monotonic() - opened
            assert status == 408 and json.loads(body)["error"]["limit"] == {"request_read_timeout_s": TIMEOUT_S}
            # It waited for the client (0.5 s: the socket's opening and the timer's granularity), but not for ever.
            assert TIMEOUT_S - 0.5 <= waited <= TIMEOUT_S + SLACK_S, waited
            assert closed_by_server(sock, SLACK_S)
    no_tracebacks(api)


@pytest.mark.slow  # seconds of waiting on timeouts; run with -m slow
def test_a_body_that_stalls_is_answered_408_but_a_slow_steady_one_is_served(api: LiveAPI, fashion_test) -> None:
    with connect(api) as sock:
        send(sock, request("POST", "/invert", f"X-API-Key: {KEY}", "Content-Type: application/json",
                           body=b'{"images": ["', length=1000))  # fmt: skip
        sent = time.monotonic()
        status, headers, body = read_answer(sock)
        waited = time.monotonic() - sent
        assert status == 408 and headers["connection"] == "close", body
        error = json.loads(body)["error"]
        assert error["limit"] == {"request_read_timeout_s": TIMEOUT_S} and "request_read_timeout_s" in error["message"]
        assert error["request_id"] == headers["x-request-id"]
        assert TIMEOUT_S - 0.5 <= waited <= TIMEOUT_S + SLACK_S, waited  # 0.5 s: as above
        assert closed_by_server(sock, SLACK_S)
    metrics = httpx.get(f"{api.url}/metrics", headers={"X-API-Key": KEY}, timeout=5).text
    assert 'dfi_http_requests_total{method="POST",route="/invert",status="408"} 1.0' in metrics  # as answered
    assert 'route="/invert",status="500"' not in metrics
    # The timeout is for a body that stops, not a slow one: five pieces, one every TIMEOUT_S / 2, take longer than
    # TIMEOUT_S in all and are served.
    payload = json.dumps({"images": [png_b64(fashion_test.images[0])]}).encode()
    step = -(-len(payload) // 5)
    pieces = [payload[start : start + step] for start in range(0, len(payload), step)]
    with connect(api) as sock:
        send(sock, request("POST", "/invert", f"X-API-Key: {KEY}", "Content-Type: application/json",
                           length=len(payload)))  # fmt: skip
        for piece in pieces:
            time.sleep(TIMEOUT_S / 2)
            send(sock, piece)
        status, _, body = read_answer(sock)
        assert status == 200 and len(json.loads(body)["results"]) == 1, body[:300]
    no_tracebacks(api)


def test_an_early_answer_does_not_read_the_rest_of_the_body_for_ever(api: LiveAPI) -> None:
    # 100 MB declared (above max_body_bytes): 413 at once. The client then trickles its body, a byte every 0.2 s;
    # uvicorn alone would read on for ever (each byte disarms its keep-alive timer); the server closes instead,
    # LINGER_S after its answer.
    from service.timeouts import LINGER_S

    with connect(api) as sock:
        send(sock, request("POST", "/invert", f"X-API-Key: {KEY}", "Content-Type: application/json",
                           body=b"{", length=100_000_000))  # fmt: skip
        status, _, body = read_answer(sock)
        answered = time.monotonic()
        assert status == 413 and json.loads(body)["error"]["limit"] == {"max_body_bytes": 16 * 1024 * 1024}
        with pytest.raises((BrokenPipeError, ConnectionResetError)):  # the second write after the close fails
            while time.monotonic() - answered < LINGER_S + SLACK_S:
                sock.sendall(b" ")
                time.sleep(0.2)
    no_tracebacks(api)


def test_idle_keep_alive_connections_are_closed_after_the_setting(api: LiveAPI) -> None:
    with connect(api) as sock:
        send(sock, request("GET", "/healthz"))
        assert read_answer(sock)[0] == 200
        answered = time.monotonic()
        assert closed_by_server(sock, KEEP_ALIVE_S + SLACK_S)
        assert time.monotonic() - answered < 5  # uvicorn's default keep-alive (5 s) would not have closed it yet


@pytest.mark.slow  # seconds of waiting on timeouts; run with -m slow
def test_twenty_stalled_sockets_do_not_stop_a_normal_request(api: LiveAPI, fashion_test) -> None:
    body = {"images": [png_b64(image) for image in fashion_test.images[:4]]}
    with client_from(api, "127.0.0.5") as client:  # once before: the timing below measures serving, not warm-up
        assert client.post("/invert", json=body, headers={"X-API-Key": KEY}).status_code == 200
    opened = time.monotonic()
    stalled = [connect(api) for _ in range(20)]
    for index, sock in enumerate(stalled):
        if index % 3 == 1:
            send(sock, b"POST /invert HTTP/1.1\r\nHost: probe\r\nContent-Le")
        elif index % 3 == 2:
            send(sock, request("POST", "/invert", f"X-API-Key: {KEY}", "Content-Type: application/json",
                               body=b'{"images": [', length=5000))  # fmt: skip
    with client_from(api, "127.0.0.5") as client, ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: client.post("/invert", json=body, headers={"X-API-Key": KEY}), range(2)))
    served = time.monotonic() - opened
    assert [answer.status_code for answer in answers] == [200, 200]
    assert served < TIMEOUT_S, served  # served while all twenty were still held open
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda sock: read_answer(sock)[0], stalled))
    assert statuses == [408] * 20 and time.monotonic() - opened <= TIMEOUT_S + SLACK_S
    for sock in stalled:
        assert closed_by_server(sock, SLACK_S)
        sock.close()
    no_tracebacks(api)
