"""What counts as policy: the schemas, the sops creation rules and who owns them.

A pull request is validated against the schemas of its base as well as its
own, so it cannot loosen what it is judged by; a change to any of these files
is flagged in its comment, and .github/CODEOWNERS makes the owners review it.
"""

from __future__ import annotations

from bot.schemas import SCHEMA_DIR
from bot.sops_config import CONFIG_FILE
from bot.source import Source

CODEOWNERS = ".github/CODEOWNERS"
POLICY_FILES = (CONFIG_FILE, CODEOWNERS)


def changes(base: Source, head: Source) -> list[str]:
    """The policy files that differ between `base` and `head`."""
    schemas = sorted(set(base.children(SCHEMA_DIR)) | set(head.children(SCHEMA_DIR)))
    paths = [f"{SCHEMA_DIR}/{name}" for name in schemas] + list(POLICY_FILES)
    return [path for path in paths if base.read(path) != head.read(path)]


def notice(changed: list[str]) -> str:
    """The reviewer's risk flag for changed policy files (the diff summary shows it)."""
    return (
        f"policy change ({', '.join(changed)}): it decides what every hub may do; the owners "
        f"named in {CODEOWNERS} must review it, and until it merges, changes are also checked "
        "against the base's schemas"
    )
