"""The values one hub receives in one environment, with the provenance of each.

Layers, lowest precedence first: hub/values.yaml, the hub's config/common.yaml,
config/<env>.yaml, secrets/<env>.yaml (sops), then the image references the
bot computes. This is the one merge path: what helm receives, what is
validated and what reviewers see all come from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.errors import HubbotError, Location
from bot.hubploy import DEPLOYMENTS, Deployment, Environment, environment, load_deployment
from bot.imagetag import tag_for_tree
from bot.merge import Layer, Merged, merge_layers, set_path
from bot.sops_format import read_shape, refuse_numbers
from bot.source import Source, memoized
from bot.yamlfile import Path_, load_yaml

CHART_DIR = "hub"
CHART_VALUES = f"{CHART_DIR}/values.yaml"

# Turns a secrets file (repo path, text) into its decrypted mapping. Without one,
# secrets are read in shape-only mode.
Decryptor = Callable[[str, str], dict[str, Any]]


@dataclass(frozen=True)
class ImageRef:
    name: str
    tag: str
    directory: str
    tree: str
    location: Location

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"


@dataclass(frozen=True)
class HubValues:
    hub: str
    env: str
    deployment: Deployment
    environment: Environment
    layers: tuple[Layer, ...]
    merged: Merged
    images: tuple[ImageRef, ...]
    decrypted: bool

    @property
    def document(self) -> dict[str, Any]:
        return self.merged.document

    def location(self, path: Path_) -> Location:
        """The layer line that set `path`, or its nearest enclosing key, or (when no layer
        sets anything on the way) the environment's own file."""
        found = self.merged.nearest(path)
        if found is None:
            return Location(layer_files(self.hub, self.env)[2])
        return Location(found[1].file, found[1].line)


def layer_files(hub: str, env: str) -> list[str]:
    base = f"{DEPLOYMENTS}/{hub}"
    return [
        CHART_VALUES,
        f"{base}/config/common.yaml",
        f"{base}/config/{env}.yaml",
        f"{base}/secrets/{env}.yaml",
    ]


def build(source: Source, hub: str, env: str, decrypt: Decryptor | None = None) -> HubValues:
    deployment = load_deployment(source, hub)
    env_config = environment(deployment, env)
    *value_files, secrets_file = layer_files(hub, env)
    layers = [_values_layer(source, file) for file in value_files]
    layers.append(_secrets_layer(source, secrets_file, decrypt))
    images = tuple(image_refs(source, deployment))
    image_layer: dict[str, Any] = {}
    lines: dict[Path_, int] = {}
    for image, config in zip(images, deployment.images, strict=True):
        set_path(image_layer, config.helm_path, {"name": image.name, "tag": image.tag})
        line = image.location.line or 1
        paths = [config.helm_path[:depth] for depth in range(1, len(config.helm_path) + 1)]
        paths += [(*config.helm_path, "name"), (*config.helm_path, "tag")]
        lines.update(dict.fromkeys(paths, line))
    layers.append(
        Layer(
            deployment.file,
            image_layer,
            lines,
            note="computed by hubbot: content address of the image directory",
        )
    )
    return HubValues(
        hub,
        env,
        deployment,
        env_config,
        tuple(layers),
        merge_layers(layers),
        images,
        decrypted=decrypt is not None,
    )


def image_refs(source: Source, deployment: Deployment) -> list[ImageRef]:
    refs = []
    for image in deployment.images:
        tree = source.tree_hash(image.path)
        if tree is None and source.is_file(image.path):
            raise HubbotError(
                f"image path {image.path} is a file, not a directory (set by `path` for image "
                f"{image.name}): name the directory repo2docker builds",
                image.path_location,
            )
        if tree is None:
            raise HubbotError(
                f"image directory {image.path} is missing or empty (set by `path` for "
                f"image {image.name})",
                image.path_location,
            )
        refs.append(ImageRef(image.name, tag_for_tree(tree), image.path, tree, image.location))
    return refs


def _read_layer(source: Source, file: str) -> str:
    text = source.read(file)
    if text is None:
        raise HubbotError(
            f"layer file is missing in {source.label}: create it (`{{}}` if it sets nothing)",
            Location(file),
        )
    return text


def _values_layer(source: Source, file: str) -> Layer:
    # hub/values.yaml and common.yaml serve every environment: parse each once per source.
    return memoized(source, ("values layer", file), lambda: _parse_values_layer(source, file))


def _parse_values_layer(source: Source, file: str) -> Layer:
    doc = load_yaml(file, _read_layer(source, file))
    data = {} if doc.data is None else doc.data
    if not isinstance(data, dict):
        raise HubbotError("a values file must be a mapping at the top level", Location(file, 1))
    return Layer(file, data, doc.lines)


def _secrets_layer(source: Source, file: str, decrypt: Decryptor | None) -> Layer:
    text = _read_layer(source, file)
    shape = read_shape(file, text)
    refuse_numbers(shape)
    data = shape.data if decrypt is None else decrypt(file, text)
    return Layer(file, data, shape.lines, secret=True)
