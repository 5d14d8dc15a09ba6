"""This process's place in a (possibly single-process) ``torchrun`` job: one context for every stage.

:func:`init_distributed` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), picks the device and
joins the process group when there is more than one process; the returned :class:`DistContext` offers ``barrier()``
and ``close()`` (which leaves the group only when this call joined it). A plain ``python`` run is rank 0 of 1 and
never touches ``torch.distributed``.

Pre-training needs gradients averaged across ranks (nccl on GPUs, gloo on CPUs); the selection pipeline only needs
barriers, so it asks for ``backend="gloo"`` and a long ``timeout`` (rank 0 waits there for the slowest rank's work).

torch is imported only when needed (a GPU to look for, a process group to join, ``torch_device``), so a stage that
may never use torch (``optidel select`` with grid patches) does not pay for importing it.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optidel.runtime.errors import OptidelError

if TYPE_CHECKING:
    import torch

__all__ = ["DistContext", "DistributedError", "init_distributed"]

DEVICES = ("auto", "cpu", "cuda")


class DistributedError(OptidelError, ValueError):
    """A device or process-group setting that cannot work (unknown device, CUDA asked for but absent)."""

    exit_code = 2


@dataclass(frozen=True)
class DistContext:
    """This process's place in a torch.distributed job (rank 0 of 1 on ``device`` when not distributed).

    Attributes:
        rank: global rank.
        world: number of processes.
        local_rank: rank on this machine (picks the GPU).
        device: the device this rank computes on (``cpu``, ``cuda:N``); :attr:`torch_device` as a torch.device.
        initialized_here: :func:`init_distributed` joined the group, so :meth:`close` leaves it.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes shared files."""
        return self.rank == 0

    @property
    def torch_device(self) -> torch.device:
        """``device`` as a ``torch.device``."""
        import torch

        return torch.device(self.device)

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world > 1

    def barrier(self) -> None:
        """Wait for every rank (no-op for a single process)."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Leave the process group if :func:`init_distributed` joined it."""
        if not self.initialized_here:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def pick_device(device: str = "auto", local_rank: int = 0) -> str:
    """``auto`` = this rank's GPU when CUDA is available, else the CPU; ``cpu``, ``cuda`` or ``cuda:N`` to force.

    Raises:
        DistributedError: an unknown device name, or CUDA asked for but not available.
    """
    if device not in DEVICES and not device.startswith("cuda:"):
        raise DistributedError(f"device: {device!r} is not one of auto, cpu, cuda")
    if device == "cpu":
        return "cpu"
    import torch

    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise DistributedError("device: cuda was asked for but CUDA is not available")
    return f"cuda:{local_rank}" if use_cuda else "cpu"


def init_distributed(
    device: str = "auto", backend: str | None = None, timeout: datetime.timedelta | None = None
) -> DistContext:
    """Read torchrun's environment, pick the device, join the process group when ``WORLD_SIZE`` > 1.

    Args:
        device: see :func:`pick_device`; a CUDA device is made the current one.
        backend: process-group backend; None = nccl on a GPU, gloo on the CPU.
        timeout: how long a collective (a barrier) may wait; None = torch's default.

    Returns:
        the context; call its ``close()`` when done (a no-op unless this call joined the group).

    Raises:
        DistributedError: see :func:`pick_device`.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    use_cuda = dev.startswith("cuda")
    if use_cuda:
        import torch

        torch.cuda.set_device(torch.device(dev))
    if world <= 1:
        return DistContext(rank, world, local, dev)
    import torch
    import torch.distributed as dist

    initialized_here = False
    if not dist.is_initialized():
        backend = backend or ("nccl" if use_cuda else "gloo")
        kwargs = {} if timeout is None else {"timeout": timeout}
        device_id = torch.device(dev) if use_cuda and backend == "nccl" else None
        dist.init_process_group(backend=backend, device_id=device_id, **kwargs)
        initialized_here = True
    rank, world = dist.get_rank(), dist.get_world_size()
    return DistContext(rank, world, local, dev, initialized_here)
