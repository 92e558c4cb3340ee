"""Which pairs a pull request can have broken: the cost of checking follows the change.

A pair whose every input (hubploy.yaml, its layer files, its image directories) is
byte-identical at the base is proven unchanged by those fingerprints, and with it
every check of that pair: the base passed them. What feeds every pair (the chart
with hub/values.yaml, the schemas, the sops rules and the other policy files)
changes every pair's verdict, so a change there checks every pair, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot import plan, policy
from bot.hubploy import discover_hubs
from bot.source import Source
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


def shared_changes(base: Source, head: Source) -> list[str]:
    """The inputs of every pair that differ: the chart directory, schemas, policy files."""
    changed = [f"{CHART_DIR}/"] if base.tree_hash(CHART_DIR) != head.tree_hash(CHART_DIR) else []
    return changed + policy.changes(base, head)


def scope(base: Source, head: Source) -> Scope:
    """Which of `head`'s pairs must be checked, compared with `base` (a pull request's)."""
    shared = shared_changes(base, head)
    if shared:
        return Scope(base.label, tuple(shared), frozenset())
    base_hubs = set(discover_hubs(base))
    unchanged: set[tuple[str, str]] = set()
    whole: set[str] = set()
    for hub in discover_hubs(head):
        same = plan.same_inputs_by_env(base, head, hub) if hub in base_hubs else {}
        unchanged |= {(hub, env) for env, identical in same.items() if identical}
        if same and all(same.values()):
            whole.add(hub)
    return Scope(base.label, (), frozenset(unchanged), frozenset(whole))
