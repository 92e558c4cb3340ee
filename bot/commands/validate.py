"""`hubbot validate [HUB ...] [--env ENV] [--format text|github|json]`."""

from __future__ import annotations

import argparse

from bot import verdicts


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser("validate", help="check every layer of the selected hubs")
    parser.add_argument("hubs", nargs="*", metavar="HUB", help="default: every hub")
    parser.add_argument("--env", help="one environment (default: every environment of the hub)")
    parser.add_argument(
        "--format",
        choices=("text", "github", "json"),
        default="text",
        help="json: one document with each pair's status, problems (file, line, message), "
        "warnings and start-up verdict",
    )
    parser.add_argument(
        "--no-startup",
        action="store_true",
        help="skip the start-up check (the real JupyterHub loading each pair's config)",
    )
    parser.add_argument(
        "--base",
        metavar="REF",
        help="also check against the schemas at REF (a pull request's base), which the "
        "change under review cannot loosen, and refuse what Kubernetes would refuse in the "
        "change from REF (a resized static volume)",
    )
    parser.add_argument(
        "--only-changed",
        action="store_true",
        help="with --base: check fully only the pairs whose inputs differ from REF; the "
        "others are proven unchanged by their inputs' fingerprints (a pull request's check)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return verdicts.validate(
        args.repo,
        hubs=args.hubs,
        env=args.env,
        output_format=args.format,
        base=args.base,
        no_startup=args.no_startup,
        only_changed=args.only_changed,
    )
