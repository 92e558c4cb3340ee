"""`hubbot build [HUB ...] [--push] [--dry-run] [--format text|json]`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from bot.builder import ImageResult, ImageStatus, ensure_images, plan
from bot.hubploy import discover_hubs
from bot.source import WorkTree


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser(
        "build", help="build the images whose content-addressed tag the registry lacks"
    )
    parser.add_argument("hubs", nargs="*", metavar="HUB", help="default: every hub")
    parser.add_argument("--push", action="store_true", help="push what was built")
    parser.add_argument(
        "--dry-run", action="store_true", help="only say, per image, whether it exists"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source = WorkTree(args.repo)
    hubs = args.hubs or discover_hubs(source)
    if args.dry_run:
        statuses = plan(source, hubs, args.push)
        if args.format == "json":
            print(json.dumps([_status_json(status) for status in statuses], indent=2))
        else:
            for status in statuses:
                print(_status_text(status))
        return 0
    # Progress goes to stderr when stdout carries JSON.
    progress = sys.stderr if args.format == "json" else sys.stdout
    results = ensure_images(
        source,
        hubs,
        args.push,
        on_line=lambda line: print(line, file=progress, flush=True),
        redactor=getattr(args, "redactor", None),
    )
    if args.format == "json":
        print(json.dumps([_result_json(result) for result in results], indent=2))
    else:
        for result in results:
            print(_result_text(result))
    return 0


def _status_text(status: ImageStatus) -> str:
    state = "exists" if status.exists else "missing"
    return (
        f"{status.reference}  {state}  -> {status.action}  "
        f"[{status.directory}; hubs: {', '.join(status.hubs)}]"
    )


def _status_json(status: ImageStatus) -> dict[str, Any]:
    data = dataclasses.asdict(status)
    data["reference"] = status.reference
    return data


def _result_text(result: ImageResult) -> str:
    if result.existed and not result.built:
        return f"{result.reference}  exists  {result.digest}  (nothing built)"
    done = ["built" if result.built else "reused the engine's copy"]
    if result.tested:
        done.append("self-tested")
    if result.pushed:
        done.append(f"pushed {result.digest}")
    elif result.existed:
        done.append(f"not pushed: the tag appeared meanwhile ({result.digest})")
    else:
        done.append("not pushed (no --push)")
    return f"{result.reference}  {', '.join(done)}"


def _result_json(result: ImageResult) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    data["reference"] = result.reference
    return data
