"""The delivery side: what leaves the server besides its sockets. Webhooks to
producers' endpoints and Web Push to people's browsers, both through one durable outbox.

- ``side``: ``Delivery``, the wiring the app's lifespan builds, starts and stops.
- ``queue``: the outbox's vocabulary and SQL (channels, row states, retry policy,
  messages, ``enqueue``, ``Outbox``); ``worker``: ``OutboxWorker``, which attempts rows.
- ``tables``: the tables (``webhook_endpoint``, ``push_subscription``, ``outbox``).
- ``wire``: request and response bodies of webhooks and push subscriptions, the payload.
- ``egress``: outbound HTTP sessions that refuse private addresses.
- ``webhooks``: events, signing, endpoints, the write hook and the sender.
- ``webpush``: VAPID keys, subscriptions, the write hook and the sender.
"""
