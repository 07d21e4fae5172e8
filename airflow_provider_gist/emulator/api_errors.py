"""The emulator's API errors and the three shapes most validation failures take."""

from __future__ import annotations


class ApiError(Exception):
    """An API error response. ``resource_not_exist`` becomes 404 only where the spec declares 404."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid(message: str) -> ApiError:
    return ApiError(400, "parameter_invalid", message)


def missing(name: str) -> ApiError:
    return ApiError(400, "parameter_not_provided", f"The {name} parameter is required but was not provided.")


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(400, "resource_not_exist", f"The {kind} {ident!r} does not exist.")
