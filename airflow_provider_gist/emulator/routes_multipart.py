"""Handlers: multipart upload sessions (``/assets/multipart-uploads``). The chunk PUTs to the
presigned URLs are served by :mod:`.chunks`, outside the API pipeline."""

from __future__ import annotations

from .calls import Call, Reply
from .handlers import HandlerBase


class MultipartRoutes(HandlerBase):
    def create_multipart_upload(self, call: Call) -> Reply:
        return Reply(201, self.uploads.create(self._json_body(call), call.origin))

    def list_incomplete_uploads(self, call: Call) -> Reply:
        return self._paged(call, self.uploads.incomplete(), self.uploads.summary_json)

    def get_upload_status(self, call: Call) -> Reply:
        page, limit = self._page_params(call)
        return Reply(200, self.uploads.status(call.params["upload_id"], page, limit))

    def report_chunks(self, call: Call) -> Reply:
        ready_in = self.state.timing.asset_ready_seconds
        body = self.uploads.report(call.params["upload_id"], self._json_body(call), ready_in)
        return Reply(200, body)

    def get_presigned_urls(self, call: Call) -> Reply:
        return Reply(
            200, self.uploads.presigned_urls(call.params["upload_id"], self._json_body(call), call.origin)
        )
