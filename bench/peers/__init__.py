"""Reference peers run in the same harness as Taskbell (``python -m bench.run --peers``).

Both speak exactly the wire the load generator checks (``auth`` → ``snapshot``, then
``task.added`` / ``task.removed`` with seq and count; ``POST /api/v1/tasks``,
``/tasks/{id}/complete``, ``/tasks/batch``), verify the same HS256 tokens and producer
key, and keep each owner's feed in memory only: they store nothing.

- ``starlette_redis``: the shape most teams write first: Starlette routes, a Redis
  pattern subscription (``peer:feed:*``) fanned out to the sockets (in-process when
  ``REDIS_URL`` is unset).
- ``bare_asgi``: a framework-free ASGI app on uvicorn, in-process fan-out: the floor of
  the stack (uvicorn and its WebSocket implementation, nothing else).
"""
