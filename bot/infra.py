"""What infra/ (terraform) creates, and whether the hub config agrees with it.

The facts hubbot needs are terraform variables with literal values: the
default in infra/*.tf, overridden by infra/example.tfvars (the file the
README applies). They are read with python-hcl2, never by running terraform.
`cross_check` compares them with deployments/*/hubploy.yaml, .sops.yaml and
the hub values; each mismatch names the repo file and line it is reported on,
and, in its message, the infra file and line of the value it should match.

With the age-only .sops.yaml template there is no KMS key to compare: only
rules that name KMS keys are checked. A key named by id (key/...) rather
than alias can only be checked for its account and region offline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot import kubeversion, sops_config
from bot.errors import HubbotError, Location
from bot.helm import DEFAULT_KUBE_VERSION
from bot.hubploy import Deployment, discover_hubs, load_deployment
from bot.merge import effective
from bot.source import Source, memoized
from bot.values import build, layer_files
from bot.yamlfile import load_yaml

INFRA = "infra"
WORKFLOWS = ".github/workflows"
TFVARS = f"{INFRA}/example.tfvars"
# The condition in the sops key policies that makes .sops.yaml need `context: {env: <env>}`.
CONTEXT_CONDITION = "kms:EncryptionContext:env"

ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<repo>[^:@]+)$"
)
KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<key>.+)$")


@dataclass(frozen=True)
class Fact:
    """A value infra/ uses, and where it is set."""

    value: Any
    location: Location

    def __str__(self) -> str:
        return f'"{self.value}" ({self.location})'


@dataclass(frozen=True)
class InfraFacts:
    account_id: Fact
    region: Fact
    cluster_name: Fact
    kubernetes_version: Fact
    ecr_repository: Fact
    user_role_name: Fact
    user_service_account: Fact
    hub_namespaces: Fact
    home_uid: Fact
    home_gid: Fact
    sops_key_aliases: dict[str, Fact]  # environment -> alias/...
    environments: Location  # where the environments (CI role, sops key each) are set
    context_condition: Location | None  # where the sops key policy demands the context

    @property
    def user_role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id.value}:role/{self.user_role_name.value}"


def has_infra(source: Source) -> bool:
    return any(name.endswith(".tf") for name in source.children(INFRA))


def read_facts(source: Source) -> InfraFacts:
    return memoized(source, "infra-facts", lambda: _read_facts(source))


def _read_facts(source: Source) -> InfraFacts:
    texts = {
        f"{INFRA}/{name}": source.read(f"{INFRA}/{name}") or ""
        for name in source.children(INFRA)
        if name.endswith(".tf")
    }
    wrapped = _wraps_attributes()
    defaults: dict[str, tuple[Any, str, int]] = {}
    for file, text in texts.items():
        for block in _parse(file, text).get("variable", []):
            for quoted, body in block.items():
                name = _unquote(quoted)
                if "default" in body:
                    line = _line(text, rf'variable\s+"{re.escape(name)}"')
                    defaults[name] = (_attribute(body["default"], wrapped), file, line)
    tfvars_text = source.read(TFVARS) or ""
    tfvars = {
        _unquote(key): _attribute(value, wrapped)
        for key, value in _parse(TFVARS, tfvars_text).items()
        if not key.startswith("__")
    }

    def fact(name: str, *keys: str) -> Fact:
        if name in tfvars:
            value, file, text = tfvars[name], TFVARS, tfvars_text
            line = _line(text, _assignment(name))
        elif name in defaults:
            value, file, line = defaults[name]
            text = texts[file]
            line = _line(text, _assignment("default"), line)
        else:
            raise HubbotError(
                f"terraform variable `{name}` has no default in {INFRA}/*.tf and is not set "
                f"in {TFVARS}: hubbot needs its value to check the hub config against it",
                Location(TFVARS),
            )
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
            line = _line(text, _assignment(key), line)
        return Fact(value, Location(file, line))

    environments = fact("environments")
    if not isinstance(environments.value, dict):
        raise HubbotError("`environments` must be a map", environments.location)
    condition = next(
        (
            Location(file, _line(text, rf".*{re.escape(CONTEXT_CONDITION)}"))
            for file, text in texts.items()
            if CONTEXT_CONDITION in text
        ),
        None,
    )
    return InfraFacts(
        account_id=fact("account_id"),
        region=fact("region"),
        cluster_name=fact("cluster_name"),
        kubernetes_version=fact("kubernetes_version"),
        ecr_repository=fact("ecr_repository"),
        user_role_name=fact("user_role_name"),
        user_service_account=fact("user_service_account"),
        hub_namespaces=fact("hub_namespaces"),
        home_uid=fact("home_uid"),
        home_gid=fact("home_gid"),
        sops_key_aliases={
            env: fact("environments", env, "sops_key_alias") for env in environments.value
        },
        environments=environments.location,
        context_condition=condition,
    )


def _parse(file: str, text: str) -> dict[str, Any]:
    # Imported here: python-hcl2 takes longer to import than most commands run.
    from hcl2.api import loads as hcl_loads
    from lark.exceptions import LarkError

    try:
        parsed: dict[str, Any] = hcl_loads(text)
    except LarkError as exc:
        line = getattr(exc, "line", None)
        raise HubbotError(
            f"not valid HCL: {str(exc).splitlines()[0]}",
            Location(file, line if isinstance(line, int) and line > 0 else None),
        ) from None
    return parsed


def _attribute(value: Any, wrapped: bool) -> Any:
    """An attribute's value as plain data, whichever python-hcl2 is installed.

    checkov's fork (bc-python-hcl2, installed over python-hcl2 in the test
    extras) wraps every attribute value in a one-item list; python-hcl2 5+
    keeps the quotes of string literals instead. Both become plain values.
    """
    if wrapped:
        return value[0] if isinstance(value, list) and len(value) == 1 else value
    return _unquoted_tree(value)


def _wraps_attributes() -> bool:
    """Whether the installed hcl2 is the list-wrapping kind (see `_attribute`)."""
    from hcl2.api import loads as hcl_loads

    return isinstance(hcl_loads('probe = "x"\n').get("probe"), list)


def _unquoted_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {_unquote(k): _unquoted_tree(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_unquoted_tree(item) for item in value]
    return _unquote(value) if isinstance(value, str) else value


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def _assignment(key: str) -> str:
    return rf'"?{re.escape(key)}"?\s*='


def _line(text: str, pattern: str, after: int = 1) -> int:
    """The first line at or below `after` that starts with `pattern` (else `after`)."""
    regex = re.compile(rf"^\s*{pattern}")
    for number, line in enumerate(text.splitlines()[after - 1 :], after):
        if regex.match(line):
            return number
    return after


def cross_check(
    source: Source, hubs: list[str] | None = None, envs: list[str] | None = None
) -> list[HubbotError]:
    """Every disagreement between infra/ and the hub config (none without infra/)."""
    if not has_infra(source):
        return []
    facts = read_facts(source)
    problems: list[HubbotError] = []
    deployments = []
    for hub in hubs or discover_hubs(source):
        try:
            deployments.append(load_deployment(source, hub))
        except HubbotError:
            continue  # validate reports a broken hubploy.yaml on its own
    for deployment in deployments:
        problems += _deployment_problems(facts, deployment)
    pairs = [
        (deployment, env)
        for deployment in deployments
        for env in deployment.environments
        if envs is None or env in envs
    ]
    problems += _values_problems(source, facts, pairs)
    problems += _sops_problems(source, facts, pairs)
    problems += _workflow_problems(source, facts)
    unique: dict[str, HubbotError] = {}
    for problem in problems:
        unique.setdefault(str(problem), problem)
    return list(unique.values())


def _mismatch(what: str, found: Any, fact: Fact, where: Location) -> HubbotError:
    return HubbotError(f'{what} is "{found}" but infra/ has {fact}: make them the same', where)


def _deployment_problems(facts: InfraFacts, deployment: Deployment) -> list[HubbotError]:
    """hubploy.yaml: cluster, registry, image repositories and namespaces."""
    problems = []
    doc = deployment.doc

    def here(*path: str | int) -> Location:
        return Location(deployment.file, doc.line_of(path))

    expected = {
        "account_id": facts.account_id,
        "region": facts.region,
        "cluster": facts.cluster_name,
    }
    for section, keys in (
        ("cluster", ("account_id", "region", "cluster")),
        ("registry", ("account_id", "region")),
    ):
        config = getattr(deployment, section)
        if config.get("provider") != "aws":
            continue
        aws = config.get("aws", {})
        for key in keys:
            if key in aws and str(aws[key]) != str(expected[key].value):
                problems.append(
                    _mismatch(
                        f"{section}.aws.{key}", aws[key], expected[key], here(section, "aws", key)
                    )
                )
    for image in deployment.images:
        match = ECR_IMAGE.match(image.name)
        if match is None:
            continue
        for part, fact in (
            ("account", facts.account_id),
            ("region", facts.region),
            ("repo", facts.ecr_repository),
        ):
            if match[part] != str(fact.value):
                what = "the ECR repository" if part == "repo" else f"the ECR {part}"
                problems.append(
                    _mismatch(f"{what} of image {image.name}", match[part], fact, image.location)
                )
    if deployment.cluster.get("provider") != "aws":
        return problems  # not on infra/'s cluster: no CI role, key or IRSA trust to compare
    problems += _kube_version_problems(facts, deployment)
    for env in deployment.environments.values():
        if env.name not in facts.sops_key_aliases:
            problems.append(
                HubbotError(
                    f"environment {env.name} has no CI role or sops key in infra/: add it to "
                    f"`environments` ({facts.environments})",
                    env.location,
                )
            )
        namespaces = facts.hub_namespaces.value or []
        if env.namespace not in namespaces:
            problems.append(
                HubbotError(
                    f"namespace {env.namespace} is not in infra/'s hub_namespaces "
                    f"({facts.hub_namespaces.location}): its user pods could not assume "
                    f"the data role {facts.user_role_name.value}",
                    env.location,
                )
            )
    return problems


def _kube_version_problems(facts: InfraFacts, deployment: Deployment) -> list[HubbotError]:
    """The Kubernetes version hubbot renders the hub for, against the cluster's.

    Only the minor version is compared: EKS picks the patch version itself.
    """
    fact = facts.kubernetes_version
    rendered, what, where = deployment.kube_version(DEFAULT_KUBE_VERSION)
    cluster = _minor_version(str(fact.value))
    if cluster is None:
        return [HubbotError(f"kubernetes_version {fact} is not a version like 1.35", fact.location)]
    hub = _minor_version(rendered)
    if hub is None:
        return []  # validate reports a cluster.kube_version the hubploy schema refuses
    if hub == cluster:
        return []
    return [
        HubbotError(
            f"hubbot renders for {what} but infra/'s kubernetes_version is {fact}: the charts "
            "would be rendered for another minor version than the cluster runs; make the "
            "minor versions the same",
            where,
        )
    ]


def _minor_version(text: str) -> tuple[int, int] | None:
    """(major, minor) of a version such as `1.35` or `v1.35.2`; None for anything else."""
    try:
        version = kubeversion.parse_version(text)
    except kubeversion.ConstraintError:
        return None
    return (version.major, version.minor) if version.given >= 2 else None


def _values_problems(
    source: Source, facts: InfraFacts, pairs: list[tuple[Deployment, str]]
) -> list[HubbotError]:
    """The hub values each environment merges: user service account, its role, home owner."""
    problems = []
    role_from = (
        f"user_role_name at {facts.user_role_name.location}, "
        f"account_id at {facts.account_id.location}"
    )
    service_account = (facts.user_service_account.value, str(facts.user_service_account.location))
    checks = (
        (("userServiceAccount", "roleArn"), (facts.user_role_arn, role_from)),
        (("userServiceAccount", "name"), service_account),
        (("jupyterhub", "singleuser", "serviceAccountName"), service_account),
    )
    # The EFS access points make every file home_uid:home_gid; a user running as
    # another uid would see files it does not own (git refuses such repositories).
    home_checks = (
        (("jupyterhub", "singleuser", "uid"), (facts.home_uid.value, str(facts.home_uid.location))),
        (
            ("jupyterhub", "singleuser", "fsGid"),
            (facts.home_gid.value, str(facts.home_gid.location)),
        ),
    )
    for deployment, env in pairs:
        try:
            values = build(source, deployment.hub, env)
        except HubbotError:
            continue  # validate reports it for this pair
        document = effective(values.document)
        homes = _get(document, ("homeStorage", "enabled")) is True
        for path, (expected, set_at) in checks + (home_checks if homes else ()):
            found = _get(document, path)
            if found == expected:
                continue
            deleted = values.merged.deleted_by(path) if found is None else None
            nearest = deleted or values.merged.nearest(path)
            where = (
                Location(nearest[1].file, nearest[1].line)
                if nearest is not None
                else Location(deployment.file)
            )
            state = f'is "{found}"'
            if deleted is not None:
                state = f"is unset (deleted by `{'.'.join(map(str, deleted[0]))}: null`)"
            problems.append(
                HubbotError(
                    f'{".".join(path)} {state} but infra/ has "{expected}" ({set_at}): '
                    "make them the same",
                    where,
                )
            )
    return problems


def _get(document: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        if isinstance(document, dict):
            document = document.get(key)
        elif isinstance(document, list) and isinstance(key, int) and key < len(document):
            document = document[key]
        else:
            return None
    return document


def _sops_problems(
    source: Source, facts: InfraFacts, pairs: list[tuple[Deployment, str]]
) -> list[HubbotError]:
    """The KMS keys .sops.yaml names for each environment's secrets files."""
    text = source.read(sops_config.CONFIG_FILE)
    if text is None:
        return []
    try:
        rules = sops_config.parse_config(text)
    except HubbotError:
        return []  # `hubbot secrets check` reports a broken .sops.yaml
    problems = []
    for deployment, env in pairs:
        rule = sops_config.rule_for(rules, layer_files(deployment.hub, env)[3])
        alias = facts.sops_key_aliases.get(env)
        if rule is None or alias is None:
            continue
        where = Location(sops_config.CONFIG_FILE, rule.line)
        for key in sorted(rule.recipients.kms):
            problems += _kms_key_problems(facts, env, key, alias, where)
    return problems


def _kms_key_problems(
    facts: InfraFacts, env: str, key: sops_config.KmsKey, alias: Fact, where: Location
) -> list[HubbotError]:
    match = KMS_ARN.match(key.arn)
    if match is None:
        return [HubbotError(f"{key.arn} is not a KMS key ARN", where)]
    problems = []
    for part, fact in (("account", facts.account_id), ("region", facts.region)):
        if match[part] != str(fact.value):
            problems.append(
                _mismatch(f"the {part} of {env}'s KMS key {key.arn}", match[part], fact, where)
            )
    named = match["key"]
    if named.startswith("alias/") and named != alias.value:
        other = [e for e, a in facts.sops_key_aliases.items() if a.value == named]
        whose = f" (that is the {other[0]} key)" if other else ""
        problems.append(
            HubbotError(
                f"the {env} rule names KMS {named}{whose} but infra/'s {env} sops key is "
                f"{alias}: the {env} CI role can decrypt only that key",
                where,
            )
        )
    if facts.context_condition is not None and dict(key.context).get("env") != env:
        problems.append(
            HubbotError(
                f"the {env} rule's KMS key {key.arn} needs `context: {{env: {env}}}`: the key "
                f"policy lets CI decrypt only with it ({facts.context_condition})",
                where,
            )
        )
    return problems


def _workflow_problems(source: Source, facts: InfraFacts) -> list[HubbotError]:
    """A literal AWS_REGION in a workflow's `env:` must be infra/'s region."""
    problems = []
    for name in source.children(WORKFLOWS):
        file = f"{WORKFLOWS}/{name}"
        text = source.read(file) if name.endswith((".yaml", ".yml")) else None
        if text is None:
            continue
        try:
            doc = load_yaml(file, text)
        except HubbotError:
            continue  # the workflow checks report a broken workflow
        for path, line in doc.lines.items():
            if path[-1] not in ("AWS_REGION", "AWS_DEFAULT_REGION") or "env" not in path:
                continue
            value = _get(doc.data, path)
            if isinstance(value, str) and "${{" not in value and value != facts.region.value:
                problems.append(_mismatch(str(path[-1]), value, facts.region, Location(file, line)))
    return problems
