"""Fixtures shared by unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

CRD = Path(__file__).resolve().parents[2] / "charts/tandem/crds/mediaworkerpools.yaml"


@pytest.fixture(scope="session")
def pool_spec_validator() -> jsonschema.Draft4Validator:
    """The MediaWorkerPool CRD's spec schema as plain JSON Schema (draft 4, the subset Kubernetes'
    OpenAPI v3 schemas use), without the x-kubernetes extensions (CEL rules are checked apart)."""
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return jsonschema.Draft4Validator(strip(schema))
