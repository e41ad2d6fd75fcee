"""The Helm chart, rendered by the real Helm engine: every object validates against Kubernetes'
schemas, every pool against its CRD and the operator's own parser, every environment variable is a
setting the service knows and parses, and values.schema.json refuses bad values."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pydantic
import pytest
import yaml

from tandem.autoscaler.deployment import worker_deployment
from tandem.autoscaler.settings import Settings as AutoscalerSettings
from tandem.autoscaler.spec import parse_spec
from tandem.common.settings import ServiceSettings
from tandem.matchmaking.settings import Settings as MatchmakingSettings
from tandem.media.settings import Settings as MediaSettings
from tandem.orders.settings import Settings as OrdersSettings
from tandem.signaling.settings import Settings as SignalingSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts/tandem"
PROFILES = sorted((CHART / "profiles").glob("*.yaml"))
POOL: dict[str, Any] = {
    "name": "p",
    "capacity": {"callsPerWorker": 8},
    "autoscaling": {"minWorkers": 1, "maxWorkers": 2},
}
SETTINGS: dict[str, type[ServiceSettings]] = {
    "signaling": SignalingSettings,
    "matchmaking": MatchmakingSettings,
    "orders": OrdersSettings,
    "media-autoscaler": AutoscalerSettings,
    "media-worker": MediaSettings,
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values or {}, name="tandem", namespace="tandem")
    return [
        doc for path, text in manifests.items() if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc
    ]


def profile(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def pod_templates(documents: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(component, pod template) of every Deployment and every pool's worker template."""
    for doc in documents:
        if doc["kind"] in {"Deployment", "MediaWorkerPool"}:
            yield doc["metadata"]["labels"]["app.kubernetes.io/name"], doc["spec"]["template"]


@pytest.mark.parametrize("values_file", [None, *PROFILES], ids=lambda p: p.stem if p else "defaults")
def test_every_object_validates_against_kubernetes_and_the_crd(
    values_file: Path | None, pool_spec_validator: jsonschema.Draft4Validator
) -> None:
    documents = render(profile(values_file) if values_file else None)
    kinds = {doc["kind"] for doc in documents}
    assert {"Deployment", "Service", "PodDisruptionBudget", "Role", "MediaWorkerPool"} <= kinds
    for doc in documents:
        if doc["kind"] == "MediaWorkerPool":
            pool_spec_validator.validate(doc["spec"])
            parse_spec(doc["spec"])
            kubernetes_validate.validate(
                {
                    "apiVersion": "v1",
                    "kind": "PodTemplate",
                    "metadata": {"name": "x"},
                    "template": doc["spec"]["template"],
                },
                kubernetes_validate.latest_version(),
                strict=True,
            )
        else:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("values_file", [None, *PROFILES], ids=lambda p: p.stem if p else "defaults")
def test_every_variable_is_a_setting_the_service_parses(
    values_file: Path | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = profile(values_file) if values_file else {}
    values.setdefault("signaling", {})["settings"] = {"ring_timeout_s": 15}
    # YAML numbers reach Helm as floats; large ones must still render as integers
    values.setdefault("orders", {})["settings"] = {"db_statement_timeout_ms": 10_000_000, "outbox_poll_interval_s": 0.5}
    values["common"] = {"maxPayloadBytes": 4_194_304}
    values["mediaWorker"] = {
        "iceServers": ["turn:turn.example.com:3478"],
        "turnCredentials": {"existingSecret": "turn"},
        "announceNodeIP": True,
    }
    for component, template in pod_templates(render(values)):
        settings = SETTINGS[component]
        prefix = str(settings.model_config["env_prefix"])
        (container,) = template["spec"]["containers"]
        for var in container["env"]:
            assert var["name"].startswith(prefix), f"{component}: {var['name']} lacks {prefix}"
            field = var["name"].removeprefix(prefix).lower()
            assert field in settings.model_fields, f"{component}: {var['name']} is no setting"
            # values from the downward API and Secrets arrive at run time; stand in for them
            field_path = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            stand_in = "10.0.0.7" if field_path == "status.hostIP" else "stand-in-0123456789abcdef0123456789"
            monkeypatch.setenv(var["name"], var.get("value", stand_in))
        parsed = settings()
        assert parsed.http_port == 8080
        assert parsed.log_format == "json"
        for var in container["env"]:
            monkeypatch.delenv(var["name"])


def test_services_stop_within_their_grace_period() -> None:
    for doc in render({"common": {"drainTimeoutSeconds": 3600}}):
        if doc["kind"] != "Deployment" or doc["metadata"]["name"] == "media-autoscaler":
            continue
        pod = doc["spec"]["template"]["spec"]
        env = {v["name"]: v.get("value") for v in pod["containers"][0]["env"]}
        (drain,) = (float(v) for k, v in env.items() if k.endswith("_DRAIN_TIMEOUT_S") and v is not None)
        assert pod["terminationGracePeriodSeconds"] > drain == 3600
        assert doc["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("max_drain_s", [1, 45, 86400])
def test_the_operator_turns_a_rendered_pool_into_workers_that_start_and_drain_in_time(
    max_drain_s: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {**POOL, "capacity": {"callsPerWorker": 5}, "drain": {"maxDrainSeconds": max_drain_s}}
    (pool,) = (d for d in render({"mediaWorkerPools": [values]}) if d["kind"] == "MediaWorkerPool")
    deployment = worker_deployment("p", "tandem", parse_spec(pool["spec"]), replicas=1)
    kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)
    pod = deployment["spec"]["template"]["spec"]
    for var in pod["containers"][0]["env"]:
        monkeypatch.setenv(var["name"], var.get("value", "worker-0"))
    worker = MediaSettings()
    assert worker.capacity == 5
    assert worker.pool == "p"
    assert worker.drain_timeout_s == max_drain_s < pod["terminationGracePeriodSeconds"]


def test_containers_run_unprivileged_with_probes_and_resources() -> None:
    for component, template in pod_templates(render()):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, component
        (container,) = pod["containers"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, component
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], component
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", component
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", component
        assert container["resources"]["requests"], component
        assert container["resources"]["limits"]["memory"], component


def test_secrets_come_from_secrets_and_dev_tokens_are_off_by_default() -> None:
    env = {
        component: {v["name"]: v for v in template["spec"]["containers"][0]["env"]}
        for component, template in pod_templates(render())
    }
    assert env["signaling"]["TANDEM_SIGNALING_JWT_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "tandem-signaling-jwt"
    assert env["orders"]["TANDEM_ORDERS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "tandem-orders-db"
    assert env["signaling"]["TANDEM_SIGNALING_DEV_MODE"]["value"] == "false"
    assert "TANDEM_MEDIA_ICE_CREDENTIAL" not in env["media-worker"]
    (worker,) = (
        template["spec"]["containers"][0]["env"]
        for component, template in pod_templates(render({"mediaWorker": {"turnCredentials": {"existingSecret": "t"}}}))
        if component == "media-worker"
    )
    credential = next(v for v in worker if v["name"] == "TANDEM_MEDIA_ICE_CREDENTIAL")
    assert credential["valueFrom"]["secretKeyRef"] == {"name": "t", "key": "credential"}


def test_the_operator_runs_one_replica_with_namespaced_rbac_that_never_deletes() -> None:
    documents = render()
    (operator,) = (d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "media-autoscaler")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    assert not {d["kind"] for d in documents} & {"ClusterRole", "ClusterRoleBinding"}
    (role,) = (d for d in documents if d["kind"] == "Role")
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert not verbs & {"delete", "deletecollection", "*", "escalate", "bind"}
    # owner references with blockOwnerDeletion need update on the owner's finalizers
    assert {"apiGroups": ["tandem.dev"], "resources": ["mediaworkerpools/finalizers"], "verbs": ["update"]} in role[
        "rules"
    ]
    assert not any(d["kind"] == "Role" for d in render({"mediaAutoscaler": {"enabled": False}}))


def test_disruption_budgets_take_counts_or_percentages() -> None:
    documents = render({"matchmaking": {"podDisruptionBudget": {"maxUnavailable": "50%"}}})
    (budget,) = (d for d in documents if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "matchmaking")
    assert budget["spec"]["maxUnavailable"] == "50%"
    kubernetes_validate.validate(budget, kubernetes_validate.latest_version(), strict=True)


def test_the_ingress_publishes_the_client_socket_and_nothing_else() -> None:
    assert not any(d["kind"] == "Ingress" for d in render())
    values = {"signaling": {"ingress": {"enabled": True, "host": "consult.example.com", "tlsSecret": "consult-tls"}}}
    (ingress,) = (d for d in render(values) if d["kind"] == "Ingress")
    kubernetes_validate.validate(ingress, kubernetes_validate.latest_version(), strict=True)
    (rule,) = ingress["spec"]["rules"]
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [("/v1/ws", "Exact")]
    assert ingress["spec"]["tls"] == [{"hosts": ["consult.example.com"], "secretName": "consult-tls"}]


def test_an_enabled_hpa_owns_the_replica_count() -> None:
    assert not any(d["kind"] == "HorizontalPodAutoscaler" for d in render())
    values = {"signaling": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12}}}
    documents = render(values)
    (hpa,) = (d for d in documents if d["kind"] == "HorizontalPodAutoscaler")
    kubernetes_validate.validate(hpa, kubernetes_validate.latest_version(), strict=True)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "signaling"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    replicas = {d["metadata"]["name"]: d["spec"].get("replicas") for d in documents if d["kind"] == "Deployment"}
    assert replicas["signaling"] is None
    assert replicas["matchmaking"] == 2


def test_network_policies_select_every_pod_and_open_only_what_it_serves() -> None:
    assert not any(d["kind"] == "NetworkPolicy" for d in render())
    documents = render({"networkPolicy": {"enabled": True}})
    policies = [d for d in documents if d["kind"] == "NetworkPolicy"]
    for policy in policies:
        kubernetes_validate.validate(policy, kubernetes_validate.latest_version(), strict=True)
    for component, template in pod_templates(documents):
        labels = template["metadata"]["labels"]
        (policy,) = (p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items())
        rules = policy["spec"]["ingress"]
        from_anywhere = {port["protocol"] for rule in rules if "from" not in rule for port in rule["ports"]}
        expected = {"signaling": {"TCP"}, "media-worker": {"UDP"}}.get(component, set())
        assert from_anywhere == expected, component


def test_every_pod_pulls_with_the_named_secrets() -> None:
    documents = render({"image": {"pullSecrets": ["registry-a", "registry-b"]}})
    for component, template in pod_templates(documents):
        secrets = template["spec"]["imagePullSecrets"]
        assert secrets == [{"name": "registry-a"}, {"name": "registry-b"}], component
    for doc in documents:
        if doc["kind"] == "Deployment":
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_image_overrides_win_over_registry_and_tag() -> None:
    values = {
        "image": {
            "registry": "registry.example.com/tandem",
            "tag": "1.2.3",
            "overrides": {"signaling": "x/y@sha256:ab"},
        }
    }
    images = {
        component: template["spec"]["containers"][0]["image"] for component, template in pod_templates(render(values))
    }
    assert images["signaling"] == "x/y@sha256:ab"
    assert images["orders"] == "registry.example.com/tandem/orders:1.2.3"
    assert images["media-worker"] == "registry.example.com/tandem/media-worker:1.2.3"


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"signaling": {"replicas": 0}}, "/signaling/replicas"),
        ({"signaling": {"devMode": "yes"}}, "/signaling/devMode"),
        ({"nats": {"url": "http://nats"}}, "/nats/url"),
        ({"mediaWorker": {"iceServers": ["stun.example.com"]}}, "/mediaWorker/iceServers/0"),
        ({"orders": {"settings": {"Database URL": "x"}}}, "Database URL"),
        ({"mediaWorkerPools": []}, "/mediaWorkerPools"),
        (
            {"mediaWorkerPools": [{**POOL, "drain": {"maxDrainSeconds": 0}}]},
            "/mediaWorkerPools/0/drain/maxDrainSeconds",
        ),
        (
            {"mediaWorkerPools": [{**POOL, "drain": {"maxDrainSeconds": 90000}}]},
            "/mediaWorkerPools/0/drain/maxDrainSeconds",
        ),
        (
            {
                "mediaWorkerPools": [
                    {
                        "name": "Bad_Name",
                        "capacity": {"callsPerWorker": 8},
                        "autoscaling": {"minWorkers": 1, "maxWorkers": 2},
                    }
                ]
            },
            "/mediaWorkerPools/0/name",
        ),
        ({"signalling": {"replicas": 2}}, "signalling"),
        ({"orders": {"settings": {"database_url": "postgresql://x"}}}, "database_url"),
        ({"signaling": {"settings": {"http_port": 9000}}}, "http_port"),
        ({"nats": {"url": "nats://a,http://b"}}, "/nats/url"),
    ],
)
def test_the_values_schema_names_what_is_wrong(values: dict[str, Any], where: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as error:
        chart.validate_schema(values)
    assert where in str(error.value)


def test_a_free_form_setting_reaches_the_service_which_refuses_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    # the values schema cannot know every service setting; the service's own parser does
    for component, template in pod_templates(render({"matchmaking": {"settings": {"idle_cap_minutes": "soon"}}})):
        if component != "matchmaking":
            continue
        for var in template["spec"]["containers"][0]["env"]:
            monkeypatch.setenv(var["name"], var.get("value", "stand-in"))
        with pytest.raises(pydantic.ValidationError, match="idle_cap_minutes"):
            MatchmakingSettings()


def test_helm_lint_finds_no_errors() -> None:
    report = helm.lint(CHART)
    assert report["errors"] == []
    assert all(message["severity"] < 2 for message in report["messages"]), report["messages"]
