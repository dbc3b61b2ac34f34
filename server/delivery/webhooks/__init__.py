"""Webhooks: producers register endpoints; every task change is delivered to each
endpoint that wants it, signed per Standard Webhooks, at least once, from the outbox.

- ``events``: which webhook event a change is, and its payload (pure).
- ``signing``: secrets and the ``webhook-signature`` header (pure).
- ``endpoints``: the endpoints and their delivery logs, in SQL.
- ``hook``: the write hook that queues deliveries inside the change's transaction.
- ``sender``: the ``ChannelSender`` that makes one attempt (a signed POST).
"""
