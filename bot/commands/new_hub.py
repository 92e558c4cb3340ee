"""`hubbot new-hub NAME --from HUB [--domain DOMAIN]`: add a hub by copying one."""

from __future__ import annotations

import argparse

from bot import newhub, sops
from bot.source import WorkTree
from bot.yamlfile import load_yaml


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser(
        "new-hub",
        help="copy a hub: own namespace, release, URLs and fresh secrets; prints the checklist",
    )
    parser.add_argument("name", metavar="NAME", help="the new hub (a lowercase DNS label)")
    parser.add_argument("--from", dest="from_hub", metavar="HUB", required=True)
    parser.add_argument(
        "--domain",
        metavar="DOMAIN",
        help="the new hub's prod hostname; other environments keep their prefix "
        '(staging.DOMAIN). Default: derived from HUB\'s hostnames (README "Adding a hub")',
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def encrypt(file: str, plaintext: str) -> str:
        # The fresh tokens are secrets from birth: never printed, even in an error.
        sops.register_leaves(sops.every_leaf(load_yaml(file, plaintext).data), args.redactor)
        return sops.encrypt_text(file, plaintext, cwd=args.repo)

    new = newhub.prepare(WorkTree(args.repo), args.name, args.from_hub, args.domain, encrypt)
    newhub.write(args.repo, new)
    print("\n".join(newhub.summary(new)))
    print("\nOperator's checklist:")
    print("\n".join(newhub.checklist(new)))
    return 0
