"""GenerateGistOperator: one video's gist, as a small JSON-safe dict."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_gist.analysis import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE
from airflow_provider_gist.client.settings import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_gist.hooks.gist import GistHook


class GenerateGistOperator(BaseOperator):
    """Generate the gist (title, topics, hashtags) of one video and return it as a dict.

    Give exactly one of ``asset_id`` (current API; any Pegasus model) or ``video_id`` (a video
    indexed through the legacy flow; ``pegasus1.2`` only). The gist is asked of
    ``POST /analyze`` (``POST /gist`` was removed on 2026-02-15) and returned in the old
    endpoint's shape. Every input is validated before any HTTP call, and errors name the field.
    The returned dict holds exactly the requested keys among ``title``, ``topics`` and
    ``hashtags``, plus ``id``, ``video_ref``, ``model``, ``usage`` and timestamps.

    :param asset_id: asset to describe (templated).
    :param video_id: legacy indexed video to describe (templated).
    :param types: subset of ``title``, ``topic``, ``hashtag`` (templated; default all three).
    :param model_name: ``pegasus1.2`` or ``pegasus1.5``; default: the connection's default model.
    :param prompt: replaces the built-in prompt; the JSON schema still shapes the answer.
    :param temperature: 0..1, default 0.2.
    :param max_tokens: output budget; an answer cut off is retried once with twice as many.
    :param index_id: index the video belongs to, recorded with the gist (templated).
    :param source_updated_at: the video's ``updated_at``, recorded so a refresh can skip it later.
    :param twelvelabs_conn_id: connection id (templated).
    """

    template_fields: Sequence[str] = (
        "asset_id",
        "video_id",
        "types",
        "model_name",
        "prompt",
        "index_id",
        "source_updated_at",
        "twelvelabs_conn_id",
    )
    template_fields_renderers = {"types": "json", "prompt": "md"}
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        asset_id: str | None = None,
        video_id: str | None = None,
        types: Sequence[str] | str | None = None,
        model_name: str | None = None,
        prompt: str | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        index_id: str | None = None,
        source_updated_at: str | None = None,
        twelvelabs_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.asset_id = asset_id
        self.video_id = video_id
        self.types = types
        self.model_name = model_name
        self.prompt = prompt
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.index_id = index_id
        self.source_updated_at = source_updated_at
        self.twelvelabs_conn_id = twelvelabs_conn_id

    @cached_property
    def hook(self) -> GistHook:
        from airflow_provider_gist.hooks.gist import GistHook

        return GistHook(twelvelabs_conn_id=self.twelvelabs_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        # generate_gist validates every input (naming the field) before its first HTTP call.
        try:
            gist = self.hook.generate_gist(
                asset_id=self.asset_id or None,
                video_id=self.video_id or None,
                types=self.types,
                model_name=self.model_name,
                prompt=self.prompt,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                index_id=self.index_id or None,
                source_updated_at=self.source_updated_at or None,
            )
        finally:
            self.hook.close()
        self.log.info("Gist for %s", gist.describe())
        return gist.to_dict()

    def on_kill(self) -> None:
        self.hook.close()
