"""`hubbot render HUB ENV [--decrypt] [--manifests]`: the one merged values document."""

from __future__ import annotations

import argparse

from bot import manifests
from bot.disguise import for_helm, new_key
from bot.merge import masked
from bot.source import WorkTree
from bot.values import CHART_DIR, build
from bot.yamlfile import dump_yaml


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser(
        "render", help="print the merged values a hub receives (secrets masked)"
    )
    parser.add_argument("hub", metavar="HUB")
    parser.add_argument("env", metavar="ENV")
    parser.add_argument(
        "--decrypt",
        action="store_true",
        help="decrypt the secrets with sops (keys from SOPS_AGE_KEY_FILE or AWS); still masked",
    )
    parser.add_argument(
        "--manifests",
        action="store_true",
        help="print the Kubernetes manifests helm renders from them instead (Secrets masked)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    decrypt = None
    if args.decrypt:
        # Imported only here: a render that decrypts nothing starts sooner without it.
        from bot import sops

        decrypt = sops.decryptor(args.redactor, cwd=args.repo)
    values = build(WorkTree(args.repo), args.hub, args.env, decrypt)
    state = "decrypted and masked" if values.decrypted else "masked"
    if args.manifests:
        text = manifests.render(
            args.repo / CHART_DIR,
            for_helm(values, new_key(), args.redactor.register),
            values.environment.release,
            values.environment.namespace,
            args.redactor.redact,
            manifests.kube_version(values.deployment),
        )
        print(f"# {values.hub}/{values.env}: the manifests helm renders (secrets {state})")
        print(text, end="")
        return 0
    print(f"# {values.hub}/{values.env}: the values helm receives (secrets {state})")
    print(dump_yaml(masked(values.merged)), end="")
    return 0
