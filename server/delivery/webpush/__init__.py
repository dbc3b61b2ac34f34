"""Web Push for people with no tab open: subscriptions, payloads, and sending.

Encryption (RFC 8291, aes128gcm) and VAPID signing (RFC 8292) are pywebpush's and
py-vapid's. Every change of a person's own feed becomes one push to each of that
person's subscriptions in that tenant (role feeds push nothing), through the outbox (so
a push survives a restart):

- ``task.added`` shows a notification tagged with the task id (Urgency: high);
- ``task.updated`` replaces it if it is still shown;
- ``task.removed`` (completed, canceled, postponed, reassigned away) closes it.

A newer push for the same task supersedes one still queued, and carries a ``Topic``
header derived from the task id, so a push service holding an undelivered "added"
replaces it with the "removed". A subscription the push service answers with 404 or
410 is deleted.

- ``keys``: the server's VAPID identity (``python -m server vapid`` makes one).
- ``subscriptions``: the browsers' subscriptions, in SQL, and who may register one.
- ``hook``: the write hook that turns feed events into queued pushes (and the payload).
- ``sender``: the ``ChannelSender`` that makes one push.
"""
