"""`hubbot secrets check|edit|encrypt|decrypt|updatekeys`: the sops files, kept honest.

Plaintext never passes through a file the bot writes: `edit` gives sops a
temporary directory in memory for the editor's copy, `encrypt` feeds sops on
standard input, and `decrypt` lets sops write straight to standard output.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from bot import sops
from bot.errors import HubbotError, Location
from bot.hubploy import DEPLOYMENTS, discover_hubs, environment, load_deployment
from bot.memfs import private_dir
from bot.redact import Redactor
from bot.sops_config import (
    CreationRule,
    check_against_rules,
    load_rules,
    matching_rule,
    mismatch,
    recipients_of,
    secrets_files,
)
from bot.sops_format import number_message, read_shape, refuse_numbers
from bot.source import Source, WorkTree
from bot.values import Decryptor
from bot.yamlfile import load_yaml

EXIT_NOT_MODIFIED = 200  # sops edit: the file was left as it was
EXIT_EDITOR_FAILED = 201  # sops edit: the editor could not be started, or failed


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser("secrets", help="check, edit, encrypt, decrypt and re-key secrets")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    check_parser = actions.add_parser(
        "check", help="every secrets file is sops-encrypted for exactly its creation rule's keys"
    )
    check_parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="json: one document with each file's status, problems and whether its MAC was "
        "verified",
    )
    edit = actions.add_parser("edit", help="edit a secrets file in $EDITOR (creating it if new)")
    encrypt = actions.add_parser(
        "encrypt", help="encrypt plaintext YAML into a secrets file by its creation rule"
    )
    encrypt.add_argument(
        "--input",
        metavar="FILE",
        help="plaintext YAML to encrypt, `-` for standard input (default: the secrets file "
        "itself, encrypted in place)",
    )
    encrypt.add_argument("--force", action="store_true", help="replace an encrypted file")
    decrypt = actions.add_parser("decrypt", help="print a decrypted secrets file")
    decrypt.add_argument(
        "--print-in-ci",
        action="store_true",
        help="print even in CI (CI=true) to a terminal or a pipe, where a log may keep it",
    )
    for action in (edit, encrypt, decrypt):
        action.add_argument("hub", metavar="HUB")
        action.add_argument("env", metavar="ENV")
    updatekeys = actions.add_parser(
        "updatekeys", help="re-encrypt secrets files for their creation rule's keys"
    )
    updatekeys.add_argument("hubs", nargs="*", metavar="HUB", help="default: every hub")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    actions = {
        "check": check,
        "edit": edit,
        "encrypt": encrypt,
        "decrypt": decrypt,
        "updatekeys": updatekeys,
    }
    status: int = actions[args.action](args)
    return status


# check


def check(args: argparse.Namespace) -> int:
    source = WorkTree(args.repo)
    rules = load_rules(source)
    decrypt = sops.decryptor(args.redactor, cwd=args.repo)
    files = secrets_files(source)
    results: list[tuple[str, HubbotError | None, bool]] = []
    for file in files:
        try:
            results.append((file, None, check_file(source, rules, file, decrypt)))
        except HubbotError as exc:
            results.append((file, exc, False))
    failed = sum(error is not None for _, error, _ in results)
    unverified = [file for file, error, verified in results if error is None and not verified]
    problems: list[str] = []
    notes: list[str] = []
    details: list[str] = []
    key_file = os.environ.get("SOPS_AGE_KEY_FILE")
    if key_file and unverified and len(unverified) == len(files) - failed:
        # A key was given and opens nothing: a wrong key, not a machine without keys.
        problems.append(
            f"the age key in SOPS_AGE_KEY_FILE ({key_file}) opens none of the secrets "
            "files: set it to the key file of one of their recipients"
        )
        for file in unverified:
            keys = recipients_of(file, source.read(file) or "").describe()
            details.append(f"{file}: encrypted for {', '.join(keys) or 'no key'}")
    elif unverified:
        notes.append(
            f"the MAC of {len(unverified)} file(s) was not verified: no key here could open "
            "them (set SOPS_AGE_KEY_FILE, or AWS credentials for KMS, to verify)"
        )
    if args.format == "json":
        _print_check_json(results, problems, details, notes)
    else:
        for file, error, verified in results:
            if error is not None:
                print(f"FAILED  {file}\n  {error}")
            else:
                print(f"ok      {file}" + ("" if verified else " (MAC not verified: no key here)"))
        print(f"{len(files) - failed} of {len(files)} secrets files ok")
        for problem in problems:
            print(f"FAILED  {problem}")
        for detail in details:
            print(f"  {detail}")
        for note in notes:
            print(f"note: {note}")
    return 1 if failed or problems else 0


def _print_check_json(
    results: list[tuple[str, HubbotError | None, bool]],
    problems: list[str],
    details: list[str],
    notes: list[str],
) -> None:
    document = {
        "valid": not problems and all(error is None for _, error, _ in results),
        "files": [
            {
                "file": file,
                "status": "ok" if error is None else "failed",
                # None: the file failed before its MAC could be checked.
                "mac_verified": verified if error is None else None,
                "problems": [] if error is None else [error.as_json()],
            }
            for file, error, verified in results
        ],
        "problems": [
            {"file": None, "line": None, "message": "; ".join([text, *details])}
            for text in problems
        ],
        "notes": notes,
        "summary": {
            "files": len(results),
            "ok": sum(error is None for _, error, _ in results),
        },
    }
    print(json.dumps(document, indent=2))


def check_file(source: Source, rules: list[CreationRule], file: str, decrypt: Decryptor) -> bool:
    """Raise on the first problem; True if the MAC was verified by decrypting."""
    text = source.read(file) or ""
    check_against_rules(rules, file, text)
    try:
        decrypt(file, text)
    except sops.NoKeyError:
        return False
    return True


# edit, encrypt, decrypt


def _target(args: argparse.Namespace) -> tuple[WorkTree, str]:
    """The secrets file of a known hub and environment."""
    source = WorkTree(args.repo)
    environment(load_deployment(source, args.hub), args.env)
    return source, f"{DEPLOYMENTS}/{args.hub}/secrets/{args.env}.yaml"


def edit(args: argparse.Namespace) -> int:
    source, file = _target(args)
    rule = matching_rule(load_rules(source), file)
    if source.read(file) is None:
        _write(args.repo, file, _encrypt_text(args.repo, file, "{}\n"))
        print(f"created {file} (empty) for {', '.join(rule.recipients.describe())}")
    # sops hands the editor a plaintext copy in TMPDIR: keep it in memory, removed after.
    with private_dir() as scratch:
        result = sops.run(
            ["edit", file],
            cwd=args.repo,
            env={**os.environ, "TMPDIR": str(scratch)},
            stdout=None,
        )
    if result.returncode == EXIT_NOT_MODIFIED:
        print(f"{file}: not changed")
        return 0
    if result.returncode == EXIT_EDITOR_FAILED:
        editor = os.environ.get("SOPS_EDITOR") or os.environ.get("EDITOR") or "vim, nano or vi"
        raise HubbotError(
            f"the editor ({editor}) failed or could not be started: nothing was saved; "
            "check EDITOR (or SOPS_EDITOR)",
            Location(file),
        )
    if result.returncode != 0:
        raise sops.failure(
            file, source.read(file) or "", result.returncode, result.stderr.decode(errors="replace")
        )
    print(f"saved {file}")
    refuse_numbers(read_shape(file, source.read(file) or ""))
    return 0


def encrypt(args: argparse.Namespace) -> int:
    source, file = _target(args)
    rule = matching_rule(load_rules(source), file)
    current = source.read(file)
    if args.input is None:
        if current is None:
            raise HubbotError(
                "does not exist: pass --input FILE (or `-` for standard input), or use "
                "`hubbot secrets edit`",
                Location(file),
            )
        plaintext = current
    else:
        if current is not None and _is_sops(file, current) and not args.force:
            raise HubbotError(
                "is already encrypted: use `hubbot secrets edit`, or --force to replace it",
                Location(file),
            )
        plaintext = sys.stdin.read() if args.input == "-" else Path(args.input).read_text()
    if _is_sops(file, plaintext):
        raise HubbotError("is already encrypted: use `hubbot secrets edit`", Location(file))
    _register_plaintext(file, plaintext, args.redactor)
    _write(args.repo, file, _encrypt_text(args.repo, file, plaintext))
    print(f"encrypted {file} for {', '.join(rule.recipients.describe())}")
    if args.input not in (None, "-"):
        print(f"note: {args.input} still holds the plaintext: delete it")
    return 0


def decrypt(args: argparse.Namespace) -> int:
    source, file = _target(args)
    text = source.read(file)
    if text is None:
        raise HubbotError("does not exist", Location(file))
    read_shape(file, text)
    if _in_ci() and not args.print_in_ci and not _stdout_is_a_file():
        raise HubbotError(
            "refusing to print decrypted secrets in CI (CI=true) to a terminal or a pipe, where "
            "a log may keep them: redirect standard output to a file, or pass --print-in-ci"
        )
    sys.stdout.flush()
    # sops writes the plaintext straight to our standard output: it never enters the bot.
    result = sops.run(
        ["decrypt", "--filename-override", file, "--input-type", "yaml", "--output-type", "yaml"],
        stdin=text,
        cwd=args.repo,
        stdout=None,
    )
    if result.returncode != 0:
        raise sops.failure(file, text, result.returncode, result.stderr.decode(errors="replace"))
    return 0


def _is_sops(file: str, text: str) -> bool:
    try:
        data = load_yaml(file, text).data
    except HubbotError:
        return False
    return isinstance(data, dict) and isinstance(data.get("sops"), dict)


def _register_plaintext(file: str, text: str, redactor: Redactor) -> None:
    doc = load_yaml(file, text)
    data: Any = doc.data
    if not isinstance(data, dict):
        raise HubbotError("plaintext secrets must be a YAML mapping", Location(file, 1))
    leaves = list(sops.every_leaf(data))
    sops.register_leaves(leaves, redactor)
    for path, value in leaves:
        if isinstance(value, int | float):  # sops would encrypt it as type int or float
            sops_type = "float" if isinstance(value, float) else "int"
            where = Location(file, doc.lines.get(path))
            raise HubbotError(number_message(file, path, sops_type), where)


def _encrypt_text(repo: Path, file: str, plaintext: str) -> str:
    return sops.encrypt_text(file, plaintext, cwd=repo)


def _write(repo: Path, file: str, ciphertext: str) -> None:
    path = repo / file
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.hubbot-new")
    partial.write_text(ciphertext)
    partial.replace(path)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _stdout_is_a_file() -> bool:
    try:
        return stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError):
        return False


# updatekeys


def updatekeys(args: argparse.Namespace) -> int:
    source = WorkTree(args.repo)
    rules = load_rules(source)
    hubs = args.hubs or discover_hubs(source)
    failed = 0
    files = secrets_files(source, hubs)
    for file in files:
        try:
            print(f"{_updatekeys_file(source, rules, file, args.repo)}  {file}")
        except HubbotError as exc:
            print(f"FAILED   {file}\n  {exc}")
            failed += 1
    print(f"{len(files) - failed} of {len(files)} secrets files up to date")
    return 1 if failed else 0


def _updatekeys_file(source: Source, rules: list[CreationRule], file: str, repo: Path) -> str:
    text = source.read(file) or ""
    read_shape(file, text)
    rule = matching_rule(rules, file)
    if recipients_of(file, text) == rule.recipients:
        return "ok      "
    result = sops.run(["updatekeys", "--yes", file], cwd=repo, stdin="")
    if result.returncode != 0:
        raise sops.failure(file, text, result.returncode, result.stderr.decode(errors="replace"))
    after = recipients_of(file, source.read(file) or "")
    if after != rule.recipients:
        raise HubbotError(mismatch(after, rule) + " (sops left it so)", Location(file))
    return "updated "
