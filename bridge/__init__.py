"""The desktop bridge: ``python -m bridge --url URL --token TOKEN`` (or the
``taskbell-bridge`` console script; ``python -m server.bridge`` is its old name and still
works), run by a person on their desktop.

It keeps one WebSocket to the server (``/ws``, resuming with ``since``), raises a desktop
notification for each new task (title, process; clicking opens the task's page) and
closes it when the task leaves the panel (completed, canceled, postponed, reassigned).
A completed step's notification waits ``--handoff-seconds`` (10) for the step that
``follows`` it, which then replaces it: one notification that changes, not two.
It reconnects with backoff through network loss and server restarts, and keeps its last
seq and the notifications it raised in a state file, so a restart of the bridge itself
neither repeats nor misses a notification.

- ``state``: the persisted state and the pure rules (feed message → desktop actions).
- ``desktop``: notifications: freedesktop Notifications over D-Bus (dbus-fast) on Linux,
  desktop-notifier (macOS, Windows) elsewhere.
- ``client``: the connection loop.

It is a client of the server, so it does not import ``server``: it reads the feed
messages as docs/protocol.md describes them and keeps its own copy of the one close code
it acts on (a refused token).
"""
