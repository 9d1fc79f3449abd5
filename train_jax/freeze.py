"""Fine-tuning with the first stages of a network kept fixed (`model.freeze`).

A pretrained network's first stages compute edges and textures that a small clinical dataset
cannot improve on; they are also the most expensive stages at high resolution, because they run
on the largest maps. `model.freeze = "blocks.2"` keeps every stage up to and including
`blocks.2` (`model.stage_names`) fixed; naming the last stage trains the heads alone (a linear
probe):

* their weights get no gradient (`stop_frozen`, so XLA drops their backward pass) and no update,
  not even weight decay (`optimizer_labels` for `optax.multi_transform`);
* their BatchNorm layers normalise with their running statistics and do not update them, and
  their dropout and drop-path are off (`freeze_stages` puts those sub-modules in evaluation mode
  before the trainer splits the model).

So a frozen stage computes the same function at every step, and a checkpoint stores it unchanged.

    owners = freeze_stages(model, "blocks.2")       # after model.train(), before nnx.split
    mask = trainable_mask(params, owners)           # params: the nnx.Param state
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from flax import nnx

TRAINABLE, FROZEN = "trainable", "frozen"


def frozen_owners(model: Any, last_stage: str) -> tuple[str, ...]:
    """Attribute paths ("stem_bn", "blocks.3") of the sub-modules that compute the stages up to
    and including `last_stage`; () for "". Raises ValueError naming the model's stages."""
    if not last_stage:
        return ()
    names = list(model.stage_names)
    if last_stage not in names:
        raise ValueError(
            f"model.freeze must name one of the model's stages ({', '.join(names)}), "
            f"got {last_stage!r}"
        )
    owners = model.stage_owners()
    return tuple(path for name in names[: names.index(last_stage) + 1] for path in owners[name])


def _submodule(model: Any, path: str) -> Any:
    """The attribute at dotted `path` ("blocks.3" = model.blocks[3])."""
    node = model
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def freeze_stages(model: Any, last_stage: str) -> tuple[str, ...]:
    """Put the sub-modules of the stages up to `last_stage` in evaluation mode (fixed BatchNorm
    statistics, no dropout or drop path) and return their attribute paths (`frozen_owners`).
    Call it after `model.train()`: a later `model.train()` undoes it."""
    owners = frozen_owners(model, last_stage)
    for path in owners:
        node = _submodule(model, path)
        if isinstance(node, nnx.Module):
            node.eval()
    return owners


def _path_parts(path: Sequence[Any]) -> tuple[str, ...]:
    """A pytree leaf's key path as strings: (DictKey("blocks"), DictKey(3)) -> ("blocks", "3")."""
    parts = []
    for entry in path:
        key = getattr(entry, "key", getattr(entry, "idx", getattr(entry, "name", entry)))
        parts.append(str(key))
    return tuple(parts)


def _is_frozen(parts: tuple[str, ...], owners: Sequence[tuple[str, ...]]) -> bool:
    return any(parts[: len(owner)] == owner for owner in owners)


def trainable_mask(params: Any, owners: Sequence[str]) -> Any:
    """A pytree like `params` of bools: False for the leaves under one of `owners` (dotted
    attribute paths), True for the others."""
    split = [tuple(owner.split(".")) for owner in owners]
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not _is_frozen(_path_parts(path), split), params
    )


def optimizer_labels(mask: Any) -> Any:
    """`optax.multi_transform` labels of a `trainable_mask`: TRAINABLE or FROZEN per leaf."""
    return jax.tree.map(lambda keep: TRAINABLE if keep else FROZEN, mask)


def stop_frozen(params: Any, mask: Any) -> Any:
    """`params` with `jax.lax.stop_gradient` on the frozen leaves: no gradient flows into them,
    and none through the stages they compute unless a trainable weight sits before them."""
    return jax.tree.map(lambda p, keep: p if keep else jax.lax.stop_gradient(p), params, mask)
