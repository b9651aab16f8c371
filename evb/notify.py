"""Notifications from the ordering core: values, not callbacks (the edge dispatches them)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BarrierComplete", "BarrierIncomplete", "FlowChange", "LateFragment", "Notification"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LateFragment:
    """A data fragment emitted behind data already emitted in an earlier pass."""

    source_id: int
    timestamp: int
    newest: int  # highest timestamp received so far
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class BarrierComplete:
    """Every live queue contributed a barrier; ``barriers`` are (source id, type), by source id."""

    barriers: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BarrierIncomplete:
    """A barrier left without every live source: ``missing`` lists the absent source ids."""

    barriers: tuple[tuple[int, int], ...]
    missing: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowChange:
    """XON (``xon=True``) or XOFF; ``connection`` None is global, else that connection only."""

    xon: bool
    connection: str | None = None


Notification = LateFragment | BarrierComplete | BarrierIncomplete | FlowChange
