"""infra/: terraform that parses, passes checkov, and agrees with the hub config."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import hcl2
import pytest

from tests.fixtures.tools import require_binary

PROJECT = Path(__file__).resolve().parents[1]
INFRA = PROJECT / "infra"
TF_FILES = sorted(INFRA.glob("*.tf"))


def test_there_is_terraform() -> None:
    assert {path.name for path in TF_FILES} >= {"versions.tf", "variables.tf", "outputs.tf"}


@pytest.mark.parametrize("path", [*TF_FILES, INFRA / "example.tfvars"], ids=lambda p: p.name)
def test_every_file_parses(path: Path) -> None:
    assert hcl2.loads(path.read_text())


def test_checkov_finds_nothing_and_every_skip_has_a_reason(tmp_path: Path) -> None:
    checkov = require_binary("checkov", "pip install checkov")
    args = ["-d", str(INFRA), "--framework", "terraform", "--quiet", "--compact", "-o", "json"]
    result = subprocess.run(
        [checkov, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        # Offline: no download of Bridgecrew's check mapping.
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        check=False,
    )
    report = json.loads(result.stdout)
    failed = [
        f"{c['check_id']} {c['resource']} {c['file_path']}:{c['file_line_range'][0]}"
        for c in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 100
    assert result.returncode == 0
    skip_lines = [
        line.strip()
        for path in TF_FILES
        for line in path.read_text().splitlines()
        if "checkov:skip" in line
    ]
    # Each inline skip is used: none is stale, none hides elsewhere.
    assert report["summary"]["skipped"] == len(skip_lines) > 0
    for line in skip_lines:
        check_id, _, reason = line.removeprefix("#checkov:skip=").partition(":")
        assert check_id.startswith("CKV"), line
        assert len(reason.split()) >= 4, f"skip without a reason: {line}"
