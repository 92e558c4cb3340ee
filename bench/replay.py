"""Replay a repository's history as merges to staging and count the work each policy does.

For every commit (first-parent order) with its predecessor as the base, three
policies decide what to build and deploy: `hubbot plan` (with a simulated
registry answering whether a tag exists), hubploy, and path globs (see
bench/baselines.py). The ground truth of each push comes from rendering both
commits with bot.values.build, secrets decrypted when a key is at hand: a pair
needs a deploy when its merged values, its chart or its deployment settings
changed.

    python -m bench.replay REPO [--ref staging] [--age-key FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.baselines import (
    Build,
    Decision,
    ImageUse,
    Pair,
    Registry,
    Tally,
    hubploy,
    hubploy_tag,
    path_globs,
)
from bot.errors import HubbotError
from bot.hubploy import discover_hubs, load_deployment
from bot.imagetag import tag_for_tree
from bot.plan import plan
from bot.sops import decrypt_text
from bot.source import GitCommit, memoized
from bot.values import CHART_DIR, CHART_VALUES, Decryptor, build, image_refs, layer_files

POLICIES = ("hubbot", "hubploy", "path globs")


@dataclass(frozen=True)
class Push:
    """One replayed merge: what it needed, and what each policy decided."""

    commit: str
    subject: str
    needed: frozenset[Pair]
    decisions: dict[str, Decision]


@dataclass
class Replay:
    repo: Path
    ref: str
    pushes: int = 0
    skipped: int = 0  # pushes whose config could not be read at base or head
    decrypted: bool = False  # ground truth saw decrypted secrets (else ciphertext)
    # What could not be scored, and why: a whole push, or one hub of a push.
    left_out: list[str] = field(default_factory=list)
    tallies: dict[str, Tally] = field(default_factory=lambda: {p: Tally() for p in POLICIES})
    log: list[Push] = field(default_factory=list)
    # hubbot's misses and redundant work, by commit subject, to say where they come from
    notes: list[str] = field(default_factory=list)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@contextmanager
def age_key(key: Path | None) -> Iterator[None]:
    """SOPS_AGE_KEY_FILE set to `key` for the replay, if given."""
    saved = os.environ.get("SOPS_AGE_KEY_FILE")
    if key is not None:
        os.environ["SOPS_AGE_KEY_FILE"] = str(key)
    try:
        yield
    finally:
        if key is not None:
            if saved is None:
                del os.environ["SOPS_AGE_KEY_FILE"]
            else:
                os.environ["SOPS_AGE_KEY_FILE"] = saved


class Truth:
    """What each pair receives at a commit, rendered once per distinct input."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        # Decided at the first commit with a secrets file (None until then).
        self.decrypt: Decryptor | None = None
        self.decided = False
        self._plain: dict[str, dict[str, Any]] = {}
        self._renders: dict[tuple[Any, ...], Any] = {}

    def _decrypt(self, file: str, text: str) -> dict[str, Any]:
        if text not in self._plain:
            self._plain[text] = decrypt_text(file, text, cwd=self.repo)
        return self._plain[text]

    def state(self, source: GitCommit, hub: str, env: str) -> Any:
        """Everything helm would receive for the pair, as comparable data."""
        deployment = load_deployment(source, hub)
        inputs = (
            hub,
            env,
            source.read(deployment.file),
            *(source.read(file) for file in layer_files(hub, env)),
            *(source.tree_hash(image.path) for image in deployment.images),
        )
        if inputs not in self._renders:
            values = build(source, hub, env, self.decrypt)
            settings = values.environment
            self._renders[inputs] = (
                values.document,
                settings.namespace,
                settings.release,
                settings.timeout,
                deployment.cluster,
            )
        return (self._renders[inputs], chart(source))

    def decide(self, source: GitCommit) -> None:
        """Decrypt from the first commit whose secrets can be tried, if the keys open them."""
        if not self.decided:
            can = _can_decrypt(self.repo, source)
            self.decided = can is not None
            self.decrypt = self._decrypt if can else None

    def unreadable(self, source: GitCommit) -> dict[str, str]:
        """Each hub whose files at `source` cannot be read or merged, with the error."""
        errors = {}
        for hub in discover_hubs(source):
            try:
                deployment = load_deployment(source, hub)
                image_refs(source, deployment)
                for env in deployment.environments:
                    self.state(source, hub, env)
            except HubbotError as exc:
                errors[hub] = str(exc)
        return errors


def chart(source: GitCommit) -> tuple[tuple[str, str | None], ...]:
    """The chart as helm sees it, apart from values.yaml (a values layer)."""
    return memoized(source, "bench chart", lambda: _chart(source))


def _chart(source: GitCommit) -> tuple[tuple[str, str | None], ...]:
    return tuple(
        (name, source.tree_hash(f"{CHART_DIR}/{name}") or source.read(f"{CHART_DIR}/{name}"))
        for name in source.children(CHART_DIR)
        if f"{CHART_DIR}/{name}" != CHART_VALUES
    )


def pairs_at(source: GitCommit, skip: Collection[str] = ()) -> list[Pair]:
    return [
        (hub, env)
        for hub in discover_hubs(source)
        if hub not in skip
        for env in load_deployment(source, hub).environments
    ]


def images_at(repo: Path, source: GitCommit, skip: Collection[str] = ()) -> list[ImageUse]:
    uses: dict[tuple[str, str], ImageUse] = {}
    for hub in discover_hubs(source):
        if hub in skip:
            continue
        for ref in image_refs(source, load_deployment(source, hub)):
            if (ref.name, ref.directory) not in uses:
                last = git(repo, "log", "-1", "--format=%H", source.commit, "--", ref.directory)
                uses[(ref.name, ref.directory)] = ImageUse(ref.name, ref.directory, ref.tree, last)
    return list(uses.values())


def replay(repo: Path, ref: str, key: Path | None = None) -> Replay:
    result = Replay(repo, ref)
    commits = git(repo, "rev-list", "--first-parent", "--reverse", ref).splitlines()
    registries = {policy: Registry() for policy in POLICIES}
    truth = Truth(repo)
    with age_key(key):
        base: GitCommit | None = None
        for commit in commits:
            head = GitCommit(repo, commit)
            try:
                truth.decide(head)
                if base is None:
                    _seed(repo, head, registries)
                else:
                    _push(result, truth, registries, base, head)
            except HubbotError as exc:
                result.skipped += base is not None
                subject = git(repo, "log", "-1", "--format=%s", commit)
                result.left_out.append(f"{commit[:8]} {subject}: not scored: {exc}")
                continue  # an unreadable commit is never deployed: keep the last good base
            base = head
    result.decrypted = truth.decrypt is not None
    return result


def _can_decrypt(repo: Path, source: GitCommit) -> bool | None:
    """Whether the secrets at `source` decrypt with the keys in the environment; None when
    it has no secrets file to try."""
    for hub in discover_hubs(source):
        for env in load_deployment(source, hub).environments:
            file = layer_files(hub, env)[-1]
            text = source.read(file)
            if text is None:
                continue
            try:
                decrypt_text(file, text, cwd=repo)
            except HubbotError:
                return False
            return True
    return None


def _seed(repo: Path, source: GitCommit, registries: dict[str, Registry]) -> None:
    """The images of the first commit are already built, under each policy's tags."""
    for image in images_at(repo, source):
        registries["hubbot"].push(Build(image.name, tag_for_tree(image.content), image.content))
        registries["hubploy"].push(Build(image.name, hubploy_tag(image.last_commit), image.content))
        registries["path globs"].push(Build(image.name, source.commit, image.content))


def _push(
    result: Replay,
    truth: Truth,
    registries: dict[str, Registry],
    base: GitCommit,
    head: GitCommit,
) -> None:
    """Score one merge of `head` onto `base`.

    A hub unreadable at either commit is left out of the scoring, and the reason noted:
    its pairs are never deployed, and the other hubs are scored as usual.
    Raises HubbotError when what every hub shares cannot be read.
    """
    subject = git(result.repo, "log", "-1", "--format=%s", head.commit)
    title = f"{head.commit[:8]} {subject}"
    skip = {
        hub: f"at {base.commit[:8]} (the base): {error}"
        for hub, error in truth.unreadable(base).items()
    }
    skip.update(truth.unreadable(head))
    result.left_out += [f"{title}: {hub} left out: {why}" for hub, why in sorted(skip.items())]
    registry = registries["hubbot"]
    # As `hubbot ci` plans a push: with the keys, when the replay has them.
    planned = plan(
        base,
        head,
        check=lambda _d, ref: registry.has_tag(ref.name, ref.tag),
        decrypt=truth.decrypt,
    )
    pairs = pairs_at(head, skip)
    images = images_at(result.repo, head, skip)
    before = set(pairs_at(base, skip))
    needed = frozenset(
        pair
        for pair in pairs
        if pair not in before or truth.state(base, *pair) != truth.state(head, *pair)
    )
    contents = {image.directory: image.content for image in images}
    decisions = {
        "hubbot": Decision(
            tuple(
                Build(image.name, image.tag, contents[image.directory])
                for image in planned.images
                if image.build and image.directory in contents
            ),
            frozenset(
                (pair.hub, pair.env) for pair in planned.deployable() if pair.hub not in skip
            ),
        ),
        "hubploy": hubploy(images, pairs, registries["hubploy"]),
        "path globs": path_globs(
            git(
                result.repo, "diff", "--name-only", "--no-renames", base.commit, head.commit
            ).splitlines(),
            images,
            pairs,
            head.commit,
        ),
    }
    result.log.append(Push(head.commit, subject, needed, decisions))
    ours = decisions["hubbot"]
    redundant_builds = sum(registry.has_content(b.name, b.content) for b in ours.builds)
    off = sorted(ours.deploys ^ needed)
    if off or redundant_builds:
        what = ", ".join(
            f"{'redundant' if pair in ours.deploys else 'missed'} {pair[0]}/{pair[1]}"
            for pair in off[:3]
        ) + (" ..." if len(off) > 3 else "")
        if redundant_builds:
            what = f"{redundant_builds} redundant build(s) " + what
        result.notes.append(f"{title}: {what}")
    for policy, decision in decisions.items():
        result.tallies[policy].add(decision, needed, registries[policy])
    result.pushes += 1


def table(result: Replay) -> str:
    rows = [
        ("image builds", "builds"),
        ("  redundant builds", "redundant_builds"),
        ("hub deploys", "deploys"),
        ("  redundant deploys", "redundant_deploys"),
        ("  missed deploys", "missed_deploys"),
    ]
    lines = [f"{'':22}" + "".join(f"{policy:>12}" for policy in POLICIES)]
    for title, attribute in rows:
        lines.append(
            f"{title:22}"
            + "".join(f"{getattr(result.tallies[p], attribute):>12}" for p in POLICIES)
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="a git repository with the tess-hubs layout")
    parser.add_argument("--ref", default="staging", help="the branch to replay (default staging)")
    parser.add_argument("--age-key", type=Path, help="age key file to decrypt secrets with")
    args = parser.parse_args()
    result = replay(args.repo.resolve(), args.ref, args.age_key)
    secrets = "decrypted" if result.decrypted else "compared by ciphertext (no key)"
    if args.age_key and not result.decrypted:
        secrets = f"compared by ciphertext ({args.age_key} opens none of them)"
    print(
        f"{result.repo} {result.ref}: {result.pushes} pushes replayed, "
        f"{result.skipped} unreadable skipped; secrets {secrets}"
    )
    print(table(result))
    for note in result.notes:
        print(f"hubbot: {note}")
    for why in result.left_out:
        print(f"left out: {why}")


if __name__ == "__main__":
    main()
