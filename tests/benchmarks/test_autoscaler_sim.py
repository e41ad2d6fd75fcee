"""Issue 5's benchmark: 24 h of calls in three markets, the operator against a reactive HPA-like
baseline and a perfect-foresight oracle, in one run of virtual time.

Run with `make bench`; it prints the table recorded in docs/benchmarks.md and redraws
docs/autoscaling-capacity.png.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tandem.autoscaler.sim import (
    Call,
    DecisionPolicy,
    Market,
    OraclePolicy,
    Policy,
    SimConfig,
    SimResult,
    simulate,
)
from tandem.autoscaler.spec import PoolSpec, parse_spec

MIN_WORKERS = 2
CALLS_PER_WORKER = 8
MARKETS = (
    # Jakarta's evening needs ~80 workers; its cluster stops at 70, so its peak spills over.
    Market("ap-southeast", "Asia/Jakarta", 40, 640, ("eu-west", "us-east")),
    Market("eu-west", "Europe/Berlin", 30, 480, ("us-east", "ap-southeast")),
    Market("us-east", "America/New_York", 40, 560, ("eu-west", "ap-southeast")),
)
MAX_WORKERS = {"ap-southeast": 70, "eu-west": 120, "us-east": 120}
CONFIG = SimConfig(markets=MARKETS, start=datetime(2026, 3, 2, tzinfo=UTC), calls_per_worker=CALLS_PER_WORKER)
PLOT = Path(__file__).resolve().parents[2] / "docs" / "autoscaling-capacity.png"


def pool_spec(market: Market, **autoscaling: Any) -> PoolSpec:
    """The market's pool: 2 to MAX_WORKERS workers of 8 calls, with `autoscaling` on top."""
    return parse_spec(
        {
            "region": market.region,
            "image": "tandem/media-worker",
            "capacity": {"callsPerWorker": CALLS_PER_WORKER},
            "autoscaling": {
                "minWorkers": MIN_WORKERS,
                "maxWorkers": MAX_WORKERS[market.region],
                **autoscaling,
            },
            "spillover": {"neighbours": list(market.neighbours)},
        }
    )


def operator_spec(market: Market) -> PoolSpec:
    evening = {
        "name": "evening",
        "cron": "30 17 * * *",
        "timeZone": market.zone,
        "durationMinutes": 300,
        "minWorkers": int(0.4 * market.peak_calls / CALLS_PER_WORKER),
    }
    return pool_spec(
        market,
        buffer={"calls": 8, "percent": 5},
        # Spikes shorter than 90 s are the buffer's job; 15 min of quiet before a scale-down.
        behavior={
            "tolerance": 0.1,
            "scaleUp": {"stabilizationWindowSeconds": 90},
            "scaleDown": {"stabilizationWindowSeconds": 900},
        },
        schedules=[evening],
    )


def baseline_spec(market: Market) -> PoolSpec:
    """Kubernetes HPA's default behaviour on utilization with a 70 % target: nothing but load, no
    schedules, no absolute buffer, no spillover demand."""
    return pool_spec(market, buffer={"percent": 30}, behavior={"tolerance": 0.1})


def policies() -> list[Any]:
    def operator(_: Sequence[Call]) -> Policy:
        specs = {m.region: operator_spec(m) for m in MARKETS}
        return DecisionPolicy("operator", specs, counts_spillover=True)

    def baseline(_: Sequence[Call]) -> Policy:
        specs = {m.region: baseline_spec(m) for m in MARKETS}
        return DecisionPolicy("hpa-baseline", specs, counts_spillover=False)

    def oracle(calls: Sequence[Call]) -> Policy:
        return OraclePolicy(CONFIG, calls, MIN_WORKERS)

    return [operator, baseline, oracle]


def table(results: Sequence[SimResult]) -> str:
    lines = [
        "| policy | region | calls | admitted in region | admitted with spillover | cut at drain deadline "
        "| worker-hours | scale events/h | flips/h (max in any hour) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        for region in result.regions.values():
            demand = max(1, region.demand_calls)
            lines.append(
                f"| {result.policy} | {region.region} | {region.demand_calls} "
                f"| {100 * region.admitted_in_region / demand:.2f} % "
                f"| {100 * (region.admitted_in_region + region.admitted_spilled) / demand:.3f} % "
                f"| {region.cut_calls} | {region.worker_hours:.1f} | {region.scale_events / 24:.2f} "
                f"| {region.flips / 24:.2f} ({region.max_flips_in_an_hour}) |"
            )
        lines.append(
            f"| **{result.policy}** | all | {sum(r.demand_calls for r in result.regions.values())} "
            f"| {100 * result.admitted_in_region:.2f} % | {100 * result.admitted_with_spillover:.3f} % "
            f"| {sum(r.cut_calls for r in result.regions.values())} | {result.worker_hours:.1f} | | |"
        )
    return "\n".join(lines)


def plot(results: Sequence[SimResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(MARKETS), 1, figsize=(11, 3.2 * len(MARKETS)), sharex=True)
    for ax, market in zip(axes, MARKETS, strict=True):
        first = results[0].regions[market.region]
        ax.plot(first.series_t, first.series_demand, color="black", linewidth=1.0, label="demand (calls)")
        for result, color in zip(results, ("tab:blue", "tab:orange", "tab:green"), strict=False):
            region = result.regions[market.region]
            ax.plot(region.series_t, region.series_capacity, color=color, linewidth=0.9, label=f"{result.policy}")
        ax.axhline(MAX_WORKERS[market.region] * CALLS_PER_WORKER, color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(f"{market.region} ({market.zone}): accepting capacity vs demand")
        ax.set_ylabel("calls")
        ax.legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("hour of the day (UTC)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def test_a_day_of_three_markets() -> None:
    results = simulate(CONFIG, policies(), MIN_WORKERS)
    operator, baseline, oracle = results
    print()
    print(table(results))
    ratio_oracle = operator.worker_hours / oracle.worker_hours
    ratio_baseline = operator.worker_hours / baseline.worker_hours
    print(f"\noperator worker-hours: {ratio_oracle:.3f}x the oracle's, {ratio_baseline:.3f}x the baseline's")
    plot(results, PLOT)

    assert operator.admitted_with_spillover >= 0.999
    assert ratio_oracle <= 1.2
    assert operator.worker_hours <= baseline.worker_hours
    for region in operator.regions.values():
        assert region.max_flips_in_an_hour <= 2, region.region
