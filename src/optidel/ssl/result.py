"""What a pre-training call ends with: a :class:`PretrainResult`, or a :class:`PretrainError` that says what to do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from optidel.runtime.errors import OptidelError

__all__ = ["PretrainError", "PretrainResult"]


class PretrainError(OptidelError, ValueError):
    """A run that cannot start or continue: conflicting run folder, changed data, diverged loss, bad settings.

    The CLI exits with status 2: each case is fixed by changing the command (another ``--out``, ``--resume``, a
    lower ``lr``).
    """

    exit_code = 2


@dataclass(frozen=True)
class PretrainResult:
    """What a call of :func:`pretrain` did.

    Attributes:
        run_dir: the run folder.
        steps: optimisation steps of the run (all done).
        final_loss: loss of the last logged interval (None when unknown).
        first_loss: loss of the first logged interval.
        elapsed_s: training wall time over all sessions of the run.
        n_images: images in the pool (bad ones left out).
        already_done: the folder held this finished run; nothing was trained.
    """

    run_dir: Path
    steps: int
    final_loss: float | None
    first_loss: float | None
    elapsed_s: float
    n_images: int
    already_done: bool = False
