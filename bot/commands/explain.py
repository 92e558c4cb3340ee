"""`hubbot explain HUB ENV KEY.PATH`: a value, the layer that set it, and what it overrode."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bot.errors import UsageError
from bot.merge import MAP, MASK, Origin
from bot.source import WorkTree
from bot.values import build
from bot.yamlfile import Path_


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser("explain", help="show which layer set a key, and what it overrode")
    parser.add_argument("hub", metavar="HUB")
    parser.add_argument("env", metavar="ENV")
    parser.add_argument("key", metavar="KEY.PATH", help="dotted path, e.g. jupyterhub.cull.timeout")
    parser.set_defaults(func=run)


def parse_key(text: str) -> Path_:
    if not text or any(not part for part in text.split(".")):
        raise UsageError(f"KEY.PATH {text!r} must be dotted keys, e.g. jupyterhub.cull.timeout")
    return tuple(int(part) if part.isdigit() else part for part in text.split("."))


def run(args: argparse.Namespace) -> int:
    values = build(WorkTree(args.repo), args.hub, args.env)
    path = parse_key(args.key)
    chain = values.merged.chain(path)
    if not chain:
        near = values.merged.nearest(path)
        hint = f"; the nearest key set is {_dotted(near[0])}" if near else ""
        print(f"{args.key} is not set for {values.hub}/{values.env}{hint}")
        return 1
    winner, overridden = chain[-1], chain[:-1]
    print(f"{args.key} = {_show(winner)}")
    print(f"  set by    {_where(winner)}")
    for origin in reversed(overridden):
        print(f"  overrode  {_where(origin)} = {_show(origin)}")
    if not overridden:
        print("  overrode  nothing (no lower layer sets it)")
    return 0


def _where(origin: Origin) -> str:
    place = f"{origin.file}:{origin.line}" if origin.line else origin.file
    return f"{place} ({origin.note})" if origin.note else place


def _show(origin: Origin) -> str:
    if origin.secret:
        return f"{MASK} (from a secrets file)"
    value: Any = origin.value
    if value == MAP:
        return "(a mapping, merged key by key)"
    if value is None:
        return "null (deletes the key, including the chart's default)"
    return json.dumps(value)


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)
