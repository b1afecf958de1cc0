"""Device-resident replay buffer of offline transitions.

All columns live on one torch device; a minibatch is drawn with ``torch.randint`` on that device
from a caller-owned ``torch.Generator``, so sampling never synchronises with the host and a run
is reproducible from its generator state. Columns can be added later (dynamics scores, value
advantages, provenance labels) and are sampled together with the transitions.

Batched members (several seeds trained as one model, see ``FilteredIQL(members=K)``) share the
transitions but may have their own per-transition columns (each seed's scores): a *member
column* is ``(K, N)``, and :meth:`TransitionBuffer.sample_members` draws ``(K, B, ...)`` batches,
member k's rows from its own generator - exactly the rows a single run with that generator draws.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

import numpy as np
import torch


class TransitionBuffer:
    """Named per-transition columns of equal length on one device."""

    def __init__(self, columns: Mapping[str, torch.Tensor]):
        if not columns:
            raise ValueError("TransitionBuffer needs at least one column")
        first = next(iter(columns.values()))
        self._device = first.device
        self._size = int(first.shape[0])
        if self._size == 0:
            raise ValueError("TransitionBuffer: empty columns")
        self._columns: dict[str, torch.Tensor] = {}
        self._member_columns: dict[str, torch.Tensor] = {}
        for name, tensor in columns.items():
            self.add_column(name, tensor)

    @classmethod
    def from_transitions(cls, transitions: Mapping[str, np.ndarray], device: str | torch.device = "cpu",
                         float_dtype: torch.dtype = torch.float32) -> "TransitionBuffer":
        """Copy a transitions dict (numpy) to ``device``; floats become ``float_dtype``.

        Non-float columns (integer provenance labels, bool flags) keep their type.
        """
        columns = {}
        for name, array in transitions.items():
            tensor = torch.as_tensor(np.ascontiguousarray(array))
            if tensor.is_floating_point():
                tensor = tensor.to(float_dtype)
            columns[name] = tensor.to(device)
        return cls(columns)

    # ---------------------------------------------------------------- columns
    def add_column(self, name: str, tensor: torch.Tensor) -> None:
        """Add (or replace) a per-transition column; it is moved to the buffer's device."""
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.as_tensor(tensor)
        if tensor.ndim == 0 or tensor.shape[0] != self._size:
            raise ValueError(f"column '{name}' has {tuple(tensor.shape)} rows, the buffer has {self._size}")
        self._columns[name] = tensor.to(self._device)

    def add_member_column(self, name: str, tensor: torch.Tensor) -> None:
        """Add a ``(members, N)`` column: one value per member and transition."""
        if tensor.ndim != 2 or tensor.shape[1] != self._size:
            raise ValueError(f"member column '{name}' must be (members, {self._size}), got {tuple(tensor.shape)}")
        if self._member_columns and tensor.shape[0] != self.members:
            raise ValueError(f"member column '{name}' has {tensor.shape[0]} members, the buffer has {self.members}")
        self._member_columns[name] = tensor.to(self._device)

    @property
    def members(self) -> int:
        """Members of the member columns (0 without any)."""
        return next(iter(self._member_columns.values())).shape[0] if self._member_columns else 0

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._columns[name]

    def __contains__(self, name: str) -> bool:
        return name in self._columns

    @property
    def columns(self) -> dict[str, torch.Tensor]:
        return dict(self._columns)

    def tensors(self) -> list[torch.Tensor]:
        """Every column and member column."""
        return [*self._columns.values(), *self._member_columns.values()]

    @property
    def device(self) -> torch.device:
        return self._device

    def __len__(self) -> int:
        return self._size

    def to(self, device: str | torch.device) -> "TransitionBuffer":
        """A buffer with every column on ``device`` (self if already there)."""
        device = torch.device(device)
        if device == self._device:
            return self
        return TransitionBuffer({name: tensor.to(device) for name, tensor in self._columns.items()})

    # ---------------------------------------------------------------- sampling
    def sample_indices(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Uniform row indices (with replacement), drawn on the buffer's device."""
        return torch.randint(self._size, (batch_size,), generator=generator, device=self._device)

    def gather(self, indices: torch.Tensor, names: Optional[Iterable[str]] = None) -> dict[str, torch.Tensor]:
        """Rows ``indices`` of the named columns (all columns by default)."""
        names = self._columns.keys() if names is None else names
        return {name: self._columns[name].index_select(0, indices) for name in names}

    def take(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows of every column: ``(B,)`` indices give one batch, ``(K, B)`` one batch per member."""
        return self.gather_members(indices) if indices.ndim == 2 else self.gather(indices)

    def sample(self, batch_size: int, generator: torch.Generator,
               names: Optional[Iterable[str]] = None) -> dict[str, torch.Tensor]:
        """A uniform minibatch of ``batch_size`` transitions (with replacement).

        ``generator`` must live on the buffer's device (``torch.Generator(device=buffer.device)``).
        """
        return self.gather(self.sample_indices(batch_size, generator), names)

    def sample_members(self, batch_size: int, generators: list[torch.Generator]) -> dict[str, torch.Tensor]:
        """One minibatch per member, ``(K, B, ...)``: row k drawn from ``generators[k]``.

        Every column is gathered; a member column gives member k its own values.
        """
        return self.gather_members(self.member_indices(batch_size, generators))

    def member_indices(self, batch_size: int, generators: list[torch.Generator]) -> torch.Tensor:
        """``(K, B)`` uniform row indices, row k drawn from ``generators[k]``."""
        if self._member_columns and len(generators) != self.members:
            raise ValueError(f"{len(generators)} generators for a buffer of {self.members} members")
        return torch.stack([self.sample_indices(batch_size, g) for g in generators])

    def gather_members(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows ``indices`` (``(K, B)``) of every column; a member column gives member k its own values."""
        flat = indices.reshape(-1)
        batch = {name: column.index_select(0, flat).view(*indices.shape, *column.shape[1:])
                 for name, column in self._columns.items()}
        batch.update({name: column.gather(1, indices) for name, column in self._member_columns.items()})
        return batch
