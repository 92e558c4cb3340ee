"""infra/: terraform that parses, passes checkov, and agrees with the hub config."""

from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hcl2.api import loads as hcl_loads
from ruamel.yaml import YAML

from bot import helm, infra, kubeversion, records
from bot.errors import Location
from bot.source import WorkTree
from tests.fixtures.repos import replace_in, validate, write
from tests.fixtures.tools import require_binary

PROJECT = Path(__file__).resolve().parents[1]
INFRA = PROJECT / "infra"
TF_FILES = sorted(INFRA.glob("*.tf"))


def test_there_is_terraform() -> None:
    assert {path.name for path in TF_FILES} >= {"versions.tf", "variables.tf", "outputs.tf"}


@pytest.mark.parametrize("path", [*TF_FILES, INFRA / "example.tfvars"], ids=lambda p: p.name)
def test_every_file_parses(path: Path) -> None:
    assert hcl_loads(path.read_text())


def checkov_predates(version: str) -> bool:
    """Whether the importable checkov's CKV_AWS_339 ("EKS runs a supported Kubernetes
    version") knows only versions older than `version`: its list is written into the
    check and lags AWS's calendar (checkov 3.2.459 stops at 1.33, 3.3.30 at 1.35)."""
    try:
        module = importlib.import_module("checkov.terraform.checks.resource.aws.EKSPlatformVersion")
    except ImportError:
        return False
    known = [kubeversion.parse_version(v).key for v in module.check.get_expected_values()]
    return max(known) < kubeversion.parse_version(version).key


def test_checkov_finds_nothing_and_every_skip_has_a_reason(tmp_path: Path) -> None:
    checkov = require_binary("checkov", "pip install checkov")
    args = ["-d", str(INFRA), "--framework", "terraform", "--quiet", "--compact", "-o", "json"]
    # Not an inline skip: a checkov that knows the version still checks it, and one whose
    # list ends at or after it still fails a version that has left support.
    if checkov_predates(variable("kubernetes_version")["default"][0]):
        args += ["--skip-check", "CKV_AWS_339"]
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


# --- hubbot validate: the cross-check of infra/ against the hub config -------------------

PRIVATE = "deployments/tess-private/hubploy.yaml"
PUBLIC = "deployments/tess-public/hubploy.yaml"
TFVARS = "infra/example.tfvars"
VARIABLES = "infra/variables.tf"

SOPS_PRODUCTION = """\
creation_rules:
  - path_regex: deployments/[^/]+/secrets/staging\\.yaml$
    key_groups:
      - kms:
          - arn: arn:aws:kms:us-east-1:123456789012:alias/tess-sops-staging
            context: {env: staging}
        age: [age1frf6ydmdmcjlkuzpxpvyz7efevqysl2p5gy9xr2pwcxlg08pwazscpeyjn]
  - path_regex: deployments/[^/]+/secrets/prod\\.yaml$
    key_groups:
      - kms:
          - arn: arn:aws:kms:us-east-1:123456789012:alias/tess-sops-prod
            context: {env: prod}
        age: [age1lwaqxmmcy7hfztwfw68jgq3lgetwews0hg52zv8z4v9qgcngl46qp9j5se]
"""


def line_of(repo: Path, relative: str, needle: str, after: int = 1) -> int:
    lines = (repo / relative).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if i >= after and needle in line)


def mismatches(out: str) -> list[str]:
    """The problem lines under the cross-check's FAILED line."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("FAILED  infra/"))
    return [line.strip() for line in lines[start + 1 :] if line.startswith("  ")]


def test_the_repository_agrees_with_infra(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = validate(hub_repo, capsys)
    assert status == 0, out
    assert "ok      infra/ cross-check" in out


def test_production_sops_form_from_the_readme_agrees(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(hub_repo, ".sops.yaml", SOPS_PRODUCTION)
    status, out = validate(hub_repo, capsys)
    assert status == 0, out
    assert "ok      infra/ cross-check" in out


def test_cluster_name_in_one_hubploy_names_both_places(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, PUBLIC, "cluster: tess}", "cluster: tess-old}")
    here = line_of(hub_repo, PUBLIC, "cluster: tess-old")
    there = line_of(hub_repo, TFVARS, "cluster_name")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert "FAILED  infra/ cross-check: 1 problem(s)" in out
    assert mismatches(out) == [
        f'{PUBLIC}:{here}: cluster.aws.cluster is "tess-old" but infra/ has "tess" '
        f"({TFVARS}:{there}): make them the same"
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "region: us-east-1, cluster: tess}",
            "region: us-west-2, cluster: tess}",
            'cluster.aws.region is "us-west-2" but infra/ has "us-east-1" ({tfvars}:{region})',
        ),
        (
            'aws: {account_id: "123456789012", region: us-east-1}',
            'aws: {account_id: "210987654321", region: us-east-1}',
            'registry.aws.account_id is "210987654321" but infra/ has "123456789012" '
            "({tfvars}:{account})",
        ),
    ],
)
def test_region_and_account_of_cluster_and_registry(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str
) -> None:
    replace_in(hub_repo, PRIVATE, old, new)
    here = line_of(hub_repo, PRIVATE, new)
    region = line_of(hub_repo, TFVARS, "region")
    account = line_of(hub_repo, TFVARS, "account_id")
    status, out = validate(hub_repo, capsys, "tess-private")
    assert status == 1
    expected = message.format(tfvars=TFVARS, region=region, account=account)
    assert mismatches(out) == [f"{PRIVATE}:{here}: {expected}: make them the same"]


def test_ecr_repository_of_the_image(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replace_in(hub_repo, PUBLIC, "/tess-user-image", "/tess-image")
    here = line_of(hub_repo, PUBLIC, "/tess-image")
    there = line_of(
        hub_repo,
        VARIABLES,
        "default",
        after=line_of(hub_repo, VARIABLES, 'variable "ecr_repository"'),
    )
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert mismatches(out) == [
        f"{PUBLIC}:{here}: the ECR repository of image "
        '123456789012.dkr.ecr.us-east-1.amazonaws.com/tess-image is "tess-image" but infra/ '
        f'has "tess-user-image" ({VARIABLES}:{there}): make them the same'
    ]


def test_a_changed_infra_value_names_every_hubploy_that_disagrees(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, TFVARS, 'cluster_name      = "tess"', 'cluster_name      = "tess-2"')
    there = line_of(hub_repo, TFVARS, "cluster_name")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert mismatches(out) == [
        f'{hub}:{line_of(hub_repo, hub, "cluster: tess}")}: cluster.aws.cluster is "tess" but '
        f'infra/ has "tess-2" ({TFVARS}:{there}): make them the same'
        for hub in (PRIVATE, PUBLIC)
    ]


def test_a_default_in_variables_tf_is_used_when_tfvars_does_not_set_it(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, TFVARS, 'region            = "us-east-1"\n', "")
    replace_in(hub_repo, VARIABLES, 'default     = "us-east-1"', 'default     = "eu-west-1"')
    there = line_of(hub_repo, VARIABLES, '"eu-west-1"')
    here = line_of(hub_repo, PUBLIC, "cluster: tess}")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    assert (
        f'{PUBLIC}:{here}: cluster.aws.region is "us-east-1" '
        f'but infra/ has "eu-west-1" ({VARIABLES}:{there}): make them the same'
    ) in mismatches(out)


def test_namespace_the_user_role_does_not_trust(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, PUBLIC, "namespace: tess-public-prod", "namespace: tess-pub-prod")
    here = line_of(hub_repo, PUBLIC, "tess-pub-prod")
    there = line_of(
        hub_repo,
        VARIABLES,
        "default",
        after=line_of(hub_repo, VARIABLES, 'variable "hub_namespaces"'),
    )
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert mismatches(out) == [
        f"{PUBLIC}:{here}: namespace tess-pub-prod is not in infra/'s hub_namespaces "
        f"({VARIABLES}:{there}): its user pods could not assume the data role "
        "tess-user-data-read"
    ]


def test_irsa_annotation_in_the_hub_config(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, "hub/values.yaml", "role/tess-user-data-read", "role/tess-data")
    here = line_of(hub_repo, "hub/values.yaml", "role/tess-data")
    role = line_of(
        hub_repo,
        VARIABLES,
        "default",
        after=line_of(hub_repo, VARIABLES, 'variable "user_role_name"'),
    )
    account = line_of(hub_repo, TFVARS, "account_id")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    # hub/values.yaml is one file for all four hub environments: one message.
    assert mismatches(out) == [
        f"hub/values.yaml:{here}: userServiceAccount.roleArn is "
        '"arn:aws:iam::123456789012:role/tess-data" but infra/ has '
        '"arn:aws:iam::123456789012:role/tess-user-data-read" '
        f"(user_role_name at {VARIABLES}:{role}, account_id at {TFVARS}:{account}): "
        "make them the same"
    ]


def test_irsa_annotation_overridden_in_one_environment_points_there(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prod = "deployments/tess-private/config/prod.yaml"
    (hub_repo / prod).write_text(
        "userServiceAccount:\n  roleArn: arn:aws:iam::123456789012:role/other\n"
        + (hub_repo / prod).read_text()
    )
    status, out = validate(hub_repo, capsys)
    assert status == 1
    [problem] = mismatches(out)
    assert problem.startswith(
        f'{prod}:2: userServiceAccount.roleArn is "arn:aws:iam::123456789012:role/other" but'
    )


def test_user_service_account_name(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replace_in(
        hub_repo, "hub/values.yaml", "serviceAccountName: tess-user", "serviceAccountName: x"
    )
    here = line_of(hub_repo, "hub/values.yaml", "serviceAccountName: x")
    there = line_of(
        hub_repo,
        VARIABLES,
        "default",
        after=line_of(hub_repo, VARIABLES, 'variable "user_service_account"'),
    )
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert mismatches(out) == [
        f'hub/values.yaml:{here}: jupyterhub.singleuser.serviceAccountName is "x" but infra/ '
        f'has "tess-user" ({VARIABLES}:{there}): make them the same'
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "alias/tess-sops-staging",
            "alias/tess-sops-prod",
            "the staging rule names KMS alias/tess-sops-prod (that is the prod key) but infra/'s "
            'staging sops key is "alias/tess-sops-staging" ({variables}:{staging_alias}): '
            "the staging CI role can decrypt only that key",
        ),
        (
            "us-east-1:123456789012:alias/tess-sops-staging",
            "us-east-1:210987654321:alias/tess-sops-staging",
            "the account of staging's KMS key "
            'arn:aws:kms:us-east-1:210987654321:alias/tess-sops-staging is "210987654321" '
            'but infra/ has "123456789012" ({tfvars}:{account}): make them the same',
        ),
        (
            "context: {env: staging}",
            "context: {env: prod}",
            "the staging rule's KMS key arn:aws:kms:us-east-1:123456789012:alias/"
            "tess-sops-staging needs `context: {{env: staging}}`: the key policy lets CI "
            "decrypt only with it (infra/kms.tf:{condition})",
        ),
    ],
)
def test_kms_key_per_environment_in_sops_yaml(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str
) -> None:
    write(hub_repo, ".sops.yaml", SOPS_PRODUCTION.replace(old, new, 1))
    staging_alias = line_of(hub_repo, VARIABLES, "alias/tess-sops-staging")
    account = line_of(hub_repo, TFVARS, "account_id")
    condition = line_of(hub_repo, "infra/kms.tf", "kms:EncryptionContext:env")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    expected = message.format(
        variables=VARIABLES,
        staging_alias=staging_alias,
        tfvars=TFVARS,
        account=account,
        condition=condition,
    )
    # The staging rule (line 2) applies to both hubs' staging secrets: reported once.
    assert mismatches(out) == [f".sops.yaml:2: {expected}"]


def test_a_kms_key_named_by_id_is_checked_for_account_and_region(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    by_id = "arn:aws:kms:us-east-1:123456789012:key/0b7c1d2e-0000-4000-8000-000000000001"
    sops = SOPS_PRODUCTION.replace("arn:aws:kms:us-east-1:123456789012:alias/tess-sops-prod", by_id)
    write(hub_repo, ".sops.yaml", sops)
    status, out = validate(hub_repo, capsys)
    assert status == 0, out
    write(
        hub_repo,
        ".sops.yaml",
        sops.replace("us-east-1:123456789012:key", "eu-west-1:123456789012:key"),
    )
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert [line.split(": ", 1)[0] for line in mismatches(out)] == [".sops.yaml:8"]


def test_terraform_that_does_not_parse_is_an_error(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(hub_repo, "infra/broken.tf", 'resource "aws_s3_bucket" "x" {\n  bucket = \n}\n')
    status, out = validate(hub_repo, capsys)
    assert status == 1
    [problem] = mismatches(out)
    assert problem.startswith("infra/broken.tf")
    assert "not valid HCL" in problem
    assert "Traceback" not in out


def test_no_infra_directory_means_no_cross_check(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(hub_repo / "infra")
    status, out = validate(hub_repo, capsys)
    assert status == 0
    assert "infra/" not in out


@pytest.mark.parametrize("wrapped", [True, False])
def test_both_python_hcl2_output_shapes_read_the_same(wrapped: bool) -> None:
    # checkov's fork wraps attribute values in lists; python-hcl2 5+ keeps string quotes.
    raw = (
        [{"staging": {"alias": "alias/a"}, "n": 1}]
        if wrapped
        else {"staging": {"alias": '"alias/a"'}, '"n"': 1}
    )
    assert infra._attribute(raw, wrapped) == {"staging": {"alias": "alias/a"}, "n": 1}


def test_mismatch_is_a_github_annotation_on_the_hub_config(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, PUBLIC, "cluster: tess}", "cluster: tess-old}")
    here = line_of(hub_repo, PUBLIC, "cluster: tess-old")
    there = line_of(hub_repo, TFVARS, "cluster_name")
    status, out = validate(hub_repo, capsys, "--format", "github")
    assert status == 1
    assert (
        f"::error file={PUBLIC},line={here},title=hubbot validate infra/ cross-check::"
        f'cluster.aws.cluster is "tess-old" but infra/ has "tess" ({TFVARS}:{there}): '
        "make them the same"
    ) in out.splitlines()


def test_a_variable_without_value_is_an_error(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, TFVARS, 'account_id        = "123456789012"\n', "")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert mismatches(out) == [
        f"{TFVARS}: terraform variable `account_id` has no default in infra/*.tf and is not "
        f"set in {TFVARS}: hubbot needs its value to check the hub config against it"
    ]


def test_home_owner_of_hubs_with_efs_homes(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, "hub/values.yaml", "    uid: 1000", "    uid: 1001")
    here = line_of(hub_repo, "hub/values.yaml", "uid: 1001")
    there = line_of(
        hub_repo, VARIABLES, "default", after=line_of(hub_repo, VARIABLES, 'variable "home_uid"')
    )
    status, out = validate(hub_repo, capsys, "tess-private")
    assert status == 1
    assert mismatches(out) == [
        f'hub/values.yaml:{here}: jupyterhub.singleuser.uid is "1001" but infra/ has "1000" '
        f"({VARIABLES}:{there}): make them the same"
    ]
    # tess-public keeps no files: its uid is not tied to the EFS access points.
    status, out = validate(hub_repo, capsys, "tess-public")
    assert status == 0, out


def test_an_environment_infra_has_no_role_or_key_for(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staging_only = (
        "environments = {\n"
        "  staging = {\n"
        '    branch         = "staging"\n'
        '    ci_role_name   = "tess-ci-staging"\n'
        '    sops_key_alias = "alias/tess-sops-staging"\n'
        '    ecr_access     = "push"\n'
        "  }\n"
        "}\n"
    )
    (hub_repo / TFVARS).write_text((hub_repo / TFVARS).read_text() + staging_only)
    there = line_of(hub_repo, TFVARS, "environments")
    status, out = validate(hub_repo, capsys, "tess-private")
    assert status == 1
    here = line_of(hub_repo, PRIVATE, "  prod:")
    assert mismatches(out) == [
        f"{PRIVATE}:{here}: environment prod has no CI role or sops key in infra/: add it to "
        f"`environments` ({TFVARS}:{there})"
    ]


def kubernetes_version_line(repo: Path) -> int:
    declared = line_of(repo, VARIABLES, 'variable "kubernetes_version"')
    return line_of(repo, VARIABLES, "default", after=declared)


@pytest.mark.parametrize(("setting", "agrees"), [('"1.34"', False), ('"v1.35.2"', True)])
def test_kube_version_hubbot_renders_for_is_the_clusters_minor_version(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], setting: str, agrees: bool
) -> None:
    replace_in(hub_repo, PUBLIC, "cluster:\n", f"cluster:\n  kube_version: {setting}\n")
    here = line_of(hub_repo, PUBLIC, "kube_version")
    there = kubernetes_version_line(hub_repo)
    status, out = validate(hub_repo, capsys, "tess-public")
    if agrees:  # EKS picks the patch version; only the minor version has to agree
        assert status == 0, out
        return
    assert status == 1
    assert mismatches(out) == [
        f'{PUBLIC}:{here}: hubbot renders for cluster.kube_version "1.34" but infra/\'s '
        f'kubernetes_version is "1.35" ({VARIABLES}:{there}): the charts would be rendered '
        "for another minor version than the cluster runs; make the minor versions the same"
    ]


def test_default_kube_version_against_another_cluster_version(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, VARIABLES, 'default     = "1.35"', 'default     = "1.36"')
    there = kubernetes_version_line(hub_repo)
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert mismatches(out) == [
        f'{hub}:{line_of(hub_repo, hub, "cluster:")}: hubbot renders for Kubernetes '
        f'"{helm.DEFAULT_KUBE_VERSION}" (the default; cluster.kube_version is unset) but '
        f'infra/\'s kubernetes_version is "1.36" ({VARIABLES}:{there}): the charts would be '
        "rendered for another minor version than the cluster runs; make the minor versions "
        "the same"
        for hub in (PRIVATE, PUBLIC)
    ]


def test_a_hub_on_another_kind_of_cluster_is_not_tied_to_infra_cluster(hub_repo: Path) -> None:
    replace_in(hub_repo, PUBLIC, "namespace: tess-public-prod", "namespace: elsewhere")
    assert [p.location for p in infra.cross_check(WorkTree(hub_repo))] == [
        Location(PUBLIC, line_of(hub_repo, PUBLIC, "namespace: elsewhere"))
    ]
    replace_in(
        hub_repo,
        PUBLIC,
        '  aws: {account_id: "123456789012", region: us-east-1, cluster: tess}',
        "  kubeconfig: {file: secrets/kubeconfig.yaml}",
    )
    replace_in(
        hub_repo,
        PUBLIC,
        "cluster:\n  provider: aws",
        'cluster:\n  provider: kubeconfig\n  kube_version: "1.30"',
    )
    assert infra.cross_check(WorkTree(hub_repo)) == []


# --- what the terraform promises, read from the parsed .tf files --------------------------


def _bc_shape(node: Any) -> Any:
    """python-hcl2 5+ output in the shape of checkov's fork (see bot.infra._attribute)."""
    if isinstance(node, dict):
        return {
            infra._unquote(key): (
                [_bc_shape(item) for item in value]
                if isinstance(value, list)
                and value
                and all(isinstance(item, dict) and item.get("__is_block__") for item in value)
                else [infra._unquoted_tree(value)]
            )
            for key, value in node.items()
            if not key.startswith("__")
        }
    return node


def blocks(kind: str, type_: str) -> dict[str, dict[str, Any]]:
    """Every `resource`/`data` block of TYPE by name, attributes as one-item lists."""
    found: dict[str, dict[str, Any]] = {}
    for path in TF_FILES:
        for entry in hcl_loads(path.read_text()).get(kind, []):
            for found_type, named in entry.items():
                if infra._unquote(found_type) != type_:
                    continue
                for name, body in named.items():
                    found[infra._unquote(name)] = (
                        body if "__is_block__" not in body else _bc_shape(body)
                    )
    return found


def block(kind: str, type_: str, name: str) -> dict[str, Any]:
    """The body of `resource`/`data` block TYPE.NAME, attributes as one-item lists."""
    named = blocks(kind, type_)
    if name not in named:
        raise AssertionError(f"no {kind} {type_}.{name}")
    return named[name]


def local_value(name: str) -> Any:
    """The value of `locals { NAME = ... }`, as a one-item list like `block` gives."""
    for path in TF_FILES:
        for entry in hcl_loads(path.read_text()).get("locals", []):
            body = entry if "__is_block__" not in entry else _bc_shape(entry)
            if name in body:
                return body[name]
    raise AssertionError(f"no local {name}")


def variable(name: str) -> dict[str, Any]:
    """The body of `variable "NAME"`, attributes as one-item lists."""
    for path in TF_FILES:
        for entry in hcl_loads(path.read_text()).get("variable", []):
            for found, body in entry.items():
                if infra._unquote(found) == name:
                    return body if "__is_block__" not in body else _bc_shape(body)
    raise AssertionError(f"no variable {name}")


def output(name: str) -> dict[str, Any]:
    """The body of `output "NAME"`, attributes as one-item lists."""
    for path in TF_FILES:
        for entry in hcl_loads(path.read_text()).get("output", []):
            for key, body in entry.items():
                if infra._unquote(key) == name:
                    found: dict[str, Any] = body if "__is_block__" not in body else _bc_shape(body)
                    return found
    raise AssertionError(f"no output {name}")


def addon(name: str) -> dict[str, Any]:
    """The `aws_eks_addon` that installs add-on NAME."""
    found = [b for b in blocks("resource", "aws_eks_addon").values() if b["addon_name"] == [name]]
    assert len(found) == 1, f"{len(found)} aws_eks_addon resources install {name}"
    return found[0]


def jsonencoded(expression: str, function: str = "jsonencode") -> Any:
    """The value of a `jsonencode({...})` (or `yamlencode`) attribute, whichever
    python-hcl2 parsed it."""
    inner = expression.removeprefix(f"${{{function}(").removesuffix(")}")
    try:  # checkov's fork prints the object as a Python literal
        return ast.literal_eval(inner)
    except (SyntaxError, ValueError):  # python-hcl2 5+ keeps it as HCL
        return infra._unquoted_tree(hcl_loads(f"value = {inner}\n")["value"])


def test_subnets_go_to_a_closed_list_of_zones() -> None:
    # Not "the first N zones AWS reports today": a zone added or impaired
    # would move the subnets, and the cluster with them (checkov CKV_AWS_394).
    zones = block("data", "aws_availability_zones", "available")
    assert [(f["name"], f["values"]) for f in zones.get("filter", [])] == [
        (["zone-name"], ["${var.availability_zones}"])
    ]
    assert local_value("azs") == ["${data.aws_availability_zones.available.names}"]


def test_user_nodes_are_labelled_and_tainted_for_user_pods_only() -> None:
    user = block("resource", "aws_eks_node_group", "user")
    assert user["labels"] == [{"hub.jupyter.org/node-purpose": "user"}]
    assert user["taint"] == [
        {"key": ["hub.jupyter.org/dedicated"], "value": ["user"], "effect": ["NO_SCHEDULE"]}
    ]
    core = block("resource", "aws_eks_node_group", "core")
    assert core["labels"] == [{"hub.jupyter.org/node-purpose": "core"}]
    assert "taint" not in core


def test_core_nodes_are_one_group_per_zone_each_never_empty() -> None:
    # A hub's database is an EBS volume in one zone; the autoscaler can add a node
    # in that zone only if a group is scoped to it (cluster-autoscaler FAQ).
    core = block("resource", "aws_eks_node_group", "core")
    assert core["for_each"] == ["${local.private_subnet_by_zone}"]
    assert core["subnet_ids"] == [["${each.value}"]]
    assert core["node_group_name"] == ["core-${each.key}"]
    [by_zone] = local_value("private_subnet_by_zone")
    compact = "".join(str(by_zone).split())
    assert "forzoneindistinct(var.availability_zones):zone=>" in compact
    assert "aws_subnet.private[index(local.azs,zone)].id" in compact
    [scaling] = core["scaling_config"]
    assert scaling == {
        key: [f"${{var.core_size_per_zone.{size}}}"]
        for key, size in (("min_size", "min"), ("desired_size", "desired"), ("max_size", "max"))
    }
    size = variable("core_size_per_zone")
    assert size["default"][0]["min"] >= 1
    conditions = [v["condition"][0] for v in size["validation"]]
    assert "${var.core_size_per_zone.min >= 1}" in conditions
    # Balanced groups must look alike: one launch template, one set of instance types.
    assert (
        core["launch_template"]
        == block("resource", "aws_eks_node_group", "user")["launch_template"]
    )
    assert core["instance_types"] == ["${var.core_instance_types}"]


def test_autoscaler_finds_and_balances_the_per_zone_core_groups() -> None:
    release = block("resource", "helm_release", "cluster_autoscaler")
    values = jsonencoded(release["values"][0][0], "yamlencode")
    assert values["extraArgs"]["balance-similar-node-groups"] is True
    # Auto-discovery by the tags EKS puts on every managed group's ASG: no group
    # is named, so a zone's group needs no entry here.
    assert values["autoDiscovery"] == {"clusterName": "${var.cluster_name}"}
    assert "autoscalingGroups" not in values
    assert values["nodeSelector"] == {"hub.jupyter.org/node-purpose": "core"}
    assert "${aws_eks_node_group.core}" in release["depends_on"][0]
    # It may resize only groups with this cluster's tag, which EKS sets on each.
    policy = block("data", "aws_iam_policy_document", "cluster_autoscaler")
    [scale] = [s for s in policy["statement"] if s["sid"] == ["ScaleOwnNodeGroups"]]
    assert [c["variable"] for c in scale["condition"]] == [
        ["aws:ResourceTag/k8s.io/cluster-autoscaler/${var.cluster_name}"]
    ]


def test_nodes_and_add_ons_follow_the_cluster_version() -> None:
    # Without `version` a node group stays at the version it was created with.
    for name in ("core", "user"):
        group = block("resource", "aws_eks_node_group", name)
        assert group["version"] == ["${aws_eks_cluster.this.version}"], name
    versions = block("data", "aws_eks_addon_version", "this")
    assert versions["kubernetes_version"] == ["${aws_eks_cluster.this.version}"]


def test_ci_roles_trust_only_this_repository_and_its_branch() -> None:
    trust = block("data", "aws_iam_policy_document", "ci_trust")["statement"][0]
    conditions = {c["variable"][0]: c["values"][0] for c in trust["condition"]}
    assert conditions == {
        "token.actions.githubusercontent.com:aud": ["sts.amazonaws.com"],
        "token.actions.githubusercontent.com:sub": [
            "repo:${var.github_repository}:ref:refs/heads/${each.value.branch}",
            "repo:${var.github_repository}:environment:${each.value.branch}",
        ],
    }


def test_ci_roles_may_only_describe_efs_homes_in_their_account_and_region() -> None:
    policy = block("data", "aws_iam_policy_document", "ci")
    [homes] = [s for s in policy["statement"] if s.get("sid") == ["CheckHomes"]]
    # What bot/efs.py calls, and nothing that changes EFS.
    assert homes["actions"] == [[
        "elasticfilesystem:DescribeAccessPoints",
        "elasticfilesystem:DescribeFileSystems",
        "elasticfilesystem:DescribeMountTargets",
    ]]
    where = "arn:${data.aws_partition.current.partition}:elasticfilesystem:${var.region}:"
    assert homes["resources"] == [[
        f"{where}${{var.account_id}}:file-system/*", f"{where}${{var.account_id}}:access-point/*",
    ]]
    assert "effect" not in homes


def test_sops_keys_let_ci_decrypt_only_its_own_key_and_never_encrypt() -> None:
    policy = block("data", "aws_iam_policy_document", "sops_key")
    statements = {s["sid"][0]: s for s in policy["statement"]}
    ci = statements["CIDecryptsOwnEnvironmentOnly"]
    assert ci["actions"] == [["kms:Decrypt", "kms:DescribeKey"]]
    assert ci["principals"][0]["identifiers"] == [["${local.ci_role_arns[each.key]}"]]
    deny = statements["NoCIEncrypts"]
    assert deny["effect"] == ["Deny"]
    assert set(deny["actions"][0]) >= {"kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"}
    assert deny["principals"][0]["identifiers"] == ["${values(local.ci_role_arns)}"]
    # No statement delegates to IAM (the account root), so only this policy decides.
    assert all("root" not in str(s["principals"]) for s in policy["statement"])


def test_ebs_csi_driver_has_an_irsa_role_only_its_controller_may_assume() -> None:
    assert addon("aws-ebs-csi-driver")["service_account_role_arn"] == [
        "${aws_iam_role.ebs_csi.arn}"
    ]
    role = block("resource", "aws_iam_role", "ebs_csi")
    assert role["assume_role_policy"] == [
        '${data.aws_iam_policy_document.irsa_trust["ebs_csi"].json}'
    ]
    [subjects] = local_value("irsa_subjects")
    assert subjects["ebs_csi"] == ["system:serviceaccount:kube-system:ebs-csi-controller-sa"]
    # The trust document: this cluster's OIDC provider, the STS audience, and
    # exactly the subjects listed for the role.
    trust = block("data", "aws_iam_policy_document", "irsa_trust")
    assert trust["for_each"] == ["${local.irsa_subjects}"]
    [statement] = trust["statement"]
    assert statement["actions"] == [["sts:AssumeRoleWithWebIdentity"]]
    assert statement["principals"][0]["identifiers"] == [
        ["${aws_iam_openid_connect_provider.cluster.arn}"]
    ]
    conditions = {c["variable"][0]: (c["test"][0], c["values"][0]) for c in statement["condition"]}
    assert conditions == {
        "${local.oidc_issuer}:aud": ("StringEquals", ["sts.amazonaws.com"]),
        "${local.oidc_issuer}:sub": ("StringEquals", "${each.value}"),
    }
    attachment = block("resource", "aws_iam_role_policy_attachment", "ebs_csi")
    assert attachment["role"] == ["${aws_iam_role.ebs_csi.name}"]
    assert attachment["policy_arn"][0].endswith(":policy/service-role/AmazonEBSCSIDriverPolicy")
    # The platform key encrypts the volumes: grants only for AWS resources.
    key_use = block("data", "aws_iam_policy_document", "ebs_csi_platform_key")["statement"]
    assert all(s["resources"] == [["${aws_kms_key.platform.arn}"]] for s in key_use)
    [grants] = [s for s in key_use if "kms:CreateGrant" in s["actions"][0]]
    assert [(c["test"], c["variable"], c["values"]) for c in grants["condition"]] == [
        (["Bool"], ["kms:GrantIsForAWSResource"], [["true"]])
    ]


def test_the_one_default_storage_class_is_encrypted_gp3_on_the_ebs_csi_driver() -> None:
    default = "storageclass.kubernetes.io/is-default-class"
    classes = blocks("resource", "kubernetes_storage_class_v1")
    defaults = [
        name
        for name, body in classes.items()
        if body["metadata"][0].get("annotations", [{}])[0].get(default) == "true"
    ]
    assert defaults == ["gp3"]
    gp3 = classes["gp3"]
    assert gp3["metadata"][0]["name"] == ["gp3"]
    assert gp3["storage_provisioner"] == ["ebs.csi.aws.com"]
    assert gp3["parameters"] == [
        {"type": "gp3", "encrypted": "true", "kmsKeyId": "${aws_kms_key.platform.arn}"}
    ]
    # An EBS volume lives in one zone: make it where the pod that mounts it runs.
    assert gp3["volume_binding_mode"] == ["WaitForFirstConsumer"]
    assert gp3["allow_volume_expansion"] == [True]
    # hub/values.yaml names the class; the output says which name to use.
    assert output("storage_class_name")["value"] == [
        "${kubernetes_storage_class_v1.gp3.metadata[0].name}"
    ]


def test_the_vpc_cni_enforces_network_policies() -> None:
    cni = addon("vpc-cni")
    assert "configuration_values" in cni, "the vpc-cni add-on keeps its defaults: no policy agent"
    # The add-on's documented key; its value is the string "true", not a boolean.
    assert jsonencoded(cni["configuration_values"][0])["enableNetworkPolicy"] == "true"


def test_versions_are_pinned() -> None:
    [terraform] = hcl_loads((INFRA / "versions.tf").read_text())["terraform"]
    if "__is_block__" in terraform:
        terraform = _bc_shape(terraform)
    assert terraform["required_version"] == ["~> 1.9.0"]
    providers = terraform["required_providers"][0]
    assert {name: provider[0]["version"] for name, provider in providers.items()} == {
        "aws": "5.82.2",
        "github": "6.6.0",
        "helm": "2.17.0",
        "kubernetes": "2.35.1",
        "tls": "4.0.6",
    }
    cluster = block("resource", "aws_eks_cluster", "this")
    assert cluster["version"] == ["${var.kubernetes_version}"]


def test_the_prod_lock_is_code_github_environments_and_branch_protection() -> None:
    # The lock hubbot's own checks cannot be: a pull request cannot change these settings.
    environments = block("resource", "github_repository_environment", "deploy")
    assert environments["for_each"] == ["${var.environments}"]
    assert environments["can_admins_bypass"] == [False]
    assert environments["deployment_branch_policy"][0]["custom_branch_policies"] == [True]
    assert environments["deployment_branch_policy"][0]["protected_branches"] == [False]
    (reviewers,) = environments["dynamic"]
    assert reviewers["reviewers"]["for_each"] == ['${each.key == "prod" ? [1] : []}']
    policy = block("resource", "github_repository_environment_deployment_policy", "deploy")
    assert policy["for_each"] == ["${var.environments}"]
    assert policy["branch_pattern"] == ["${each.value.branch}"]
    default = infra._unquoted_tree(variable("environments")["default"][0])
    assert {env: value["branch"] for env, value in default.items()} == {
        "staging": "staging", "prod": "prod",
    }
    protection = block("resource", "github_branch_protection", "deploy")
    assert protection["for_each"] == ["${var.environments}"]
    assert protection["pattern"] == ["${each.value.branch}"]
    assert protection["enforce_admins"] == [True]
    assert protection["allows_force_pushes"] == [False]
    assert protection["required_status_checks"][0]["contexts"] == ["${var.required_checks}"]
    reviews = protection["required_pull_request_reviews"][0]
    assert reviews["required_approving_review_count"][0] >= 1
    assert reviews["dismiss_stale_reviews"] == [True]
    # The required check is the pull request workflow's hubbot job.
    workflow = YAML(typ="safe").load((PROJECT / ".github/workflows/pr.yaml").read_text())
    assert infra._unquoted_tree(variable("required_checks")["default"][0]) == [
        job.get("name", key) for key, job in workflow["jobs"].items()
    ]



def test_the_record_public_keys_are_a_repository_variable_and_no_signing_key_is_in_state() -> None:
    # Checking a record needs only public keys: a repository variable every job reads.
    public = block("resource", "github_actions_variable", "record_public_keys")
    assert public["variable_name"] == [records.PUBLIC_KEYS_VARIABLE]
    assert public["value"] == ['${join(",",[for env , key in var.record_public_keys : '
                               '"${env}=${key}"])}']
    conditions = " ".join(
        v["condition"][0] for v in variable("record_public_keys")["validation"]
    )
    assert "distinct(values(var.record_public_keys))" in conditions
    assert "keys(var.environments)" in conditions
    # The signing keys are set with `gh secret set`, never through terraform's state.
    for kind in ("github_actions_secret", "github_actions_environment_secret"):
        assert blocks("resource", kind) == {}
    # The example's keys are in the form hubbot reads, one per environment, all different.
    example = hcl_loads((INFRA / "example.tfvars").read_text())["record_public_keys"][0]
    text = ",".join(f"{env}={key}" for env, key in example.items())
    keys = records.public_keys_from_env({records.PUBLIC_KEYS_VARIABLE: text})
    assert keys is not None
    assert sorted(keys.by_env) == ["prod", "staging"]

def test_region_of_the_deploy_workflow(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workflow = ".github/workflows/deploy.yaml"
    shutil.copytree(PROJECT / ".github", hub_repo / ".github")
    status, out = validate(hub_repo, capsys)
    assert status == 0, out
    replace_in(hub_repo, workflow, "AWS_REGION: us-east-1", "AWS_REGION: eu-west-1")
    here = line_of(hub_repo, workflow, "AWS_REGION: eu-west-1")
    region = line_of(hub_repo, TFVARS, "region")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert mismatches(out) == [
        f'{workflow}:{here}: AWS_REGION is "eu-west-1" but infra/ has "us-east-1" '
        f"({TFVARS}:{region}): make them the same"
    ]
