"""A bounded load test of `vlvae serve` on loopback: throughput and latency of /api/text for one client
and for several concurrent clients.

    python benchmarks/serve_load.py --run RUN [--classifier CLS] [--threads T] [--requests 200] \
        [--concurrency 1 8] [--n 8]
    python benchmarks/serve_load.py --url http://127.0.0.1:8000      # a server that is already running

With --run it starts `vlvae serve` on a free loopback port in a child process (so that the clients
do not share the server's interpreter), waits until it answers, and for each --concurrency C sends
--requests GET /api/text requests from C threads (request i asks for --n samples from q_Agg with
seed i); it stops the server and prints one row per C: throughput, p50/p95/max latency and errors,
and the throughput of each C relative to the first (exit status 1 if any request failed). Every
request has a timeout, so the test stops by itself. The clients run on the same machine as the
server and take some of its CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

__all__ = ["load_test", "format_result", "format_table", "main"]


def _get(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def load_test(
    url: str,
    requests: int = 200,
    concurrency: int = 8,
    n: int = 8,
    posterior: str = "agg",
    text: str | None = None,
    timeout: float = 60.0,
) -> dict:
    """Send ``requests`` GET /api/text requests from ``concurrency`` threads; latencies in milliseconds.

    Args:
        url: the server's base URL.
        text: the text (default: the server's example text from /api/vocab).
        timeout: seconds one request may take before it counts as an error.

    Returns:
        dict with p50_ms, p95_ms, max_ms, mean_ms, requests, errors (count), error_samples (the
        first few messages), seconds and requests_per_s.
    """
    base = url.rstrip("/")
    if text is None:
        vocab = _get(base + "/api/vocab", timeout)
        text = vocab["example"] or " ".join(slot[0] for slot in vocab["slots"])
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        query = urllib.parse.urlencode({"text": text, "posterior": posterior, "n": n, "seed": i})
        started = time.perf_counter()
        try:
            answer = _get(f"{base}/api/text?{query}", timeout)
            ok = all(len(c["samples"]) == n for c in answer["columns"] if c["available"])
            message = None if ok else f"request {i}: fewer than {n} samples"
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            detail = ""
            if isinstance(exc, urllib.error.HTTPError):
                detail = exc.read().decode("utf-8", "replace")[:200]
            message = f"request {i}: {exc} {detail}".strip()
        elapsed = 1000 * (time.perf_counter() - started)
        with lock:
            if message is None:
                latencies.append(elapsed)
            else:
                errors.append(message)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(requests)))
    seconds = time.perf_counter() - started
    return {
        "url": base,
        "text": text,
        "posterior": posterior,
        "n": n,
        "requests": requests,
        "concurrency": concurrency,
        "errors": len(errors),
        "error_samples": errors[:5],
        "p50_ms": _percentile(latencies, 0.50),
        "p95_ms": _percentile(latencies, 0.95),
        "max_ms": max(latencies) if latencies else float("nan"),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "seconds": seconds,
        "requests_per_s": requests / seconds,
    }


def format_result(result: dict) -> str:
    """One readable block of a :func:`load_test` result."""
    lines = [
        f"{result['requests']} requests of {result['n']} samples from q_{result['posterior']} "
        f'("{result["text"]}"), {result["concurrency"]} concurrent, {result["url"]}',
        f"latency p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, "
        f"max {result['max_ms']:.1f} ms, mean {result['mean_ms']:.1f} ms; "
        f"{result['requests_per_s']:.1f} requests/s over {result['seconds']:.1f} s",
        f"errors: {result['errors']}",
    ]
    lines += [f"  {e}" for e in result["error_samples"]]
    return "\n".join(lines)


def format_table(results: list[dict]) -> str:
    """One row per :func:`load_test` result (one per number of clients), with the throughput relative to
    the first row's."""
    first = results[0]
    head = (
        f"{first['n']} samples from q_{first['posterior']} per request, {first['url']}, "
        f'text "{first["text"]}"'
    )
    columns = f"{'clients':>7} {'requests':>8} {'req/s':>7} {'× first':>7} {'p50 ms':>7} {'p95 ms':>7} "
    columns += f"{'max ms':>7} {'errors':>6}"
    lines = [head, columns]
    for r in results:
        ratio = r["requests_per_s"] / first["requests_per_s"]
        lines.append(
            f"{r['concurrency']:>7} {r['requests']:>8} {r['requests_per_s']:>7.1f} {ratio:>7.2f} "
            f"{r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['max_ms']:>7.1f} {r['errors']:>6}"
        )
    for r in results:
        lines += [f"  {r['concurrency']} clients: {e}" for e in r["error_samples"]]
    return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(
    run: str, classifier: str | None, threads: int | None, timeout: float, batch_flows: bool = False
) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    command = [sys.executable, "-m", "vlvae.cli", "serve", "--run", run, "--port", str(port)]
    if classifier:
        command += ["--classifier", classifier]
    if threads:
        command += ["--threads", str(threads)]
    if batch_flows:
        command += ["--batch-flows"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server stopped: {server.stderr.read().strip()}")
        try:
            _get(url + "/api/health", 2)
            return server, url
        except OSError:
            time.sleep(0.3)
    _stop(server)
    raise SystemExit(f"the server did not answer within {timeout:.0f} s")


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.kill(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", help="run folder: start `vlvae serve` on it on a free loopback port")
    where.add_argument("--url", help="base URL of a running server")
    parser.add_argument("--classifier", help="classifier folder for the started server (adds correctness)")
    parser.add_argument(
        "--threads", type=int, help="torch threads of the started server (default: serve's, 1)"
    )
    parser.add_argument("--batch-flows", action="store_true", help="start the server with --batch-flows")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 8], help="numbers of concurrent clients, in turn"
    )
    parser.add_argument("--n", type=int, default=8, help="samples per request")
    parser.add_argument("--posterior", default="agg", choices=["agg", "true", "both"])
    parser.add_argument("--text", help="the text (default: the run's first validation text)")
    parser.add_argument("--warmup", type=int, default=5, help="requests sent first and not counted")
    args = parser.parse_args(argv)
    if args.requests < 1 or min(args.concurrency) < 1 or args.warmup < 0:
        parser.error("--requests and --concurrency must be at least 1, --warmup at least 0")
    server = None
    url = args.url
    if args.run:
        server, url = _start_server(
            args.run, args.classifier, args.threads, timeout=120, batch_flows=args.batch_flows
        )
    try:
        if args.warmup:
            load_test(url, args.warmup, max(args.concurrency), args.n, args.posterior, args.text)
        results = [
            load_test(url, args.requests, clients, args.n, args.posterior, args.text)
            for clients in args.concurrency
        ]
    finally:
        if server is not None:
            _stop(server)
    print(format_table(results))
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
