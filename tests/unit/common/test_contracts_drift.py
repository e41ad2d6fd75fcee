"""The committed generated code is exactly what `make proto` produces from proto/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
GENERATED = ROOT / "services/common/src/tandem/v1"


def test_generated_contracts_match_the_proto_files(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto/tandem/v1").glob("*.proto"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", "proto", f"--python_out={tmp_path}",
         f"--mypy_out={tmp_path}", *protos],
        cwd=ROOT, check=True, capture_output=True, env=env,
    )  # fmt: skip
    fresh = {p.name: p.read_text() for p in (tmp_path / "tandem/v1").iterdir()}
    committed = {p.name: p.read_text() for p in GENERATED.iterdir() if p.suffix in (".py", ".pyi")}
    assert sorted(committed) == sorted(fresh), "generated files differ from proto/: run `make proto`"
    for name, text in fresh.items():
        assert committed[name] == text, f"{name} is stale: run `make proto`"
