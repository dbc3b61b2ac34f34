"""The desktop bridge: ``python -m server.bridge --url URL --token TOKEN`` (or the
``taskbell-bridge`` console script), run by a person on their desktop.

It keeps one WebSocket to the server (``/ws``, resuming with ``since``), raises a desktop
notification for each new task (title, process; clicking opens the task's page) and
closes it when the task leaves the panel (completed, canceled, postponed, reassigned).
It reconnects with backoff through network loss and server restarts, and keeps its last
seq and the notifications it raised in a state file, so a restart of the bridge itself
neither repeats nor misses a notification.

- ``state``: the persisted state and the pure rules (feed message → desktop actions).
- ``desktop``: notifications: freedesktop Notifications over D-Bus (dbus-fast) on Linux,
  desktop-notifier (macOS, Windows) elsewhere.
- ``client``: the connection loop.
"""
