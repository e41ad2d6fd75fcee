"""The CRD validates against Kubernetes' schemas, and its schema and CEL rules reject what the
operator's own validation rejects. (The operator's Deployment and RBAC are chart templates, tested
in tests/unit/deploy.)"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tandem.autoscaler.spec import InvalidSpecError, parse_spec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "charts/tandem/crds/mediaworkerpools.yaml"

VALID: dict[str, Any] = {
    "region": "ap-southeast",
    "image": "tandem/media-worker:1",
    "capacity": {"callsPerWorker": 8},
    "autoscaling": {
        "minWorkers": 2,
        "maxWorkers": 40,
        "buffer": {"calls": 8, "percent": 10},
        "behavior": {
            "tolerance": 0.1,
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
            },
            "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Max"},
        },
        "schedules": [
            {
                "name": "jakarta",
                "cron": "30 17 * * *",
                "timeZone": "Asia/Jakarta",
                "durationMinutes": 300,
                "minWorkers": 20,
            }
        ],
        "syncIntervalSeconds": 15,
        "fallback": {"afterSeconds": 30, "minWorkers": 4},
    },
    "drain": {"maxDrainSeconds": 1800},
    "spillover": {"neighbours": ["eu-west", "us-east"]},
}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _cel_messages() -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.update(rule["message"] for rule in node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(_documents(CRD)[0])
    return found


def test_the_crd_validates_against_kubernetes_schemas() -> None:
    for document in _documents(CRD):
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_a_sensible_spec_passes_both_validations(pool_spec_validator: jsonschema.Draft4Validator) -> None:
    pool_spec_validator.validate(VALID)
    parse_spec(VALID)


def _with(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node[key]
    node[last] = value
    return spec


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("autoscaling.minWorkers", -1),
        ("autoscaling.buffer.calls", -5),
        ("autoscaling.buffer.percent", 95),
        ("capacity.callsPerWorker", 0),
        ("autoscaling.behavior.tolerance", 2),
        ("drain.maxDrainSeconds", -1),
        ("autoscaling.behavior.scaleDown.selectPolicy", "Sometimes"),
    ],
)
def test_the_schema_and_the_operator_reject_out_of_range_values(
    path: str, value: Any, pool_spec_validator: jsonschema.Draft4Validator
) -> None:
    spec = _with(path, value)
    with pytest.raises(jsonschema.ValidationError):
        pool_spec_validator.validate(spec)
    with pytest.raises(InvalidSpecError):
        parse_spec(spec)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("autoscaling.minWorkers", 50, "minWorkers must not exceed maxWorkers"),
        (
            "spillover.neighbours",
            ["ap-southeast"],
            "spillover.neighbours must not contain the pool's own region",
        ),
        ("autoscaling.fallback", {"minWorkers": 41}, "fallback.minWorkers must not exceed maxWorkers"),
    ],
)
def test_cross_field_rules_are_cel_rules_the_operator_enforces_too(
    path: str, value: Any, message: str, pool_spec_validator: jsonschema.Draft4Validator
) -> None:
    spec = _with(path, value)
    pool_spec_validator.validate(spec)  # per-field checks cannot see it
    assert message in _cel_messages()
    with pytest.raises(InvalidSpecError, match=message):
        parse_spec(spec)


def test_unknown_time_zones_and_cron_expressions_are_refused_clearly() -> None:
    schedule = {
        "name": "x",
        "cron": "0 25 * * *",
        "timeZone": "Mars/Olympus",
        "durationMinutes": 5,
        "minWorkers": 1,
    }
    with pytest.raises(InvalidSpecError) as error:
        parse_spec(_with("autoscaling.schedules", [schedule]))
    assert "invalid cron expression" in str(error.value)
    assert "unknown IANA time zone 'Mars/Olympus'" in str(error.value)
