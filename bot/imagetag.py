"""Image tags as content addresses.

The tag is derived from the git tree id of the image directory: the same
content always gives the same tag, whatever the history (rebase, squash,
revert, shallow clone). The prefix keeps every tag a string to YAML.
"""

from __future__ import annotations

import re

TAG_PREFIX = "tree-"

# Plain scalars that YAML 1.1 (helm) or 1.2 would read as a number, bool or null.
_NOT_A_STRING = re.compile(
    r"""^(?:
        [-+]?(?:0|[1-9][0-9_]*)                      # decimal int
      | [-+]?0[0-7_]+ | 0o[0-7_]+                    # octal
      | [-+]?0x[0-9a-fA-F_]+ | [-+]?0b[01_]+         # hex, binary
      | [-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?  # float, 1e3
      | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?        # sexagesimal (1.1)
      | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
      | y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE
      | on|On|ON|off|Off|OFF|null|Null|NULL|~
    )$""",
    re.VERBOSE,
)


def tag_for_tree(tree_id: str) -> str:
    return f"{TAG_PREFIX}{tree_id[:12]}"


def reads_as_non_string(text: str) -> bool:
    """True when `text`, written unquoted, would not be read back as a string."""
    return text == "" or bool(_NOT_A_STRING.match(text))
