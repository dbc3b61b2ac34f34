"""The delivery side of a running app: webhook endpoints, Web Push subscriptions, the
outbox and its worker, built and started by the app's lifespan.

Order: ``build`` registers the write hooks (so every write from then on queues its
deliveries) and the service's after-commit wake-up of the worker; ``start`` starts the
worker after the hub and broker; ``stop`` runs after sockets are closed and before the
engines are disposed (the worker needs both the database and its HTTP sessions until its
last attempt is recorded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp

from server.db import Engines
from server.delivery import egress
from server.delivery.queue import Channel, Outbox, RetryPolicy
from server.delivery.webhooks.endpoints import Endpoints
from server.delivery.webhooks.hook import WebhookHook
from server.delivery.webhooks.sender import WebhookSender
from server.delivery.webpush.hook import PushHook
from server.delivery.webpush.keys import VapidKeys
from server.delivery.webpush.sender import PushSender
from server.delivery.webpush.subscriptions import Subscriptions
from server.delivery.worker import ChannelSender, OutboxWorker
from server.preference_store import PreferenceStore
from server.service import Service
from server.settings import Settings


@dataclass
class Delivery:
    endpoints: Endpoints
    subscriptions: Subscriptions
    vapid: VapidKeys | None
    outbox: Outbox
    worker: OutboxWorker
    preferences: PreferenceStore
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)
    push_hook: PushHook | None = None  # None without VAPID keys

    @classmethod
    def build(cls, settings: Settings, engines: Engines, service: Service) -> Delivery:
        """Wire everything and register the hooks on ``service``'s writes. Call inside the loop.
        Raises ``ConfigError`` for unusable VAPID keys."""
        webhook_retry = RetryPolicy(
            settings.webhook_retry_base_s, settings.webhook_retry_cap_s, settings.webhook_max_age_s
        )
        push_retry = RetryPolicy(
            settings.webhook_retry_base_s,
            min(600.0, settings.webhook_retry_cap_s),
            settings.push_max_age_s,
        )
        endpoints = Endpoints(
            engines,
            disable_after_s=settings.webhook_max_age_s,
            max_age_s=settings.webhook_max_age_s,
        )
        subscriptions = Subscriptions(engines)
        preferences = PreferenceStore(engines)
        vapid = VapidKeys.from_settings(settings)
        outbox = Outbox(engines, lease_s=settings.outbox_lease_s)
        hooks_session = egress.session(
            allow_private=settings.webhook_allow_private, timeout_s=settings.webhook_timeout_s
        )
        push_session = egress.session(
            allow_private=settings.push_allow_private, timeout_s=settings.webhook_timeout_s
        )
        senders: dict[Channel, ChannelSender] = {
            Channel.WEBHOOK: WebhookSender(endpoints, hooks_session, webhook_retry)
        }
        if vapid is not None:
            senders[Channel.WEBPUSH] = PushSender(
                subscriptions, vapid, push_session, push_retry, ttl_s=settings.push_ttl_s
            )
        # A target's messages are sent one after another: as many per pass as surely
        # finish (each within the timeout) before their lease ends.
        per_target = int(settings.outbox_lease_s // (settings.webhook_timeout_s * 1.5))
        worker = OutboxWorker(outbox, senders, poll_s=settings.outbox_poll_s, per_target=per_target)
        service.writes.hooks.append(WebhookHook(endpoints, webhook_retry))
        push_hook = None
        if vapid is not None:
            push_hook = PushHook(subscriptions, push_retry, preferences)
            service.writes.hooks.append(push_hook)
        service.on_commit(worker.kick)
        return cls(
            endpoints,
            subscriptions,
            vapid,
            outbox,
            worker,
            preferences,
            [hooks_session, push_session],
            push_hook,
        )

    def start(self) -> None:
        self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()
        for session in self.sessions:
            await session.close()
