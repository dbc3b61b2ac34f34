"""Owners hash into a fixed number of partitions; each partition is one channel.

Publisher and subscriber must agree on everything here, so it is all constants and pure
functions: ``partition_of`` (crc32 of the owner key, stable across processes and
versions, unlike Python's ``hash``), and per partition a channel name whose hash tag
(the part in braces, which alone decides a Redis Cluster key slot) is chosen so that
partition ``p`` lands in slot range ``[p * 64, (p + 1) * 64)``: the partitions spread
evenly over the 16,384 slots, and so over the masters of any cluster.
"""

from __future__ import annotations

import zlib
from binascii import crc_hqx

PARTITIONS = 256
SLOTS = 16384
CHANNEL_PREFIX = "taskbell:feed:"


def partition_of(owner: str) -> int:
    return zlib.crc32(owner.encode()) % PARTITIONS


def key_slot(key: str) -> int:
    """Redis Cluster's slot of ``key`` (CRC16/XMODEM of the hash tag, if any)."""
    raw = key.encode()
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc_hqx(raw, 0) % SLOTS


def _tag_for(p: int) -> str:
    width = SLOTS // PARTITIONS
    low = p * width
    n = 0
    while True:
        tag = f"p{p:03d}.{n}"
        if low <= key_slot(tag) < low + width:
            return tag
        n += 1


TAGS: tuple[str, ...] = tuple(_tag_for(p) for p in range(PARTITIONS))
CHANNELS: tuple[str, ...] = tuple(f"{CHANNEL_PREFIX}{{{tag}}}" for tag in TAGS)
CHANNEL_INDEX: dict[bytes, int] = {ch.encode(): p for p, ch in enumerate(CHANNELS)}
SLOT_OF: tuple[int, ...] = tuple(key_slot(ch) for ch in CHANNELS)


def channel_of(owner: str) -> str:
    return CHANNELS[partition_of(owner)]
