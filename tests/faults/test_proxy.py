"""The fault proxy itself: it forwards, cuts, refuses, black-holes and delays."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.faults.proxy import FaultProxy


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            await close(writer)

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def roundtrip(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
    finally:
        await close(writer)


async def test_forwards_both_ways(echo_port: int) -> None:
    with FaultProxy(echo_port) as proxy:
        payload = bytes(range(256)) * 1000
        assert await roundtrip(proxy.port, payload) == payload
    assert proxy.stats.accepted == 1 and proxy.stats.bytes_up == len(payload)


async def test_cut_resets_open_connections_and_lets_new_ones_through(echo_port: int) -> None:
    with FaultProxy(echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"
            await asyncio.to_thread(proxy.cut)
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                writer.write(b"y")
                await writer.drain()
                await asyncio.wait_for(reader.readexactly(1), 5)
        finally:
            await close(writer)
        assert await roundtrip(proxy.port, b"again") == b"again"


async def test_refuse_closes_new_connections_until_restored(echo_port: int) -> None:
    with FaultProxy(echo_port) as proxy:
        await asyncio.to_thread(proxy.refuse)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await roundtrip(proxy.port, b"x")
        await asyncio.to_thread(proxy.restore)
        assert await roundtrip(proxy.port, b"x") == b"x"


async def test_blackhole_holds_bytes_and_restore_delivers_them(echo_port: int) -> None:
    with FaultProxy(echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            await asyncio.to_thread(proxy.blackhole)
            writer.write(b"held")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readexactly(4), 0.3)
            await asyncio.to_thread(proxy.restore)
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"
        finally:
            await close(writer)


async def test_delay_keeps_order(echo_port: int) -> None:
    with FaultProxy(echo_port) as proxy:
        await asyncio.to_thread(proxy.delay, 0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            for i in range(20):
                writer.write(b"%02d" % i)
                await writer.drain()
            got = await asyncio.wait_for(reader.readexactly(40), 5)
        finally:
            await close(writer)
    assert got == b"".join(b"%02d" % i for i in range(20))


async def test_freeze_silences_open_connections_only(echo_port: int) -> None:
    with FaultProxy(echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            writer.write(b"up")  # the link exists once this came back
            assert await asyncio.wait_for(reader.readexactly(2), 5) == b"up"
            await asyncio.to_thread(proxy.freeze)
            writer.write(b"old")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readexactly(3), 0.3)
            assert await roundtrip(proxy.port, b"new") == b"new"
        finally:
            await close(writer)
