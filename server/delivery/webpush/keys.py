"""The server's VAPID identity (RFC 8292): the key pair push services know it by, from
the settings or newly made; and the base64url helpers Web Push keys are written in.
Signing itself is py-vapid's, inside pywebpush."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

from server.errors import ConfigError
from server.settings import Settings


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class VapidKeys:
    """The server's VAPID identity: the signing key, the public key the browser passes
    to ``pushManager.subscribe`` as ``applicationServerKey``, and the contact subject."""

    signer: Any  # py_vapid.Vapid (untyped)
    public_key: str
    subject: str

    @classmethod
    def from_settings(cls, settings: Settings) -> VapidKeys | None:
        """None when Web Push is not configured. Raises ``ConfigError`` for a bad key."""
        if not settings.vapid_private_key:
            return None
        try:
            signer = Vapid.from_string(settings.vapid_private_key)
            raw = signer.public_key.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        except Exception:
            raise ConfigError(
                "TASKBELL_VAPID_PRIVATE_KEY is not a P-256 private key "
                "(make one with: python -m server vapid)"
            ) from None
        public = b64url(raw)
        if settings.vapid_public_key and settings.vapid_public_key.rstrip("=") != public:
            raise ConfigError("TASKBELL_VAPID_PUBLIC_KEY does not match the private key")
        return cls(signer, public, settings.vapid_subject)

    @staticmethod
    def generate() -> tuple[str, str]:
        """A new key pair as (private, public), both base64url without padding."""
        key = ec.generate_private_key(ec.SECP256R1())
        private = key.private_numbers().private_value.to_bytes(32, "big")
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(private), b64url(public)
