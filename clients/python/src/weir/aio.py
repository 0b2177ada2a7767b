"""``weir.AsyncClient``: an asyncio client for weir's binary protocol.

A small pool of TCP connections, each pipelined: a check writes one frame
and waits for the reply with its request id, while other checks share the
connection. It never blocks the event loop. Every call has a deadline;
when weir is unreachable or slow, the call answers by ``failure_mode``
(``open``, ``closed`` or ``local``, as :class:`weir.Client` does) and says so
in ``Decision.source``. A call that times out starts the shared back-off of
:mod:`weir.fallback`: calls answer by the failure mode at once for 0.5 s,
growing to 5 s while weir stays silent, so a hung weir costs one timeout per
back-off instead of one per request. Broken connections are re-opened in the
background, 0.1 s doubling to at most 1 s apart, so decisions go through weir
again within about a second of its return.

Each connection speaks the newest protocol version both sides know (2, or 1
with a weir from before version 2: then there are no leases, reservations,
shadow results or problem details, and :meth:`AsyncClient.release` and
:meth:`AsyncClient.settle` answer ``None``).

Create it in a FastAPI ``lifespan`` (or any running loop) and close it there::

    async with AsyncClient("127.0.0.1", 7701) as weir:
        decision = await weir.check(Check.for_policy("per_user", {"user": "alice"}))
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import ssl as ssl_module
from collections.abc import Callable, Sequence

from weir import protocol
from weir.checks import Check
from weir.decision import BatchDecision, Decision, Settled
from weir.errors import WeirRequestError
from weir.fallback import FailureMode, Fallback

log = logging.getLogger("weir")


class _Connection:
    """One pipelined connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self.ids = itertools.count(1)
        self.alive = True
        #: The protocol version agreed in the hello.
        self.version = protocol.MIN_VERSION
        self.task = asyncio.create_task(self._read_replies())

    async def _read_replies(self) -> None:
        failure: Exception = ConnectionError("weir connection closed")
        try:
            while True:
                prefix = await self.reader.readexactly(4)
                length = int.from_bytes(prefix, "little")
                if length > protocol.MAX_FRAME:
                    raise protocol.ProtocolError("reply frame too large")
                op, request_id, body = protocol.parse_frame(await self.reader.readexactly(length))
                if request_id == 0 and op == protocol.Op.ERROR:
                    # About the connection, not a request (such as a TLS
                    # port reached without TLS): every waiter gets it.
                    error = protocol.decode_error(body)
                    raise protocol.ProtocolError(
                        f"weir refused the connection: {error['code']}: {error['message']}"
                    )
                waiter = self.pending.pop(request_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result((op, body))
        except protocol.ProtocolError as error:
            log.debug("weir connection closed: %r", error)
            failure = error
        except (OSError, asyncio.IncompleteReadError) as error:
            log.debug("weir connection closed: %r", error)
        finally:
            self._fail_pending(failure)

    def _fail_pending(self, error: Exception) -> None:
        self.alive = False
        for waiter in self.pending.values():
            if not waiter.done():
                waiter.set_exception(error)
        self.pending.clear()
        self.writer.close()

    async def request(self, op: int, body: bytes) -> tuple[int, bytes]:
        request_id = next(self.ids)
        waiter: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = waiter
        self.writer.write(protocol.frame(op, request_id, body, self.version))
        if self.writer.transport.get_write_buffer_size() > 64 * 1024:
            await self.writer.drain()
        try:
            return await waiter
        finally:
            self.pending.pop(request_id, None)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


#: Longest pause between attempts to reopen a broken connection, seconds.
RECONNECT_MAX = 1.0


class AsyncClient:
    """A weir binary-protocol client for asyncio.

    Args:
        host, port: weir's binary address (``--bin-addr``).
        pool_size: connections kept open.
        timeout: deadline of each call, in seconds.
        connect_timeout: deadline for opening a connection.
        failure_mode, local_rate, local_share, closed_retry_after: as for
            :class:`weir.Client`.
        ssl: a client context for a weir serving TLS (``--tls-cert``), such
            as ``ssl.create_default_context(cafile="ca.pem")``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 7701,
        *,
        pool_size: int = 2,
        timeout: float = 0.05,
        connect_timeout: float = 1.0,
        failure_mode: FailureMode = "open",
        local_rate: str = "60/minute",
        local_share: float = 1.0,
        closed_retry_after: float = 1.0,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl
        self.timeout = timeout
        self.failure_mode: FailureMode = failure_mode
        self._connect_timeout = connect_timeout
        self._pool: list[_Connection | None] = [None] * max(1, pool_size)
        self._next = itertools.cycle(range(len(self._pool)))
        self._reconnecting: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._fallback = Fallback(failure_mode, local_rate, local_share, closed_retry_after)
        self._closed = False

    async def __aenter__(self) -> AsyncClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Opens the pool. weir being down is not an error: calls answer by
        the failure mode and connections are retried in the background."""
        for slot in range(len(self._pool)):
            try:
                self._pool[slot] = await self._connect()
            except (OSError, TimeoutError, protocol.ProtocolError) as error:
                log.warning(
                    "weir unreachable at %s:%s (%r); retrying in the background", self.host, self.port, error
                )
                self._reconnect(slot)

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self._ssl), self._connect_timeout
        )
        connection = _Connection(reader, writer)
        # The hello goes in a version 1 frame, which every weir reads; its
        # body names the newest version this client speaks.
        hello = protocol.encode_hello({"version": protocol.VERSION, "client": "weir-python"})
        op, body = await asyncio.wait_for(connection.request(protocol.Op.HELLO, hello), self._connect_timeout)
        agreed = protocol.decode_hello_reply(body)["version"] if op == protocol.Op.HELLO_REPLY else None
        if agreed is None or not protocol.MIN_VERSION <= agreed <= protocol.VERSION:
            await connection.close()
            raise protocol.ProtocolError(f"weir did not agree to a protocol version up to {protocol.VERSION}")
        connection.version = agreed
        return connection

    def _reconnect(self, slot: int) -> None:
        if self._closed or slot in self._reconnecting:
            return
        self._reconnecting.add(slot)
        task = asyncio.get_running_loop().create_task(self._reconnect_loop(slot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconnect_loop(self, slot: int) -> None:
        # Short on purpose: once weir is back, a connection is open again
        # within a second (0.1, 0.2, 0.4, 0.8, then every second).
        delay = 0.1
        try:
            while not self._closed:
                await asyncio.sleep(delay)
                try:
                    self._pool[slot] = await self._connect()
                    log.info("weir reachable again at %s:%s", self.host, self.port)
                    return
                except (OSError, TimeoutError, protocol.ProtocolError):
                    delay = min(RECONNECT_MAX, delay * 2)
        finally:
            self._reconnecting.discard(slot)

    def _connection(self) -> _Connection | None:
        for _ in range(len(self._pool)):
            slot = next(self._next)
            connection = self._pool[slot]
            if connection is not None and connection.alive:
                return connection
            self._reconnect(slot)
        return None

    async def _call(
        self, op: int, body: Callable[[int], bytes], since: int = protocol.MIN_VERSION
    ) -> tuple[int, bytes, int] | None:
        """The reply (opcode, body, and the version of both), or ``None``
        when weir is unreachable, too slow, or backed off from (see
        :mod:`weir.fallback`), or speaks no version ``since`` or later.
        ``body`` writes the request in the connection's version."""
        if self._fallback.backing_off():
            return None
        connection = self._connection()
        if connection is None:
            return None
        if connection.version < since:
            log.debug("weir: %s needs protocol version %s; weir speaks %s", op, since, connection.version)
            return None
        try:
            # asyncio.timeout, unlike wait_for, makes no task per call.
            async with asyncio.timeout(self.timeout):
                reply = await connection.request(op, body(connection.version))
        except TimeoutError:
            self._fallback.failed("no answer within the timeout")
            return None
        except (ConnectionError, protocol.ProtocolError) as error:
            self._fallback.failed(type(error).__name__)
            return None
        self._fallback.answered()
        return (*reply, connection.version)

    def _raise_if_error(self, op: int, body: bytes) -> None:
        if op == protocol.Op.ERROR:
            error = protocol.decode_error(body)
            raise WeirRequestError(400, error["code"], error["message"])

    async def _decision(self, op: int, check: Check, *, problem: bool = False) -> Decision:
        wire = protocol.check_to_wire(check, problem=problem)
        reply = await self._call(op, lambda version: protocol.encode_check(wire, version))
        if reply is None:
            return self._fallback.answer_one(check)
        op, body, version = reply
        self._raise_if_error(op, body)
        return protocol.decision_from_wire(protocol.decode_decision(body, version))

    async def check(self, check: Check, *, problem: bool = False) -> Decision:
        """Checks one request and counts its cost if every limit has room.
        With ``problem``, a denial carries weir's RFC 9457 problem details
        (:attr:`Decision.problem`).

        Raises:
            WeirRequestError: weir found the check invalid.
        """
        return await self._decision(protocol.Op.CHECK, check, problem=problem)

    async def reserve(self, check: Check) -> Decision:
        """Checks a request whose cost is known only afterwards, as
        :meth:`weir.Client.reserve` does: when allowed, the decision's
        ``reservation`` settles the actual cost (:meth:`settle`)."""
        return await self._decision(protocol.Op.CHECK, dataclasses.replace(check, reserve=True))

    async def peek(self, check: Check) -> Decision:
        """The key's state, counting nothing."""
        return await self._decision(protocol.Op.PEEK, check)

    async def refund(self, check: Check) -> Decision | None:
        """Gives ``check.cost`` units back; ``None`` when weir is unreachable."""
        wire = protocol.check_to_wire(check)
        reply = await self._call(protocol.Op.REFUND, lambda version: protocol.encode_check(wire, version))
        if reply is None:
            return None
        op, body, version = reply
        self._raise_if_error(op, body)
        return protocol.decision_from_wire(protocol.decode_decision(body, version))

    async def check_batch(self, checks: Sequence[Check], *, problem: bool = False) -> BatchDecision:
        """Checks several requests atomically: all counted, or none. With
        ``problem``, a denied batch carries weir's problem details."""
        wires = [protocol.check_to_wire(c, problem=problem) for c in checks]
        reply = await self._call(
            protocol.Op.CHECK_MANY, lambda version: protocol.encode_checks(wires, version)
        )
        if reply is None:
            return self._fallback.answer_batch(checks)
        op, body, version = reply
        self._raise_if_error(op, body)
        return protocol.batch_from_wire(protocol.decode_batch(body, version))

    async def release(self, lease: str) -> bool:
        """Frees the slot a check's ``lease`` holds in its concurrency
        limits, once its request is done. False when weir cannot be reached
        or no longer knows the lease (released already, lapsed): either way
        the slot is free or frees itself when the lease lapses."""
        body = protocol.encode_release({"lease": lease})
        reply = await self._call(protocol.Op.RELEASE, lambda _: body, since=2)
        if reply is None:
            return False
        if reply[0] == protocol.Op.ERROR:
            log.debug("weir: lease not released: %s", protocol.decode_error(reply[1])["code"])
            return False
        return reply[0] == protocol.Op.RELEASE_REPLY

    async def settle(self, reservation: str, cost: int) -> Settled | None:
        """Charges a reserved request's actual ``cost``, as
        :meth:`weir.Client.settle` does; ``None`` when weir cannot be
        reached.

        Raises:
            WeirRequestError: an unknown, settled or lapsed reservation.
        """
        body = protocol.encode_settle({"reservation": reservation, "cost": cost})
        reply = await self._call(protocol.Op.SETTLE, lambda _: body, since=2)
        if reply is None:
            return None
        self._raise_if_error(reply[0], reply[1])
        settled = protocol.decode_settled(reply[1])
        return Settled.from_json(settled, protocol.decision_from_wire(settled["decision"]))

    async def ping(self) -> bool:
        """True if weir answered within the deadline."""
        reply = await self._call(protocol.Op.PING, lambda _: b"")
        return reply is not None and reply[0] == protocol.Op.PONG

    async def close(self) -> None:
        """Closes every connection and stops reconnecting."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for slot, connection in enumerate(self._pool):
            if connection is not None:
                await connection.close()
            self._pool[slot] = None
