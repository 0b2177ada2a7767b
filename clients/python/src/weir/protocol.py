"""weir's binary protocol, written from docs/protocol.md with ``struct``.

Bodies are built from and read into plain dicts shaped like the wire types
(the same shapes docs/protocol-vectors.json uses), so the encoder and decoder
can be checked against the shared test vectors; :func:`check_to_wire` and
:func:`decision_from_wire` translate to and from this package's types.

Version 2 appends fields to version 1's bodies (a check's ``reserve`` and
``problem`` flags; a decision's shadow limits, quota reset, lease,
reservation and problem details) and adds Release and Settle. Functions
that read or write a body take the ``version`` it is in.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from weir.checks import Check
from weir.decision import BatchDecision, Decision
from weir.errors import ProtocolError

MAGIC = b"WR"
#: The newest version this client speaks; :data:`MIN_VERSION` the oldest.
VERSION = 2
MIN_VERSION = 1
MAX_FRAME = 64 * 1024
#: length, magic, version, opcode, request id
HEADER = struct.Struct("<I2sBBQ")
HEADER_LEN = 12

# What inline limits may carry over the binary protocol.
ALGORITHMS = {"token_bucket": 0, "sliding_window": 1}
# What replies report: also a deny tier and a calendar quota (docs/protocol.md).
ALGORITHM_NAMES = {0: "token_bucket", 1: "sliding_window", 2: "deny", 3: "quota", 4: "concurrency"}


class Op(IntEnum):
    HELLO = 0x01
    CHECK = 0x02
    CHECK_MANY = 0x03
    PEEK = 0x04
    REFUND = 0x05
    PING = 0x06
    RELEASE = 0x07
    SETTLE = 0x08
    HELLO_REPLY = 0x81
    DECISION = 0x82
    BATCH = 0x83
    PEEK_REPLY = 0x84
    REFUND_REPLY = 0x85
    PONG = 0x86
    RELEASE_REPLY = 0x87
    SETTLE_REPLY = 0x88
    ERROR = 0xFF


def frame(op: int, request_id: int, body: bytes = b"", version: int = VERSION) -> bytes:
    """A whole frame, length prefix included."""
    return HEADER.pack(HEADER_LEN + len(body), MAGIC, version, op, request_id) + body


def parse_frame(data: bytes) -> tuple[int, int, bytes]:
    """``(opcode, request_id, body)`` from the bytes after the length prefix.
    A reply comes in the version of its request."""
    if len(data) < HEADER_LEN:
        raise ProtocolError("frame shorter than its header")
    magic, version, op, request_id = struct.unpack_from("<2sBBQ", data)
    if magic != MAGIC or not MIN_VERSION <= version <= VERSION:
        raise ProtocolError(f"bad magic {magic!r} or version {version}")
    return op, request_id, data[HEADER_LEN:]


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()

    def u8(self, value: int) -> None:
        self.out += struct.pack("<B", value)

    def u32(self, value: int) -> None:
        self.out += struct.pack("<I", value)

    def u64(self, value: int) -> None:
        self.out += struct.pack("<Q", value)

    def string(self, value: str) -> None:
        raw = value.encode()
        self.u64(len(raw))
        self.out += raw

    def option(self, value: Any, write: Callable[[Any], None]) -> None:
        if value is None:
            self.u8(0)
        else:
            self.u8(1)
            write(value)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ProtocolError("body ends early")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def u8(self) -> int:
        return self._take("<B")

    def boolean(self) -> bool:
        return self.u8() == 1

    def u32(self) -> int:
        return self._take("<I")

    def u64(self) -> int:
        return self._take("<Q")

    def string(self) -> str:
        size = self.u64()
        if self.pos + size > len(self.data):
            raise ProtocolError("string runs past the body")
        raw = self.data[self.pos : self.pos + size]
        self.pos += size
        return raw.decode()

    def option(self, read: Callable[[], Any]) -> Any:
        return read() if self.u8() == 1 else None

    def vec(self, read: Callable[[], Any]) -> list[Any]:
        return [read() for _ in range(self.u64())]

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError(f"{len(self.data) - self.pos} bytes after the end of the body")


# Requests, from wire-shaped dicts.


def encode_hello(body: dict[str, Any]) -> bytes:
    writer = _Writer()
    writer.u8(body["version"])
    writer.string(body["client"])
    return bytes(writer.out)


def _write_check(writer: _Writer, check: dict[str, Any], version: int) -> None:
    target = check["target"]
    if "Policy" in target:
        writer.u32(0)
        writer.string(target["Policy"])
    else:
        writer.u32(1)
        writer.string(target["Inline"]["namespace"])
        limits = target["Inline"]["limits"]
        writer.u64(len(limits))
        for limit in limits:
            writer.u8(limit["algorithm"])
            writer.string(limit["rate"])
            writer.option(limit["burst"], writer.u32)
            writer.option(limit["name"], writer.string)
    for attr in ("user", "ip", "token", "endpoint"):
        writer.option(check["key"].get(attr), writer.string)
    writer.option(check["tier"], writer.string)
    writer.option(check["cost"], writer.u32)
    if version >= 2:
        writer.u8(bool(check.get("reserve")))
        writer.u8(bool(check.get("problem")))


def encode_check(check: dict[str, Any], version: int = 1) -> bytes:
    writer = _Writer()
    _write_check(writer, check, version)
    return bytes(writer.out)


def encode_checks(checks: list[dict[str, Any]], version: int = 1) -> bytes:
    writer = _Writer()
    writer.u64(len(checks))
    for check in checks:
        _write_check(writer, check, version)
    return bytes(writer.out)


def encode_release(body: dict[str, Any]) -> bytes:
    writer = _Writer()
    writer.string(body["lease"])
    return bytes(writer.out)


def encode_settle(body: dict[str, Any]) -> bytes:
    writer = _Writer()
    writer.string(body["reservation"])
    writer.u32(body["cost"])
    return bytes(writer.out)


# Replies, to wire-shaped dicts.


def _read_report(reader: _Reader, version: int) -> dict[str, Any]:
    report = {
        "name": reader.string(),
        "algorithm": reader.u8(),
        "limit": reader.u64(),
        "window_ms": reader.u64(),
        "allowed": reader.boolean(),
        "remaining": reader.u64(),
        "reset_after_ms": reader.u64(),
        "retry_after_ms": reader.option(reader.u64),
    }
    if version >= 2:
        report["shadow"] = reader.boolean()
        report["reset_at_ms"] = reader.option(reader.u64)
    return report


def _read_decision(reader: _Reader, version: int) -> dict[str, Any]:
    decision = {
        "allowed": reader.boolean(),
        "policy": reader.option(reader.string),
        "namespace": reader.option(reader.string),
        "tier": reader.option(reader.string),
        "cost": reader.u32(),
        "limit": reader.option(reader.u64),
        "remaining": reader.option(reader.u64),
        "reset_after_ms": reader.u64(),
        "retry_after_ms": reader.option(reader.u64),
        "limits": reader.vec(lambda: _read_report(reader, version)),
    }
    if version >= 2:
        decision["reset_at_ms"] = reader.option(reader.u64)
        decision["shadow_denied"] = reader.vec(reader.string)
        decision["lease"] = reader.option(reader.string)
        decision["reservation"] = reader.option(reader.string)
        decision["problem"] = reader.option(reader.string)
    return decision


def _decode(body: bytes, read: Callable[[_Reader], Any]) -> Any:
    reader = _Reader(body)
    value = read(reader)
    reader.end()
    return value


def decode_hello_reply(body: bytes) -> dict[str, Any]:
    return _decode(
        body,
        lambda r: {"version": r.u8(), "server": r.string(), "max_frame": r.u32(), "max_in_flight": r.u32()},
    )


def decode_decision(body: bytes, version: int = 1) -> dict[str, Any]:
    return _decode(body, lambda r: _read_decision(r, version))


def _read_batch(reader: _Reader, version: int) -> dict[str, Any]:
    batch = {"allowed": reader.boolean(), "decisions": reader.vec(lambda: _read_decision(reader, version))}
    if version >= 2:
        batch["problem"] = reader.option(reader.string)
    return batch


def decode_batch(body: bytes, version: int = 1) -> dict[str, Any]:
    return _decode(body, lambda r: _read_batch(r, version))


def decode_settled(body: bytes) -> dict[str, Any]:
    return _decode(
        body,
        lambda r: {
            "reserved": r.u32(),
            "cost": r.u32(),
            "charged": r.u32(),
            "refunded": r.u32(),
            "decision": _read_decision(r, 2),
        },
    )


def decode_error(body: bytes) -> dict[str, Any]:
    return _decode(body, lambda r: {"code": r.string(), "message": r.string()})


# Translation to and from this package's types.


def check_to_wire(check: Check, *, problem: bool = False) -> dict[str, Any]:
    """The wire shape of ``check``; its ``reserve`` and ``problem`` are
    version 2's flags."""
    if check.policy is not None:
        target: dict[str, Any] = {"Policy": check.policy}
    else:
        limits = [
            {
                "algorithm": ALGORITHMS.get(limit.algorithm, 255),
                "rate": limit.rate,
                "burst": limit.burst,
                "name": limit.name,
            }
            for limit in check.limits
        ]
        target = {"Inline": {"namespace": check.namespace, "limits": limits}}
    return {
        "target": target,
        "key": {attr: check.key.get(attr) for attr in ("user", "ip", "token", "endpoint")},
        "tier": check.tier,
        "cost": check.cost,
        "reserve": check.reserve,
        "problem": problem,
    }


def _rfc3339(millis: int | None) -> str | None:
    """Unix ms as weir's HTTP API writes an instant: whole seconds, UTC."""
    if millis is None:
        return None
    return datetime.fromtimestamp(millis // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _report_from_wire(report: dict[str, Any]) -> dict[str, Any]:
    return {
        **report,
        "algorithm": ALGORITHM_NAMES.get(report["algorithm"], "unknown"),
        "mode": "shadow" if report.get("shadow") else "enforce",
        "reset_at": _rfc3339(report.get("reset_at_ms")),
    }


def decision_from_wire(wire: dict[str, Any]) -> Decision:
    """The same fields as the HTTP API's JSON, algorithms as codes; a
    version 2 denial's problem details as :attr:`Decision.problem`."""
    problem = wire.get("problem")
    return Decision.from_json(
        {
            **wire,
            "limits": [_report_from_wire(report) for report in wire["limits"]],
            "reset_at": _rfc3339(wire.get("reset_at_ms")),
            "shadow_denied": wire.get("shadow_denied", ()),
        },
        problem=json.loads(problem) if problem else None,
    )


def batch_from_wire(wire: dict[str, Any]) -> BatchDecision:
    problem = wire.get("problem")
    return BatchDecision(
        allowed=wire["allowed"],
        decisions=tuple(decision_from_wire(d) for d in wire["decisions"]),
        problem=json.loads(problem) if problem else None,
    )
