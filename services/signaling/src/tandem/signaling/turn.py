"""Short-lived TURN credentials for clients: the TURN REST API scheme that coturn implements with
`use-auth-secret` (username "<expiry epoch s>:<user id>", password the base64 HMAC-SHA1 of the
username under the shared secret), so no per-user state lives on the TURN server."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from tandem.v1 import client_pb2


@dataclass(frozen=True)
class TurnConfig:
    urls: tuple[str, ...]
    secret: str
    ttl_s: int

    @property
    def refresh_after_s(self) -> float:
        """When to send a client new credentials: three quarters into their life."""
        return self.ttl_s * 0.75


def credential(secret: str, username: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


def ice_servers(config: TurnConfig, user_id: str, now_s: float) -> client_pb2.IceServers:
    """The ICE servers for one user, their credentials valid for `config.ttl_s` from `now_s`."""
    message = client_pb2.IceServers()
    if not config.urls:
        return message
    expires = int(now_s) + config.ttl_s
    username = f"{expires}:{user_id}"
    message.servers.append(
        client_pb2.IceServer(urls=list(config.urls), username=username, credential=credential(config.secret, username))
    )
    message.expires_at.FromDatetime(datetime.fromtimestamp(expires, UTC))
    return message
