"""The Dockerfile and skaffold.yaml agree with the workspace: every service has a build target whose
entry point is a command its distribution installs, images run unprivileged, and skaffold builds
exactly the images the chart deploys. (No Docker engine here: the images themselves are not built.)"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
COMPONENTS = {
    "signaling": "services/signaling",
    "matchmaking": "services/matchmaking",
    "orders": "services/orders",
    "media-autoscaler": "operators/media-autoscaler",
    "media-worker": "services/media-worker",
}


def stages() -> dict[str, list[dict[str, Any]]]:
    """Instructions of each named build stage."""
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    result: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            words = instruction["value"].split()
            current = result.setdefault(words[-1] if len(words) == 3 else "", [])
        current.append(instruction)
    return result


def distribution(component: str) -> dict[str, Any]:
    return dict(tomllib.loads((ROOT / COMPONENTS[component] / "pyproject.toml").read_text())["project"])


def skaffold() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "skaffold.yaml").read_text()))


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_service_has_a_target_running_what_its_distribution_installs(component: str) -> None:
    instructions = stages()[component]
    assert instructions[0]["value"].split()[0] == "runtime"
    (entrypoint,) = (json.loads(i["value"]) for i in instructions if i["instruction"] == "ENTRYPOINT")
    scripts = distribution(component).get("scripts", {})
    if entrypoint[:2] == ["python", "-m"]:
        module = entrypoint[2]
        assert (ROOT / COMPONENTS[component] / "src" / module.replace(".", "/") / "__main__.py").exists()
    else:
        assert entrypoint[0] in scripts, (
            f"{component}: {entrypoint[0]} is not a script of {distribution(component)['name']}"
        )


def test_dependencies_install_from_every_members_manifest_before_the_sources_are_copied() -> None:
    build = stages()["build"]
    first_sync = next(i for i, step in enumerate(build) if "--no-install-workspace" in step["value"])
    copied = {
        source for step in build[:first_sync] if step["instruction"] == "COPY" for source in step["value"].split()[:-1]
    }
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    members = {str(path.relative_to(ROOT)) for pattern in patterns for path in ROOT.glob(f"{pattern}/pyproject.toml")}
    assert members | {"uv.lock", "pyproject.toml"} <= copied
    assert not any(step["value"].startswith(". ") for step in build[:first_sync])


def test_images_run_as_an_unprivileged_user() -> None:
    users = [i["value"] for i in stages()["runtime"] if i["instruction"] == "USER"]
    assert users
    assert users[-1] not in {"0", "root"}


def test_the_build_context_leaves_out_local_environments() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".tools", ".run", ".git"} <= set(ignored)


def test_skaffold_builds_every_component_from_its_distribution() -> None:
    artifacts = {a["image"]: a["docker"] for a in skaffold()["build"]["artifacts"]}
    assert set(artifacts) == set(COMPONENTS)
    for component, docker in artifacts.items():
        assert docker["target"] == component
        assert docker["buildArgs"]["PACKAGE"] == distribution(component)["name"]


def test_skaffold_deploys_the_chart_with_the_images_it_built() -> None:
    (release,) = skaffold()["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").exists()
    overrides = {
        key.removeprefix("image.overrides."): template
        for key, template in release["setValueTemplates"].items()
        if key.startswith("image.overrides.")
    }
    assert set(overrides) == set(COMPONENTS)
    for component, template in overrides.items():
        assert template == "{{.IMAGE_FULLY_QUALIFIED_" + component.replace("-", "_") + "}}"


def test_every_profile_adds_a_values_file_that_exists() -> None:
    for profile in skaffold()["profiles"]:
        for patch in profile["patches"]:
            assert patch["path"] == "/deploy/helm/releases/0/valuesFiles/-"
            assert (ROOT / patch["value"]).exists(), patch["value"]
