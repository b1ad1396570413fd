"""Checks before the first epoch: a run that cannot make progress is refused, a run that would
measure the wrong thing is warned about."""

from __future__ import annotations

from torch.utils.data import DataLoader

from fcnseg.config import Config
from fcnseg.errors import FcnsegError
from fcnseg.training import distributed

SAME_SPLIT_WARNING = (
    "warning: the validation split is the training split ('{split}'): its scores measure "
    "memory, not generalisation, and best.pt is chosen by them. Set data.val_split to a split "
    "the model does not train on."
)


def check_progress_possible(
    train_loader: DataLoader, val_loader: DataLoader, config: Config
) -> None:
    """Refuse a run that cannot take a step or cannot be validated, before its first epoch: an
    empty loader would otherwise make each epoch an instant no-op, and a run of many epochs (or
    a time budget that never runs down) would loop for ever."""
    images, batch = len(train_loader.dataset), config.data.batch_size
    ranks = distributed.world_size()
    if images == 0:
        raise FcnsegError(
            f"the training split '{config.data.train_split}' has no images; fcnseg inspect "
            "DATA_DIR shows what it finds there."
        )
    if len(train_loader) == 0:
        raise FcnsegError(
            f"the training split has {images} image(s) for {ranks} process(es), fewer than one "
            f"batch of data.batch_size={batch} per process (an incomplete last batch is dropped, "
            f"so no step could be taken); set data.batch_size to at most {max(images // ranks, 1)}"
            " or add images."
        )
    if len(val_loader.dataset) == 0:
        raise FcnsegError(
            f"the validation split '{config.data.val_split}' has no images; every epoch ends "
            "with a validation. Give it images, or set data.val_split to a split that has some."
        )
