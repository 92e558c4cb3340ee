"""Which pairs a pull request can have broken: the cost of checking follows the change.

A pair whose every input (hubploy.yaml, its layer files, its image directories) is
byte-identical at the base is proven unchanged by those fingerprints, and with it
every check of that pair: the base passed them. What feeds every pair (the chart
with hub/values.yaml, the schemas, the sops rules and the other policy files)
changes every pair's verdict, so a change there checks every pair, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot import git, plan, policy
from bot.errors import HubbotError
from bot.hubploy import DEPLOYMENTS, discover_hubs
from bot.sops_config import CONFIG_FILE
from bot.source import GitCommit, WorkTree
from bot.values import CHART_DIR


@dataclass(frozen=True)
class Scope:
    """The pairs to check fully; the others are proven unchanged from `base`."""

    base: str
    shared: tuple[str, ...]  # changed inputs of every pair: then every pair is checked
    unchanged: frozenset[tuple[str, str]]  # (hub, env) with byte-identical inputs
    unchanged_hubs: frozenset[str] = frozenset()  # hubs all of whose pairs are unchanged

    def checks(self, hub: str, env: str) -> bool:
        return (hub, env) not in self.unchanged

    def hub_unchanged(self, hub: str) -> bool:
        return hub in self.unchanged_hubs

    def summary(self, checked: int) -> str:
        """One line for the output: what was skipped and why, or why nothing was."""
        if self.shared:
            return (
                f"every pair checked: {', '.join(self.shared)} changed since {self.base}, "
                "which feeds every pair"
            )
        total = checked + len(self.unchanged)
        return (
            f"{len(self.unchanged)} of {total} pairs proven unchanged since {self.base} "
            "(byte-identical hubploy.yaml, layer files and image directories): not checked "
            f"again; {checked} checked fully"
        )


def scope(base: GitCommit, head: WorkTree) -> Scope:
    """Which of the work tree's pairs must be checked, compared with `base` (a pull
    request's): git compares the files' contents with the base commit's in two calls."""
    changed = git.changed_since(head.root, base.commit)
    shared = [f"{CHART_DIR}/"] if any(p.startswith(f"{CHART_DIR}/") for p in changed) else []
    shared += policy.changes(base, head)
    if shared:
        return Scope(base.label, tuple(shared), frozenset())
    base_hubs = set(discover_hubs(base))
    unchanged: set[tuple[str, str]] = set()
    whole: set[str] = set()
    for hub in discover_hubs(head):
        if hub not in base_hubs or f"{DEPLOYMENTS}/{hub}/hubploy.yaml" in changed:
            continue  # every pair of the hub reads its hubploy.yaml: all are checked
        try:
            inputs = plan.pair_inputs(base, hub)
        except HubbotError:
            continue  # broken at the base: checking says why
        same = {env: not any(_touched(path, changed) for path in paths)
                for env, paths in inputs.items()}
        unchanged |= {(hub, env) for env, identical in same.items() if identical}
        if all(same.values()):
            whole.add(hub)
    return Scope(base.label, (), frozenset(unchanged), frozenset(whole))


def _touched(path: str, changed: set[str]) -> bool:
    """Whether the file or directory `path` holds a changed path."""
    return path in changed or any(name.startswith(f"{path}/") for name in changed)


def files_to_check(base: GitCommit, head: WorkTree, files: list[str]) -> list[str]:
    """Of `files` (secrets files checked against .sops.yaml), those a pull request can have
    broken: every one when the sops rules changed, else those that differ from `base`."""
    if base.read(CONFIG_FILE) != head.read(CONFIG_FILE):
        return files
    changed = git.changed_since(head.root, base.commit)
    return [file for file in files if file in changed]
