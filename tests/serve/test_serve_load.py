"""benchmarks/serve_load.py: a bounded load test of the API, here small, on the tiny run's live server."""

import math

import pytest


@pytest.fixture(scope="module")
def serve_load(benchmark_script):
    return benchmark_script("serve_load")


def test_load_test_reports_latency_without_errors(served, serve_load):
    result = serve_load.load_test(served, requests=16, concurrency=4, n=8, posterior="both")
    assert result["errors"] == 0, result["error_samples"]
    assert result["requests"] == 16 and len(result["text"].split()) == 9
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["max_ms"] and math.isfinite(
        result["requests_per_s"]
    )
    text = serve_load.format_result(result)
    assert "p50" in text and "p95" in text and "errors: 0" in text


def test_load_test_counts_errors(served, serve_load):
    result = serve_load.load_test(served, requests=3, concurrency=2, n=8, text="small pink")
    assert (
        result["errors"] == 3 and "400" in result["error_samples"][0] and "pink" in result["error_samples"][0]
    )
    assert math.isnan(result["p50_ms"])


def test_table_of_one_and_several_clients(served, serve_load):
    results = [serve_load.load_test(served, requests=8, concurrency=c, n=4) for c in (1, 4)]
    table = serve_load.format_table(results).splitlines()
    assert "clients" in table[1] and "p95 ms" in table[1] and "req/s" in table[1]
    rows = [line.split() for line in table[2:]]
    assert [row[0] for row in rows] == ["1", "4"] and [row[1] for row in rows] == ["8", "8"]
    assert rows[0][3] == "1.00" and float(rows[1][3]) == pytest.approx(
        results[1]["requests_per_s"] / results[0]["requests_per_s"], abs=0.01
    )
    assert [row[-1] for row in rows] == ["0", "0"]
