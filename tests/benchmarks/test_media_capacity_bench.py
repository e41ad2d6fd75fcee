"""Media worker capacity: calls per core at event-loop lag p99 < 20 ms and < 1 % frame loss.

The worker runs as its own process pinned to one core (`taskset`); the load generator
(`media_load.py`, another process pinned to the other core) replays pre-encoded VP8 640x480 30 fps
(~1.2 Mbit/s, a keyframe every 2 s) and 20 ms Opus packets on both legs of every call and counts
what comes back without decoding. Calls are added in steps; at each step the worker's CPU, its loop
lag (its own histogram) and the frame and audio loss over a few seconds are recorded:

- (a) the transcoding relay (every frame decoded and re-encoded: the baseline),
- (b) video and audio forwarded encoded,
- (c) video forwarded, the call-audio DSP on both audio directions (at 48 kHz, the default, and at
  16 kHz).

Ratios against (a), measured in the same run, are what to compare across machines; the figures
are for a shared 2-core machine. Run: `make bench PYTEST_ARGS=-k media_capacity`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tandem.devstack.nats import NatsServer
from tandem.devstack.ports import free_port

HERE = Path(__file__).parent
LOAD = HERE / "media_load.py"
MAX_LAG_MS = 20.0
MAX_LOSS = 0.01
CONFIGURATIONS = {
    "(a) transcoding relay": ({"TANDEM_MEDIA_FORWARD_MEDIA": "false"}, [1, 2, 3, 4, 6]),
    "(b) forwarded": (
        {"TANDEM_MEDIA_AUDIO_PROCESSING": "false"},
        [10, 20, 30, 40, 50, 60, 70, 80, 100],
    ),
    "(c) forwarded + DSP both ways": ({"TANDEM_MEDIA_AUDIO_PROCESSING": "true"}, [5, 10, 15, 20, 25, 30, 35, 40]),
    "(c) at 16 kHz": (
        {"TANDEM_MEDIA_AUDIO_PROCESSING": "true", "TANDEM_MEDIA_AUDIO_SAMPLE_RATE": "16000"},
        [5, 10, 15, 20, 25, 30, 35, 40],
    ),
}


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def start_worker(nats_url: str, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ, "TANDEM_MEDIA_NATS_URL": nats_url, "TANDEM_MEDIA_HTTP_PORT": str(port),
        "TANDEM_MEDIA_REGION": "bench", "TANDEM_MEDIA_CAPACITY": "1000", "TANDEM_MEDIA_INSTANCE_ID": "bench-worker",
        "TANDEM_MEDIA_LOG_LEVEL": "WARNING", **env,
    }  # fmt: skip
    worker = subprocess.Popen([*pinned(1), sys.executable, "-m", "tandem.media"], env=environment)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return worker
        except OSError:
            time.sleep(0.2)
    worker.kill()
    raise AssertionError("the worker did not become ready")


def ramp(material: Path, nats_url: str, env: dict[str, str], levels: list[int]) -> list[dict[str, float]]:
    port = free_port()
    worker = start_worker(nats_url, env, port)
    try:
        command = [
            *pinned(0), sys.executable, str(LOAD), "run", str(material), "--nats", nats_url,
            "--worker-pid", str(worker.pid), "--metrics", f"http://127.0.0.1:{port}/metrics",
            "--levels", ",".join(map(str, levels)),
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=True)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def capacity(steps: list[dict[str, float]]) -> int:
    """The most calls of a step that met both bounds (0 if none did)."""
    good = [
        int(s["calls"])
        for s in steps
        if s["lag_p99_ms"] < MAX_LAG_MS and s["video_loss"] < MAX_LOSS and s["audio_loss"] < MAX_LOSS
    ]
    return max(good, default=0)


@pytest.mark.timeout(3600)
def test_media_capacity(tmp_path: Path) -> None:
    material = tmp_path / "material.pkl"
    subprocess.run([sys.executable, str(LOAD), "prepare", str(material)], check=True)
    results: dict[str, list[dict[str, float]]] = {}
    with NatsServer(tmp_path / "nats") as nats:
        for name, (env, levels) in CONFIGURATIONS.items():
            results[name] = ramp(material, nats.url, env, levels)
            print(name, results[name], flush=True)  # kept in the log even if a later configuration fails

    print("\nmedia worker capacity (worker pinned to one core; shared machine)")
    print(f"{'configuration':32} {'calls':>5} {'worker cores':>12} {'cores/call':>10} {'lag p99 ms':>10} "
          f"{'video loss':>10} {'audio loss':>10} {'us/packet':>9} {'gen cores':>9}")  # fmt: skip
    for name, steps in results.items():
        for s in steps:
            # CPU per packet the worker forwarded (received, rewritten or processed, sent).
            per_packet = s["worker_cores"] / s["packets_per_s"] * 1e6 if s["packets_per_s"] else 0.0
            print(
                f"{name:32} {int(s['calls']):5d} {s['worker_cores']:12.3f} {s['worker_cores'] / s['calls']:10.4f} "
                f"{s['lag_p99_ms']:10.1f} {s['video_loss']:10.2%} {s['audio_loss']:10.2%} {per_packet:9.1f} "
                f"{s['generator_cores']:9.2f}"
            )
    caps = {name: capacity(steps) for name, steps in results.items()}
    bound = {name: cpu_bound(steps) for name, steps in results.items()}
    baseline = max(caps["(a) transcoding relay"], 1)
    print()
    for name, calls in caps.items():
        print(
            f"{name:32} {calls:4d} calls/core within the bounds ({calls / baseline:.1f}x the relay); "
            f"CPU alone: {bound[name]:.1f} calls/core ({bound[name] / bound['(a) transcoding relay']:.1f}x)"
        )
    plot(results, HERE.parent.parent / "docs" / "media-capacity.png")
    # CPU time is what contention on a shared machine distorts least: the target ratio is on it.
    assert bound["(b) forwarded"] >= 10 * bound["(a) transcoding relay"]


def cpu_bound(steps: list[dict[str, float]]) -> float:
    """Calls one core would hold on CPU alone: 1 / (cores per call), from the busiest step that
    kept both bounds (or the first step)."""
    good = [s for s in steps if s["calls"] <= max(capacity(steps), steps[0]["calls"])]
    step = good[-1]
    return step["calls"] / step["worker_cores"] if step["worker_cores"] else 0.0


def plot(results: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cpu, lag) = plt.subplots(1, 2, figsize=(11, 4))
    for name, steps in results.items():
        calls = [s["calls"] for s in steps]
        cpu.plot(calls, [s["worker_cores"] for s in steps], marker="o", label=name)
        lag.plot(calls, [s["lag_p99_ms"] for s in steps], marker="o", label=name)
    cpu.set(xlabel="calls", ylabel="worker CPU (cores)", title="CPU vs calls (worker pinned to one core)")
    lag.set(xlabel="calls", ylabel="loop lag p99 (ms, histogram bucket)", yscale="log", title="event-loop lag")
    lag.axhline(MAX_LAG_MS, color="grey", linestyle=":")
    cpu.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
