"""Feed keys hash into a fixed number of partitions; each tenant has one channel per
partition.

Publisher and subscriber must agree on everything here, so it is all constants and pure
functions: ``partition_of`` (crc32 of the feed key, stable across processes and
versions, unlike Python's ``hash``), and per (tenant, partition) a channel name
``taskbell:feed:<tenant>:{<tag>}``. The tenant is in the name, so no event crosses
tenants even on Redis; the hash tag (the part in braces, which alone decides a Redis
Cluster key slot) is the partition's, chosen so that partition ``p`` lands in slot range
``[p * 64, (p + 1) * 64)``: the partitions spread evenly over the 16,384 slots, and so
over the masters of any cluster, whatever the tenant.
"""

from __future__ import annotations

import functools
import zlib
from binascii import crc_hqx

from server.feeds import split_key

PARTITIONS = 256
SLOTS = 16384
CHANNEL_PREFIX = "taskbell:feed:"

Channel = tuple[str, int]  # (tenant, partition)


def partition_of(key: str) -> int:
    """The partition of a feed key (``<tenant>/<feed>``)."""
    return zlib.crc32(key.encode()) % PARTITIONS


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
SLOT_OF: tuple[int, ...] = tuple(key_slot(f"{{{tag}}}") for tag in TAGS)


@functools.lru_cache(maxsize=4096)
def channel_name(tenant: str, partition: int) -> str:
    """The channel of ``tenant``'s partition (tenant names hold no braces)."""
    return f"{CHANNEL_PREFIX}{tenant}:{{{TAGS[partition]}}}"


def channel_of_key(key: str) -> Channel:
    """The (tenant, partition) a feed key is published on."""
    return split_key(key)[0], partition_of(key)


def channel_of(key: str) -> str:
    """The channel name a feed key is published on."""
    return channel_name(split_key(key)[0], partition_of(key))
