"""A small in-memory service around a real Orderer, for unit tests of the command layer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evb.batch import Fragment, build_batch
from evb.orderer import Orderer


@dataclass(frozen=True)
class Conn:
    name: str
    host: str = "127.0.0.1"
    description: str = "test source"
    state: str = "active"
    idle_s: float = 0.25


@dataclass
class FakeService:
    """Drives a real Orderer with a manual clock; notifications go to listeners."""

    orderer: Orderer = field(default_factory=Orderer)
    now: float = 1000.0
    conns: list[Conn] = field(default_factory=list)
    listeners: list[Callable[[object], None]] = field(default_factory=list)
    emitted: list[Fragment] = field(default_factory=list)

    def add_listener(self, fn: Callable[[object], None]) -> None:
        self.listeners.append(fn)

    def remove_listener(self, fn: Callable[[object], None]) -> None:
        self.listeners.remove(fn)

    def connections(self) -> list[Conn]:
        return list(self.conns)

    def _ship(self, out: Any) -> None:
        if out is None:
            return
        for b in out.batches:
            self.emitted.extend(b.fragments())
            for n in self.orderer.written(b.payload_bytes(), self.now):
                out.notifications.append(n)
        for n in out.notifications:
            for fn in list(self.listeners):
                fn(n)

    def apply(self, fn: Callable[[Orderer, float], Any]) -> Any:
        out = fn(self.orderer, self.now)
        self._ship(out)
        return out

    def send(self, *frags: Fragment, connection: str | None = None) -> None:
        self.orderer.submit(build_batch(frags, received=self.now), self.now, connection)
        self._ship(self.orderer.poll(self.now))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self._ship(self.orderer.poll(self.now))
