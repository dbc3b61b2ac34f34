"""Command line: ``python -m server [serve|token|migrate|demo|vapid]``.

- ``serve`` (the default): applies migrations, then serves with uvicorn on HOST:PORT.
- ``token USER [--ttl SECONDS] [--tenant TENANT] [--role ROLE ...]``: prints a user
  token on its last line (``--role process-admin`` for the process view).
- ``migrate``: applies migrations and exits.
- ``demo [--url URL]``: starts a sample process on a running demo server.
- ``vapid [--subject mailto:...]``: prints a new Web Push (VAPID) key pair as the
  ``TASKBELL_VAPID_*`` lines to put in the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import sys
import urllib.request

from server.errors import ConfigError
from server.feeds import DEFAULT_TENANT, is_tenant
from server.settings import Settings

log = logging.getLogger("taskbell")


def _announce_demo(settings: Settings) -> None:
    """Say that demo mode is on and what it made up. Only what demo mode invented is
    ever named (the documented ``demo-producer-key``); a key or secret the operator
    configured never reaches a log line."""
    made_up = settings.made_up
    url = f"http://{settings.host}:{settings.port}/"
    extra: dict[str, object] = {"open": url, "made_up": list(made_up)}
    if "TASKBELL_PRODUCER_KEYS" in made_up:
        extra["producer_key"] = next(iter(settings.producer_keys))
    log.warning(
        f"DEMO MODE: open {url} and pick who you are; not for production"
        + (f" (made up for this run: {', '.join(made_up)})" if made_up else ""),
        extra=extra,
    )
    if not settings.demo_routes:
        log.warning(
            "demo routes are off: a real TASKBELL_SECRET or TASKBELL_PRODUCER_KEYS is "
            "configured, and demo routes would hand out tokens and write without a key"
        )


def _serve(settings: Settings) -> int:
    import uvicorn

    from server import logs
    from server.app import create_app
    from server.migrate import upgrade
    from server.serving import uvicorn_config

    log_config = logs.setup(settings.log_level)
    if settings.demo:
        _announce_demo(settings)
    if settings.auto_migrate:
        upgrade(settings.database_url)
    app = create_app(dataclasses.replace(settings, auto_migrate=False))
    config = uvicorn_config(app, settings, log_config=log_config)
    # Everything built so far (modules, the app) lives as long as the process: keep it
    # out of the collector's way, and collect the young generation less often, so that
    # thousands of sockets' worth of objects do not make for long pauses.
    gc.collect()
    gc.freeze()
    gc.set_threshold(2_000, 10, 10)
    uvicorn.Server(config).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description="Taskbell server")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve HTTP and WebSocket (default)")
    tok = sub.add_parser("token", help="print a user token for the configured secret")
    tok.add_argument("user")
    tok.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    tok.add_argument("--tenant", default=DEFAULT_TENANT, help="the tenant (default: default)")
    tok.add_argument(
        "--role",
        action="append",
        default=[],
        help="a right in the token's roles claim, e.g. process-admin (repeatable)",
    )
    sub.add_parser("migrate", help="apply database migrations and exit")
    demo = sub.add_parser("demo", help="start a sample process on a running demo server")
    demo.add_argument("--url", default=None, help="server base URL (default from HOST/PORT)")
    vapid = sub.add_parser("vapid", help="print a new Web Push (VAPID) key pair")
    vapid.add_argument(
        "--subject", default="mailto:ops@example.com", help="contact for push services"
    )
    args = parser.parse_args(argv)

    if args.command == "vapid":  # needs no settings: it makes some
        from server.delivery.webpush.keys import VapidKeys

        private, public = VapidKeys.generate()
        print(f"TASKBELL_VAPID_PRIVATE_KEY={private}")
        print(f"TASKBELL_VAPID_PUBLIC_KEY={public}")
        print(f"TASKBELL_VAPID_SUBJECT={args.subject}")
        return 0

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"taskbell: {exc}", file=sys.stderr)
        return 2

    if args.command == "token":
        from server.auth import is_role_name, mint_for

        if "TASKBELL_SECRET" in settings.made_up:
            print(
                "taskbell: demo mode made up a secret for this command only; set "
                "TASKBELL_SECRET to mint tokens a server accepts",
                file=sys.stderr,
            )
        ttl = args.ttl or settings.token_ttl_s
        if settings.token_max_lifetime_s and ttl > settings.token_max_lifetime_s:
            print(
                f"taskbell: --ttl {ttl} is longer than TASKBELL_TOKEN_MAX_LIFETIME "
                f"({settings.token_max_lifetime_s} s); the server would refuse the token",
                file=sys.stderr,
            )
            return 2
        if not is_tenant(args.tenant):
            print(f"taskbell: {args.tenant!r} is not a tenant name", file=sys.stderr)
            return 2
        bad = [r for r in args.role if not is_role_name(r)]
        if bad:
            print(f"taskbell: {bad[0]!r} is not a role name", file=sys.stderr)
            return 2
        roles = list(dict.fromkeys(args.role))
        print(mint_for(settings, args.user, ttl, tenant=args.tenant, roles=roles))
        return 0
    if args.command == "migrate":
        from server.migrate import upgrade

        upgrade(settings.database_url)
        print("database is up to date")
        return 0
    if args.command == "demo":
        url = (args.url or f"http://{settings.host}:{settings.port}").rstrip("/")
        req = urllib.request.Request(
            url + "/api/v1/demo/process",
            data=b"{}",
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            print(json.dumps(json.load(resp)))
        return 0
    return _serve(settings)


if __name__ == "__main__":
    sys.exit(main())
