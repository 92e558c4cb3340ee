"""`hubbot deploy HUB [HUB ...] ENV [--dry-run]`: deploy hubs to one environment."""

from __future__ import annotations

import argparse
import os

from bot import deploy, freight, github, helm, records, sops
from bot.errors import HubbotError
from bot.redact import Redactor
from bot.source import WorkTree
from bot.values import CHART_DIR


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser(
        "deploy", help="helm upgrade the hubs in one environment, then check their health"
    )
    parser.add_argument("hubs", nargs="+", metavar="HUB")
    parser.add_argument("env", metavar="ENV")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the helm command and the values (secrets masked); needs no credentials",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source = WorkTree(args.repo)
    targets = [deploy.Target(hub, args.env) for hub in dict.fromkeys(args.hubs)]
    if args.dry_run:
        major = _helm_major_or_3(args)
        for target in targets:
            print(deploy.dry_run(source, target, f"{CHART_DIR}/", major), end="")
        return 0
    ours = freight.checkout(args.repo, os.environ.get("GITHUB_SHA"))
    if args.env == freight.PROD:
        # Before anything runs: a prod deploy ships a commit, never a working tree.
        freight.require_committed(ours)
    client = github_client(args.redactor)
    key = records.signing_key_for(os.environ, args.redactor.register, args.env)
    recorder = None
    trust = None
    if client is None:
        print("deploys are not recorded: GITHUB_TOKEN and GITHUB_REPOSITORY are not set")
    else:
        recorder = freight.GitHubRecorder(client, ours, key)
        trust = records.trust_from_env(client, args.repo, os.environ)
    outcomes, stopped = deploy.deploy_targets(
        args.repo,
        source,
        sops.decryptor(args.redactor, cwd=args.repo),
        args.redactor,
        targets,
        recorder,
        freight.freight_check(source, trust, ours),
    )
    print(deploy.table(outcomes))
    if stopped:
        return deploy.EXIT_TERMINATED
    return 1 if any(not outcome.ok for outcome in outcomes) else 0


def _helm_major_or_3(args: argparse.Namespace) -> int:
    """The flags of the helm that would run; helm 3's when helm is not installed here."""
    try:
        return helm.major_version(helm.Processes(), args.repo)
    except HubbotError:
        return 3


def github_client(redactor: Redactor) -> github.Client | None:
    """The GitHub API client when the environment configures one, else None."""
    if not (os.environ.get("GITHUB_TOKEN") and os.environ.get("GITHUB_REPOSITORY")):
        return None
    return github.client_from_env(assert_clean=redactor.assert_clean)

