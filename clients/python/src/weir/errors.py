"""Every error this package raises, in one place."""

from __future__ import annotations


class WeirError(Exception):
    """Base of the errors this package raises."""


class WeirRequestError(WeirError):
    """weir refused a check as invalid (unknown policy, bad key, bad limits).

    A programming or configuration error, so it is raised rather than
    covered by the failure mode.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ProtocolError(WeirError):
    """Bytes that do not follow the binary protocol, or a connection weir
    refused (such as a TLS port reached without TLS)."""
