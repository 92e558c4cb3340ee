"""`hubbot rollback HUB ENV [--no-push]`: a pull request that puts back the last good deploy."""

from __future__ import annotations

import argparse
import os

from bot import github, records, rollback
from bot.errors import HubbotError


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser(
        "rollback",
        help="open a PR into staging that puts back the config of the pair's last good deploy",
    )
    parser.add_argument("hub", metavar="HUB")
    parser.add_argument("env", metavar="ENV")
    parser.add_argument(
        "--no-push",
        action="store_true",
        help="only make the local branch; push it and open the PR yourself",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        client = github.client_from_env(assert_clean=args.redactor.assert_clean)
    except HubbotError as exc:
        raise HubbotError(
            f"hubbot rollback reads the deployment records on GitHub: {exc}"
        ) from None
    trust = records.trust_from_env(client, args.repo, os.environ)
    if trust is None:
        print(
            f"{records.PUBLIC_KEYS_VARIABLE} is not set: deployment records are taken as "
            "GitHub has them, unverified"
        )
    prepared = rollback.prepare(args.repo, client, args.hub, args.env, trust)
    current, target = prepared.current, prepared.target
    print(
        f"{args.hub}/{args.env} runs deployment {current.deployment_id} (commit "
        f"{current.sha[:12]}); the last good deploy before it with other freight is "
        f"{target.deployment_id} (commit {target.sha[:12]})"
    )
    print(f"branch {prepared.branch} from {prepared.base} puts back:")
    print("".join(f"  {path}\n" for path in prepared.paths), end="")
    if args.no_push:
        print(f"not pushed: git push origin {prepared.branch}, then open a PR into staging")
        return 0
    pull = rollback.open_pull(args.repo, client, prepared)
    print(f"opened PR #{pull['number']} into staging: {pull['html_url']}")
    return 0
