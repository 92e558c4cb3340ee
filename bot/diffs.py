"""The diffs of a plan: per affected pair, its values diff and, rendered with helm, its manifests.

This is the act of computing what bot.diffreport then shows; `hubbot diff`,
`hubbot ci` and `hubbot promote` all take their report from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import ExitStack

from bot import helm, manifests, policy
from bot.diffreport import DiffReport, NewPair, PairReport, refused_changes
from bot.disguise import for_helm, new_key
from bot.hubploy import load_deployment
from bot.plan import SETTINGS, Pair, Plan
from bot.source import Source
from bot.values import CHART_DIR, Decryptor, HubValues, build
from bot.valuesdiff import ValuesDiff, diff_values, unchanged


def build_report(
    result: Plan,
    diffs: dict[tuple[str, str], ValuesDiff] | None = None,
    *,
    decrypt: Decryptor | None = None,
    redact: Callable[[str], str] = str,
    register: Callable[[str], object] = lambda _: None,
    render_manifests: bool = False,
) -> DiffReport:
    """Per affected pair of `result` (from bot.plan.plan): its values and manifest diff.

    The values diffs are `diffs` (default: the plan's, secrets read without keys),
    or with `decrypt` re-made from decrypted secrets: then pass the redactor's
    `redact` (the default leaves text as it is) and its `register`, which learns the
    pseudonyms helm gets instead of decrypted values. With `render_manifests`, both
    refs' charts are rendered with helm; when the chart's dependency cannot be
    fetched, each pair says so in one line and keeps its values diff.
    """
    assert result.sources is not None, "a Plan made by bot.plan.plan records its sources"
    base, head = result.sources
    given = result.diffs if diffs is None else diffs
    values = {
        (pair.hub, pair.env): (
            diff_values(*_sides(base, head, pair, decrypt))
            if decrypt
            else given.get((pair.hub, pair.env)) or unchanged(pair.hub, pair.env)
        )
        for pair in result.pairs
    }
    if not render_manifests or not result.pairs:
        pairs = [PairReport(p, values[(p.hub, p.env)], None) for p in result.pairs]
        return _report(result, pairs, None)
    with ExitStack() as stack:
        renders = stack.enter_context(manifests.previews())
        try:
            # Dependencies are fetched, and charts prepared, once per ref, not once per pair.
            head_chart = stack.enter_context(manifests.chart_at(head))
            renders.chart(head_chart)
            base_chart = head_chart
            if base.tree_hash(CHART_DIR) != head.tree_hash(CHART_DIR):
                base_chart = stack.enter_context(manifests.chart_at(base))
                renders.chart(base_chart)
        except helm.ChartUnavailable as exc:
            note = f"not rendered: {exc.message}"
            pairs = [PairReport(p, values[(p.hub, p.env)], None, note) for p in result.pairs]
            return _report(result, pairs, note)
        pairs = []
        key = new_key()  # one for both refs: a secret changed between them shows as changed
        for pair in result.pairs:
            old, new = _sides(base, head, pair, decrypt)
            some = new or old
            assert some is not None
            rendered = manifests.manifest_diff(
                head_chart if new else base_chart,
                None if old is None else for_helm(old, key, register),
                None if new is None else for_helm(new, key, register),
                some.environment.release,
                some.environment.namespace,
                redact,
                kube_version=manifests.kube_version(some.deployment),
                old_chart_dir=base_chart,
                renders=renders,
            )
            pairs.append(PairReport(pair, values[(pair.hub, pair.env)], rendered))
    return _report(result, pairs, None)


def _sides(
    base: Source, head: Source, pair: Pair, decrypt: Decryptor | None
) -> tuple[HubValues | None, HubValues | None]:
    """The pair's values at base and at head; None where the pair does not exist."""
    old = None if pair.added else build(base, pair.hub, pair.env, decrypt)
    new = None if pair.removed else build(head, pair.hub, pair.env, decrypt)
    return old, new


# Repository paths whose change a reviewer must weigh beyond the hubs' diffs.
_INFRA = "infra"
_MOVES = re.compile(r"\b(release|namespace)\b")


def _report(result: Plan, pairs: list[PairReport], unavailable: str | None) -> DiffReport:
    assert result.sources is not None
    base, head = result.sources
    warnings = refused_changes(pairs)
    if unavailable:
        warnings.append(f"manifests {unavailable}; the values diff is complete")
    if any(item.values.secret_files_changed for item in pairs):
        warnings.append(
            "secrets were read without keys: a changed secrets file is shown as a whole"
        )
    if any(image.exists is None and image.changed for image in result.images):
        warnings.append("the registry was not asked: whether changed images exist is unknown")
    return DiffReport(
        result, tuple(pairs), tuple(warnings), tuple(_risks(result, base, head)), _new(result, head)
    )


def _changed(base: Source, head: Source, path: str) -> bool:
    """Whether the file or directory `path` differs (a directory by its tree id)."""
    if base.children(path) or head.children(path):
        return base.tree_hash(path) != head.tree_hash(path)
    return base.read(path) != head.read(path)


def _risks(result: Plan, base: Source, head: Source) -> list[str]:
    """What a reviewer must not miss: infra first, policy, renamed releases, new releases."""
    risks = []
    if _changed(base, head, _INFRA):
        risks.append(
            f"{_INFRA}/ changed: an operator must `terraform apply` it before this merges "
            "(the hubs deploy on merge and may need it)"
        )
    changed_policy = policy.changes(base, head)
    if changed_policy:
        risks.append(policy.notice(changed_policy))
    for pair in result.pairs:
        if pair.added:
            continue
        if any(r.kind == SETTINGS and _MOVES.search(r.detail) for r in pair.reasons):
            old = load_deployment(base, pair.hub).environments[pair.env]
            new = load_deployment(head, pair.hub).environments[pair.env]
            if old.release != new.release or old.namespace != new.namespace:
                risks.append(
                    f"{pair.hub}/{pair.env}: release {old.release} (namespace {old.namespace}) "
                    f"becomes {new.release} (namespace {new.namespace}): the old release keeps "
                    f"running; remove it with `helm uninstall {old.release} -n {old.namespace}`"
                )
    return risks


def _new(result: Plan, head: Source) -> dict[tuple[str, str], NewPair]:
    found = {}
    for pair in result.pairs:
        if pair.added:
            environment = load_deployment(head, pair.hub).environments[pair.env]
            images = tuple(i.reference for i in result.images if pair.hub in i.hubs)
            found[(pair.hub, pair.env)] = NewPair(
                environment.namespace, environment.release, environment.url, images
            )
    return found
