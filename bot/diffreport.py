"""The rendered diff of a plan, for people: text for a terminal, markdown for GitHub, or JSON.

A summary comes first (the pairs, the counts, the images, what restarts, the
warnings), then one section per affected pair: its effective-values table and
its manifest diff. Pairs whose sections would read the same, letter for letter
apart from their names, share one section that names them all. Values here are
display text from bot.valuesdiff; secret values never reach this module.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.manifests import ManifestDiff
from bot.markdown import escape_cell, fence, inline_code
from bot.plan import IMAGE, SECRETS, VALUES, Pair, Plan
from bot.valuesdiff import Row, ValuesDiff

# The full markdown report in GitHub Actions, which the workflows upload as an artifact.
ARTIFACT = "hubbot-diff.md"
# A shared section's title names its pairs up to this many characters; the rest are
# counted there and all of them listed in the section.
TITLE_NAMES = 160


@dataclass(frozen=True)
class PairReport:
    pair: Pair
    values: ValuesDiff
    manifests: ManifestDiff | None
    note: str | None = None  # why there is no manifest diff, in one line


@dataclass(frozen=True)
class NewPair:
    """Where a pair new at head will run."""

    namespace: str
    release: str
    url: str
    images: tuple[str, ...]


@dataclass(frozen=True)
class DiffReport:
    plan: Plan
    pairs: tuple[PairReport, ...]
    warnings: tuple[str, ...] = ()
    risks: tuple[str, ...] = ()  # what a reviewer must weigh (infra, policy, moved releases)
    new: dict[tuple[str, str], NewPair] = field(default_factory=dict)

    @property
    def refused(self) -> list[str]:
        return refused_changes(self.pairs)


def refused_changes(pairs: Iterable[PairReport]) -> list[str]:
    """Per pair, the manifest changes Kubernetes would refuse: the change cannot ship."""
    return [
        f"{item.pair.hub}/{item.pair.env}: {message}"
        for item in pairs
        if item.manifests is not None
        for message in item.manifests.refused
    ]


def _describe(pair: Pair) -> str:
    return "; ".join(
        reason.detail + (f" in {', '.join(reason.files)}" if reason.kind == VALUES else "")
        for reason in pair.reasons
    )


def _why(pair: Pair) -> str:
    """`_describe`, short enough for a table: images by their last name part only."""
    parts = []
    for reason in pair.reasons:
        detail = reason.detail
        if reason.kind == IMAGE:
            name, _, change = detail.partition(": ")
            detail = f"image {name.rsplit('/', 1)[-1]}: {change}"
        elif reason.kind == VALUES:
            detail += f" in {', '.join(_file_name(f) for f in reason.files)}"
        parts.append(detail)
    return "; ".join(parts)


def _file_name(path: str) -> str:
    """`deployments/HUB/config/common.yaml` -> `HUB/config/common.yaml`."""
    return path.removeprefix("deployments/")


def _grouped(pairs: tuple[Pair, ...]) -> list[tuple[list[str], str]]:
    """Pairs with the same short why, together: (pair names, why)."""
    groups: dict[str, list[str]] = {}
    for pair in pairs:
        groups.setdefault(_why(pair), []).append(f"{pair.hub}/{pair.env}")
    return [(names, why) for why, names in groups.items()]


def _merge_does(report: DiffReport, promotion: bool) -> str:
    deployable = report.plan.deployable()
    removed = [f"{p.hub}/{p.env}" for p in report.plan.pairs if p.removed]
    if promotion:
        names = ", ".join(f"{p.hub}/{p.env}" for p in deployable) or "nothing"
        text = f"Merging deploys {names} with exactly what staging ran; nothing is built."
    else:
        staging = [f"{p.hub}/{p.env}" for p in deployable if p.env == "staging"]
        prod = [f"{p.hub}/{p.env}" for p in deployable if p.env == "prod"]
        text = f"Merging deploys {', '.join(staging) or 'nothing'} to staging"
        text += f"; prod ({', '.join(prod)}) waits for the promotion PR." if prod else "."
    if removed:
        text += f" No longer deployed (left running): {', '.join(removed)}."
    return text


def _risk_lines(report: DiffReport, promotion: bool) -> list[str]:
    plan = report.plan
    lines = list(report.risks)
    prod = [f"{p.hub}/{p.env}" for p in plan.deployable() if p.env == "prod"]
    if prod and not promotion:
        lines.append(f"prod changes: {', '.join(prod)} (deployed when the promotion PR merges)")
    for (hub, env), new in report.new.items():
        lines.append(
            f"{hub}/{env} is new: release {new.release} in namespace {new.namespace} at {new.url}"
        )
    secrets = [f"{p.hub}/{p.env}" for p in plan.pairs if any(r.kind == SECRETS for r in p.reasons)]
    if secrets:
        lines.append(f"secrets change: {', '.join(secrets)}")
    return lines


def _restarts(report: DiffReport) -> list[str]:
    """Each kind of restart once, with the pairs where it happens."""
    where: dict[str, list[str]] = {}
    for item in report.pairs:
        if item.manifests is not None:
            for what in item.manifests.restarts:
                where.setdefault(what, []).append(f"{item.pair.hub}/{item.pair.env}")
    return [f"{what}: {', '.join(pairs)}" for what, pairs in where.items()]


def _counts(report: DiffReport, promotion: bool = False) -> str:
    keys = sum(len(item.values.rows) for item in report.pairs)
    pairs = len(report.plan.pairs)
    text = f"{pairs} pair{'s' * (pairs != 1)} affected, {keys} key{'s' * (keys != 1)} changed"
    if promotion:
        return text  # prod never builds
    builds = sum(1 for image in report.plan.images if image.build)
    return text + f", {builds} image{'s' * (builds != 1)} to build"


def _image_line(report: DiffReport, promotion: bool = False) -> list[str]:
    lines = []
    for image in report.plan.images:
        if not image.changed and image.build is not True:
            continue
        if promotion:
            lines.append(f"{image.reference} ({', '.join(image.hubs)}): as staging ran it")
            continue
        build = {True: "build", False: "exists", None: "unknown"}[image.build]
        lines.append(f"{image.reference} ({', '.join(image.hubs)}): {build}")
    return lines


def _no_effect_lines(plan: Plan) -> list[str]:
    return [
        f"{item.hub}/{item.env}: {item.file} {item.reason}"
        + (f" ({', '.join(item.keys)})" if item.keys else "")
        for item in plan.no_effect
    ]


def _secret_lines(values: ValuesDiff) -> list[str]:
    return [
        f"{file} changed: secret values may have changed (run with --decrypt to see which keys)"
        for file in values.secret_files_changed
    ]


def _resources(manifests: ManifestDiff) -> str:
    parts = [
        f"{len(names)} {label}" + (f" ({', '.join(names)})" if names else "")
        for label, names in (
            ("changed", manifests.changed),
            ("added", manifests.added),
            ("removed", manifests.removed),
        )
    ]
    return "resources: " + ", ".join(parts)


def _manifest_text(manifests: ManifestDiff) -> str:
    return "".join(manifests.text[title] for title in manifests.text)


@dataclass
class _Section:
    """One pair's section, or the one that pairs with the same section share."""

    names: list[str]  # hub/env, in the report's order
    why: str
    body: list[str]

    def title(self) -> tuple[str, str | None]:
        """The title's names, and all the names when the title holds only some of them."""
        if len(self.names) == 1:
            return self.names[0], None
        joined = ", ".join(self.names)
        if len(joined) <= TITLE_NAMES:
            return f"{joined} (identical)", None
        shown: list[str] = []
        for name in self.names:
            if len(", ".join([*shown, name])) > TITLE_NAMES:
                break
            shown.append(name)
        more = len(self.names) - len(shown)
        title = f"{len(self.names)} identical pairs ({', '.join(shown)} and {more} more)"
        return title, f"The same for all {len(self.names)} pairs: {joined}"


def _sections(
    report: DiffReport,
    why: Callable[[Pair], str],
    body: Callable[[PairReport], list[str]],
) -> list[_Section]:
    """Each pair's section, pairs whose sections are identical but for the name in one.

    The whole rendered section is compared, title included, and so are the restarts and
    refused changes the summary lists per pair: nothing that differs is hidden.
    """
    shared: dict[tuple[str, str, tuple[str, ...]], _Section] = {}
    for item in report.pairs:
        lines = body(item)
        manifests = item.manifests
        elsewhere = () if manifests is None else (*manifests.restarts, "", *manifests.refused)
        key = (why(item.pair), "\n".join(lines), elsewhere)
        name = f"{item.pair.hub}/{item.pair.env}"
        if key in shared:
            shared[key].names.append(name)
        else:
            shared[key] = _Section([name], key[0], lines)
    return list(shared.values())


# Text


def text(report: DiffReport) -> str:
    plan = report.plan
    out = [f"hubbot diff {plan.base} -> {plan.head}: {_counts(report)}"]
    for pair in plan.pairs:
        out.append(f"  {pair.hub}/{pair.env}: {_describe(pair)}")
    _section(out, "images", _image_line(report))
    _section(out, "no effect", _no_effect_lines(plan))
    _section(out, "restarts", _restarts(report))
    _section(out, "warnings", list(report.warnings))
    for section in _sections(report, _describe, _text_pair):
        title, every = section.title()
        out += ["", f"== {title}: {section.why}"]
        if every:
            out.append(f"  {every}")
        out += section.body
    return "\n".join(out) + "\n"


def _text_pair(item: PairReport) -> list[str]:
    """One pair's section of the text report, below its title."""
    out = _text_table(item.values)
    out += [f"  {line}" for line in _secret_lines(item.values)]
    for entry in item.values.overridden:
        out.append(
            f"  no effect: {entry.path} {entry.old} -> {entry.new} at {entry.file}, "
            f"overridden by {entry.by}"
        )
    if item.note:
        out.append(f"  manifests: {item.note}")
    if item.manifests is not None:
        out.append(f"  manifests: {_resources(item.manifests)}")
        out += [f"  {line}" for line in item.manifests.hidden_summary()]
        diff = _manifest_text(item.manifests).rstrip("\n")
        if diff:
            out.append(diff)
    return out


def _section(out: list[str], title: str, lines: list[str]) -> None:
    if lines:
        out.append(f"{title}:")
        out.extend(f"  {line}" for line in lines)


def _text_table(values: ValuesDiff) -> list[str]:
    if not values.rows:
        return ["  values: no change"]
    header = ("key", "old", "new", "set by")
    rows = [header] + [_cells(row) for row in values.rows]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [
        "  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
        for row in rows
    ]


def _cells(row: Row) -> tuple[str, str, str, str]:
    layer = row.layer + (f" ({row.note})" if row.note else "")
    if row.decided_by:
        layer += f" (override removed; {row.decided_by} applies now)"
    return (row.path, _value(row.old), _value(row.new), layer)


def _value(value: str | None) -> str:
    return "(absent)" if value is None else value


# Markdown


def markdown(report: DiffReport, *, promotion: bool = False) -> str:
    """The report for GitHub; `promotion`: for the promotion PR, where nothing is built."""
    plan = report.plan
    out = [f"### hubbot diff `{plan.base}` → `{plan.head}`", ""]
    if plan.pairs:
        out += [f"**{escape_cell(_merge_does(report, promotion))}**", ""]
    out += [f"{_counts(report, promotion)}", ""]
    risks = _risk_lines(report, promotion)
    if risks:
        out += ["**Look out**", ""] + [f"- ⚠️ {escape_cell(line)}" for line in risks] + [""]
    if plan.pairs:
        out += ["| hub/env | why |", "|---|---|"]
        out += [
            f"| {escape_cell(', '.join(names))} | {escape_cell(why)} |"
            for names, why in _grouped(plan.pairs)
        ]
        out.append("")
    for title, lines in (
        ("Images", _image_line(report, promotion)),
        ("No effect", _no_effect_lines(plan)),
        ("What restarts", _restarts(report)),
        ("Warnings", list(report.warnings)),
    ):
        if lines:
            out += [f"**{title}**", ""] + [f"- {escape_cell(line)}" for line in lines] + [""]

    def body(item: PairReport) -> list[str]:
        return _markdown_pair(item, report.new.get((item.pair.hub, item.pair.env)))

    for section in _sections(report, _why, body):
        title, every = section.title()
        out += ["<details>", f"<summary>{html.escape(f'{title}: {section.why}')}</summary>", ""]
        if every:
            out += [escape_cell(every), ""]
        out += [*section.body, "</details>", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _markdown_pair(item: PairReport, place: NewPair | None = None) -> list[str]:
    """One pair's section, inside its `<details>`; a new pair (`place`) shows where it
    runs, not every key."""
    out: list[str] = []
    if place is not None:
        keys = len(item.values.rows)
        out += ["| namespace | release | URL | image | keys |", "|---|---|---|---|---|"]
        out.append(
            f"| {_code(place.namespace)} | {_code(place.release)} | {escape_cell(place.url)} | "
            f"{_code(', '.join(place.images) or 'none')} | {keys} set |"
        )
        out.append("")
    elif item.values.rows:
        out += ["| key | old | new | set by |", "|---|---|---|---|"]
        for row in item.values.rows:
            key, old, new, layer = _cells(row)
            out.append(f"| {_code(key)} | {_code(old)} | {_code(new)} | {_code(layer)} |")
        out.append("")
    else:
        out += ["No effective value changed.", ""]
    secrets = _secret_lines(item.values)
    if secrets:
        out += [f"- {escape_cell(line)}" for line in secrets] + [""]
    if item.values.overridden:
        out += ["Changed but overridden here (no effect):", ""]
        out += [
            f"- {_code(entry.path)} at {_code(entry.file)}: {_code(_value(entry.old))} → "
            f"{_code(_value(entry.new))}, overridden by {_code(entry.by)}"
            for entry in item.values.overridden
        ]
        out.append("")
    if item.note:
        out += [f"_Manifests: {escape_cell(item.note)}_", ""]
    if item.manifests is not None:
        out += [f"Manifests, {escape_cell(_resources(item.manifests))}", ""]
        out += [f"- {escape_cell(line)}" for line in item.manifests.hidden_summary()]
        diff = _manifest_text(item.manifests)
        if diff.strip():
            out += ["", fence(diff, "diff").rstrip("\n")]
        out.append("")
    return out


def _code(value: str) -> str:
    return inline_code(value, in_table=True)


# JSON


def as_json(report: DiffReport) -> dict[str, Any]:
    data = report.plan.to_json()
    data["warnings"] = list(report.warnings)
    data["diffs"] = [
        {
            "hub": item.pair.hub,
            "env": item.pair.env,
            "values": [
                {
                    "key": row.path,
                    "change": row.change,
                    "old": row.old,
                    "new": row.new,
                    "layer": row.layer,
                    "decided_by": row.decided_by,
                    "secret": row.secret,
                }
                for row in item.values.rows
            ],
            "overridden": [
                {"key": o.path, "layer": o.file, "old": o.old, "new": o.new, "by": o.by}
                for o in item.values.overridden
            ],
            "secret_files_changed": list(item.values.secret_files_changed),
            "manifests": None
            if item.manifests is None
            else {
                "changed": item.manifests.changed,
                "added": item.manifests.added,
                "removed": item.manifests.removed,
                "diff": item.manifests.text,
                "hidden_lines": item.manifests.hidden_lines,
                "restarts": item.manifests.restarts,
                "refused": item.manifests.refused,
            },
            "note": item.note,
        }
        for item in report.pairs
    ]
    return data
