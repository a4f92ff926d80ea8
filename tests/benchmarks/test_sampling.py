"""The benchmarks' shared sampler: CPU, memory and a request counter of a process, read at
marks and turned into per-minute rates (this test samples its own process)."""

from __future__ import annotations

import math
import os
import time

import pytest

from helpers import load_benchmark

sampling = load_benchmark("sampling.py", "bench_sampling")


def test_marks_give_cpu_and_requests_per_minute_of_a_process():
    counter = {"n": 0.0}
    probe = sampling.Sampler(os.getpid(), requests=lambda: counter["n"], every=0.05)
    start = probe.mark()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # burn 0.2 s of CPU
        pass
    counter["n"] = 30.0
    end = sampling.Mark(start.at + 30.0, probe.cpu(), probe.mark().requests)
    cpu, requests = probe.rates(start, end)
    assert requests == pytest.approx(60.0)  # 30 requests in half a minute
    assert 0.2 <= cpu <= 2.0  # at least the 0.2 CPU-s burnt, per half minute
    now = probe.rss_mib()  # first: the peak, read after, has seen every page of it
    assert probe.peak_rss_mib() >= now > 1
    loads = probe.stop()
    assert probe.samples and loads["min"] <= loads["mean"] <= loads["max"]


def test_a_sampler_without_a_process_samples_the_load_until_attached():
    probe = sampling.Sampler(every=0.02)
    time.sleep(0.1)
    assert probe.samples and math.isnan(probe.samples[0].cpu)
    with pytest.raises(RuntimeError):
        probe.cpu()
    probe.attach(os.getpid())
    assert probe.cpu() > 0
    assert math.isnan(probe.mark().requests)  # no counter: requests come from elsewhere
    probe.stop()
