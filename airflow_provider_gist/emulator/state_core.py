"""What every part of ``State`` shares: the stored resources, the clock, ids and versions.

The resource families add their operations as subclasses (``state_indexes``, ``state_assets``,
``state_videos``, ``state_tasks``, ``state_analysis``, ``state_seed``); ``state.State`` joins them.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from .resources import Asset, Index, IndexedAsset, Task
from .timeline import Clock, Timing


@dataclass
class StateCore:
    timing: Timing = field(default_factory=Timing)
    clock: Clock = field(default_factory=Clock)
    seed: int = 0
    indexes: dict[str, Index] = field(default_factory=dict)
    assets: dict[str, Asset] = field(default_factory=dict)
    indexed: dict[str, IndexedAsset] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._seq = 0
        self._edits = 0

    def reset(self) -> None:
        self.indexes.clear()
        self.assets.clear()
        self.indexed.clear()
        self.tasks.clear()
        self._rng = random.Random(self.seed)
        self._seq = 0
        self._edits += 1

    def version(self) -> tuple[int, int, int]:
        """Changes whenever a video is added, removed or edited (for caching listings)."""
        return len(self.indexed), self._seq, self._edits

    # ids --------------------------------------------------------------------------------
    def new_id(self) -> str:
        return f"{self._rng.getrandbits(96):024x}"

    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def now(self) -> float:
        return self.clock.now()
