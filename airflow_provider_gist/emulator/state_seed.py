"""Bulk seeding for benchmarks: many ready videos at once, with made-up but stable filenames."""

from __future__ import annotations

from typing import Any

from .resources import Index, IndexedAsset
from .state_videos import VideoStore
from .timeline import Schedule


class SeedStore(VideoStore):
    def seed_index(
        self,
        index_name: str,
        count: int,
        models: list[dict[str, Any]],
        filenames: list[str] | None,
        user_metadata: dict[str, Any] | None,
        *,
        legacy: bool = False,
    ) -> tuple[Index, list[IndexedAsset]]:
        """Ready videos, instantly. They are indexed as the API would today (Marengo only), except
        in an index with only Pegasus 1.2 or with ``legacy``: then with every model of the index, as
        videos indexed before the 2026 rule were (the only way to get such videos now)."""
        index = next((i for i in self.indexes.values() if i.name == index_name), None)
        if index is None:
            index = self.create_index({"index_name": index_name, "models": models})
        video_models = (
            [m["model_name"] for m in index.models]
            if legacy or not index.indexing_models
            else index.indexing_models
        )
        names = list(filenames or [])
        while len(names) < count:
            names.append(_seed_filename(len(names)))
        videos = []
        for name in names[:count]:
            asset = self.create_asset(
                method="url",
                source=f"https://media.example.invalid/{name}",
                filename=name,
                size=None,
                user_metadata=dict(user_metadata) if user_metadata else None,
                ready_in=0.0,
            )
            now = self.now()
            final = "failed" if asset.error else "ready"
            videos.append(
                self._add_video(
                    index,
                    asset,
                    dict(user_metadata or {}),
                    False,
                    task_id=None,
                    schedule=Schedule([(now, final)]),
                    models=video_models,
                )
            )
        return index, videos


_SEED_WORDS = (
    ("sunrise", "harbour", "mountain", "city", "forest", "desert", "river", "winter", "market", "island"),
    (
        "fishing",
        "cycling",
        "cooking",
        "hiking",
        "sailing",
        "dancing",
        "painting",
        "surfing",
        "baking",
        "climbing",
    ),
    ("tour", "lesson", "diary", "review", "festival", "race", "workshop", "journey", "highlights", "morning"),
)


def _seed_filename(i: int) -> str:
    a, b, c = _SEED_WORDS
    return f"{a[i % 10]}_{b[i // 10 % 10]}_{c[i // 100 % 10]}_{i:05d}.mp4"
