"""Images of the selected hubs: which exist, and building, testing and pushing the rest.

Each image is `name:tag` with the tag the content address of its directory
(bot/imagetag.py), so "does the registry have this tag" is the whole question
of whether to build: no commit ranges, nothing a rebase can confuse. An image
that several hubs share is handled once. A tag that exists is never pushed
again (tags are immutable).
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot import git
from bot.engine import Engine, connect
from bot.errors import HubbotError
from bot.hubploy import Deployment, ImageConfig, discover_hubs, load_deployment
from bot.imagetag import tag_for_tree
from bot.redact import Redactor
from bot.registries import Credentials, Registry, registry_for
from bot.source import GitCommit, Source, WorkTree
from bot.values import ImageRef, image_refs

LineSink = Callable[[str], None]

LOG_TAIL_LINES = 30
CACHE_CANDIDATES = 5  # earlier versions of an image directory tried as a layer cache
LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_DIRECTORY = "tess-hubs.image.directory"
LABEL_TREE = "tess-hubs.image.tree"
_STEP = re.compile(r"^(?:STEP|Step) \d+/\d+ ?:")

NOTHING = "nothing (tag exists)"
BUILD = "build (no push without --push)"
BUILD_AND_PUSH = "build and push"


@dataclass(frozen=True)
class Wanted:
    """One image the selected hubs use, with the hubs that use it."""

    ref: ImageRef
    config: ImageConfig
    deployment: Deployment  # of the first hub using it: its registry settings apply
    hubs: tuple[str, ...]


@dataclass(frozen=True)
class ImageStatus:
    name: str
    tag: str
    directory: str
    hubs: tuple[str, ...]
    exists: bool
    action: str

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"


@dataclass(frozen=True)
class ImageResult:
    name: str
    tag: str
    directory: str
    hubs: tuple[str, ...]
    existed: bool
    built: bool
    tested: bool
    pushed: bool
    digest: str | None
    cache_from: str | None = None

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"


def collect(source: Source, hubs: list[str]) -> list[Wanted]:
    """Every image of `hubs`, each name:tag once, in the order hubs name them."""
    found: dict[str, Wanted] = {}
    for hub in hubs:
        deployment = load_deployment(source, hub)
        for ref, config in zip(image_refs(source, deployment), deployment.images, strict=True):
            seen = found.get(ref.reference)
            if seen is None:
                found[ref.reference] = Wanted(ref, config, deployment, (hub,))
            elif hub not in seen.hubs:
                found[ref.reference] = Wanted(
                    seen.ref, seen.config, seen.deployment, (*seen.hubs, hub)
                )
    return list(found.values())


def plan(source: Source, hubs: list[str], push: bool) -> list[ImageStatus]:
    """Ask each registry about each image; no container engine needed."""
    registries: dict[str, Registry] = {}
    statuses = []
    for wanted in collect(source, hubs):
        registry = _registry(registries, wanted)
        exists = registry.exists(wanted.ref.name, wanted.ref.tag)
        action = NOTHING if exists else BUILD_AND_PUSH if push else BUILD
        statuses.append(
            ImageStatus(
                wanted.ref.name,
                wanted.ref.tag,
                wanted.ref.directory,
                wanted.hubs,
                exists,
                action,
            )
        )
    return statuses


def ensure_images(
    source: Source,
    hubs: list[str],
    push: bool,
    *,
    on_line: LineSink = lambda line: None,
    engine: Engine | None = None,
    redactor: Redactor | None = None,
) -> list[ImageResult]:
    """Build (and with `push`, push) every image of `hubs` whose tag the registry lacks.

    Progress goes to `on_line` one line at a time. The engine (DOCKER_HOST) is
    only reached when something has to be built. Registry passwords are
    registered with `redactor` before the engine sees them.
    """
    registries: dict[str, Registry] = {}
    results = []
    for wanted in collect(source, hubs):
        registry = _registry(registries, wanted)
        ref = wanted.ref
        digest = registry.digest(ref.name, ref.tag)
        if digest is not None:
            on_line(f"{ref.reference}: tag exists in the registry ({digest}), nothing to build")
            results.append(_result(wanted, existed=True, digest=digest))
            continue
        if engine is None:
            engine = Engine(connect())
        login = _Login(registry, redactor)
        results.append(_build_one(source, wanted, login, engine, push, on_line))
    return results


@dataclass(frozen=True)
class Reviewed:
    """A pull request's image, in the engine, with its previous version if that is there too."""

    head: ImageResult
    previous: str | None  # name:tag of the version at base, in the engine
    note: str | None = None  # why the previous version is not in the engine


def build_for_review(
    base: Source,
    head: Source,
    hubs: list[str],
    references: set[str],
    *,
    registry: bool,
    on_line: LineSink = lambda line: None,
    engine: Engine,
) -> list[Reviewed]:
    """Put `references` (images of `hubs` at `head`) in the engine without pushing, and the
    base version of each beside it, so their contents can be compared.

    Each comes from the engine itself, else (with `registry`: the registry can be
    asked) a pull, else a build; a head image that fails to build raises with the
    failing step and the log tail. A base version that cannot be had is only noted.
    """
    heads = _local(head, hubs, references, registry=registry, on_line=on_line, engine=engine)
    at_base = set(discover_hubs(base))
    previous = {w.ref.name: w for w in collect(base, [h for h in hubs if h in at_base])}
    reviewed = []
    for result in heads:
        old = previous.get(result.name)
        if old is None:
            reviewed.append(Reviewed(result, None, "a new image: no earlier version"))
            continue
        try:
            _local(base, [old.hubs[0]], {old.ref.reference}, registry=registry,
                   on_line=on_line, engine=engine)
        except HubbotError as exc:
            note = f"the base version {old.ref.reference} could not be built: {exc.message}"
            reviewed.append(Reviewed(result, None, note.splitlines()[0]))
            continue
        reviewed.append(Reviewed(result, old.ref.reference))
    return reviewed


def _local(
    source: Source,
    hubs: list[str],
    references: set[str],
    *,
    registry: bool,
    on_line: LineSink,
    engine: Engine,
) -> list[ImageResult]:
    registries: dict[str, Registry] = {}
    results = []
    for wanted in collect(source, hubs):
        ref = wanted.ref
        if ref.reference not in references:
            continue
        login = _Login(_registry(registries, wanted), None)
        if engine.has_image(ref.reference):
            on_line(f"{ref.reference}: already in the engine")
            results.append(_result(wanted))
        elif registry and engine.pull(ref.name, ref.tag, login(ref.name)):
            on_line(f"{ref.reference}: pulled from the registry")
            results.append(_result(wanted, existed=True))
        else:
            results.append(
                _build_one(source, wanted, login, engine, False, on_line, cache=registry)
            )
    return results


class _Login:
    """A registry's login for the engine, each password registered as a secret first."""

    def __init__(self, registry: Registry, redactor: Redactor | None) -> None:
        self.registry = registry
        self.redactor = redactor

    def __call__(self, name: str) -> Credentials | None:
        credentials = self.registry.credentials(name)
        if credentials is not None and self.redactor is not None:
            self.redactor.register(credentials.password)
        return credentials


def _build_one(
    source: Source,
    wanted: Wanted,
    login: _Login,
    engine: Engine,
    push: bool,
    on_line: LineSink,
    *,
    cache: bool = True,
) -> ImageResult:
    """Build, test and (with `push`) push one image; `cache`: look for a layer cache in the
    registry (only when it can be asked)."""
    ref = wanted.ref
    registry = login.registry
    with tempfile.TemporaryDirectory(prefix="hubbot-image-") as scratch:
        directory = Path(scratch) / "image"
        export_directory(source, ref.directory, directory)
        cache_from = None
        built = False
        if engine.has_image(ref.reference):
            on_line(f"{ref.reference}: already in the engine, not rebuilt")
        else:
            if cache:
                cache_from = _layer_cache(source, wanted, login, engine, on_line)
            _build(engine, directory, wanted, _labels(source, ref), cache_from, on_line)
            built = True
        tested = _self_test(engine, directory, wanted, on_line)
    if not push:
        return _result(wanted, built=built, tested=tested, cache_from=cache_from)
    registry.prepare(ref.name)
    # Tags are immutable: if another run pushed this tag meanwhile, keep theirs.
    digest = registry.digest(ref.name, ref.tag)
    if digest is not None:
        on_line(f"{ref.reference}: tag appeared in the registry meanwhile ({digest}), not pushed")
        return _result(wanted, existed=True, built=built, tested=tested, digest=digest)
    on_line(f"{ref.reference}: pushing")
    pushed_digest = engine.push(ref.name, ref.tag, login(ref.name))
    digest = registry.digest(ref.name, ref.tag)
    if digest is None:
        raise HubbotError(
            f"pushed {ref.reference}, but the registry does not list the tag",
            wanted.config.location,
        )
    if pushed_digest is not None and pushed_digest != digest:
        on_line(f"{ref.reference}: engine reported {pushed_digest}, registry has {digest}")
    on_line(f"{ref.reference}: pushed {digest}")
    if wanted.config.scan_fail_on:
        on_line(f"{ref.reference}: waiting for the registry's scan")
        registry.check_scan(ref.name, ref.tag, wanted.config.scan_fail_on)
    return _result(
        wanted, built=built, tested=tested, pushed=True, digest=digest, cache_from=cache_from
    )


def _result(
    wanted: Wanted,
    *,
    existed: bool = False,
    built: bool = False,
    tested: bool = False,
    pushed: bool = False,
    digest: str | None = None,
    cache_from: str | None = None,
) -> ImageResult:
    ref = wanted.ref
    return ImageResult(
        ref.name,
        ref.tag,
        ref.directory,
        wanted.hubs,
        existed,
        built,
        tested,
        pushed,
        digest,
        cache_from,
    )


def _registry(cache: dict[str, Registry], wanted: Wanted) -> Registry:
    hub = wanted.deployment.hub
    if hub not in cache:
        cache[hub] = registry_for(wanted.deployment)
    return cache[hub]


def export_directory(source: Source, path: str, target: Path) -> None:
    """Copy exactly the files the tag was computed from into `target`."""
    target.mkdir(parents=True)
    if isinstance(source, GitCommit):
        archive = git.run(source.root, "archive", "--format=tar", f"{source.commit}:{path}")
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="tar")
        return
    if not isinstance(source, WorkTree):
        raise TypeError(f"cannot export files from {type(source).__name__}")
    # The entries the tree id is computed from too: the context is what the tag names.
    for entry in source.entries(path):
        destination = target / entry.name
        if entry.submodule is not None:
            # An empty directory, as git archive gives a submodule.
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source.root / entry.path, destination)


def _labels(source: Source, ref: ImageRef) -> dict[str, str]:
    commit = source.commit if isinstance(source, GitCommit) else git.resolve(source.root, "HEAD")
    if isinstance(source, WorkTree) and git.tree_id(source.root, commit, ref.directory) != ref.tree:
        commit += "+uncommitted"
    return {LABEL_REVISION: commit, LABEL_DIRECTORY: ref.directory, LABEL_TREE: ref.tree}


def _layer_cache(
    source: Source, wanted: Wanted, login: _Login, engine: Engine, on_line: LineSink
) -> str | None:
    """The newest earlier version of this image directory that the registry has, pulled."""
    ref = wanted.ref
    start = source.commit if isinstance(source, GitCommit) else "HEAD"
    try:
        log = git.run(source.root, "log", "--format=%H", "-n", "50", start, "--", ref.directory)
    except HubbotError:
        return None  # no history yet (a new repository)
    tried: set[str] = {ref.tree}
    for commit in log.decode().split():
        tree = git.tree_id(source.root, commit, ref.directory)
        if tree is None or tree in tried:
            continue
        tried.add(tree)
        tag = tag_for_tree(tree)
        if login.registry.exists(ref.name, tag):
            previous = f"{ref.name}:{tag}"
            if engine.pull(ref.name, tag, login(ref.name)):
                on_line(f"{ref.reference}: using {previous} as the layer cache")
                return previous
            return None
        if len(tried) > CACHE_CANDIDATES:
            break
    return None


def _build(
    engine: Engine,
    directory: Path,
    wanted: Wanted,
    labels: dict[str, str],
    cache_from: str | None,
    on_line: LineSink,
) -> None:
    ref = wanted.ref
    on_line(f"{ref.reference}: building {ref.directory} (for {', '.join(wanted.hubs)})")
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    steps: list[str] = []

    def line(text: str) -> None:
        tail.append(text)
        if _STEP.match(text):
            steps.append(text)
            on_line(f"  [{time.monotonic() - started:7.1f}s] {text}")

    try:
        engine.build(directory, ref.reference, labels, [cache_from] if cache_from else [], line)
    except (Exception, SystemExit) as exc:  # BuildError, or repo2docker's own exit(1)
        reason = str(exc).strip() or type(exc).__name__
        if isinstance(exc, SystemExit):
            reason = "repo2docker stopped (see its log below)"
        step = steps[-1] if steps else "before the first step"
        log = "\n".join(f"  | {text}" for text in tail)
        raise HubbotError(
            f"building {ref.reference} from {ref.directory} failed at {step}: {reason}\n"
            f"last {len(tail)} lines of the build log:\n{log}",
            wanted.config.location,
        ) from None
    on_line(f"{ref.reference}: built in {time.monotonic() - started:.1f}s")


def _self_test(engine: Engine, directory: Path, wanted: Wanted, on_line: LineSink) -> bool:
    """Run the directory's `test` script and/or `tests/` inside the image; raise on failure."""
    runs: list[tuple[str, dict[str, Path], list[str]]] = []
    script = directory / "test"
    if script.is_file():
        command = ["./test"] if script.stat().st_mode & 0o100 else ["/bin/sh", "./test"]
        runs.append(("test", {"test": script}, command))
    if (directory / "tests").is_dir():
        runs.append(
            ("tests/", {"tests": directory / "tests"}, ["python", "-m", "pytest", "-q", "tests"])
        )
    ref = wanted.ref
    for label, files, command in runs:
        on_line(f"{ref.reference}: self-test {label}: {' '.join(command)}")
        result = engine.run_test(ref.reference, files, command)
        if result.status != 0:
            output = "\n".join(
                f"  | {text}" for text in result.output.splitlines()[-LOG_TAIL_LINES:]
            )
            raise HubbotError(
                f"image self-test {ref.directory}/{label} failed in {ref.reference} "
                f"(exit status {result.status}); the image is not pushed. Its output:\n{output}",
                wanted.config.location,
            )
        on_line(f"{ref.reference}: self-test {label} passed")
    return bool(runs)
