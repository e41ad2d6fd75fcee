"""Client authentication: HS256 JWTs carrying the user id (`sub`) and role (`role`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from tandem.common import subjects
from tandem.common.errors import TandemError
from tandem.signaling.errors import UnauthenticatedError
from tandem.v1 import common_pb2

ROLES = {"shopper": common_pb2.ROLE_SHOPPER, "host": common_pb2.ROLE_HOST}


@dataclass(frozen=True)
class Identity:
    user_id: str
    role: common_pb2.Role.ValueType

    @property
    def is_host(self) -> bool:
        return self.role == common_pb2.ROLE_HOST


def verify_token(token: str, key: str, audience: str) -> Identity:
    """The identity a token proves, or an UNAUTHENTICATED error saying why not."""
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], audience=audience, options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise UnauthenticatedError("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise UnauthenticatedError(f"invalid token: {exc}") from None
    user_id, role = claims.get("sub"), ROLES.get(str(claims.get("role")))
    if not isinstance(user_id, str):
        raise UnauthenticatedError("the token's subject must be a string")
    try:
        subjects.identifier("the token's subject", user_id)
    except TandemError as exc:
        raise UnauthenticatedError(exc.message) from None
    if role is None:
        raise UnauthenticatedError("the token's role must be 'shopper' or 'host'")
    return Identity(user_id, role)


def issue_token(user_id: str, role: str, key: str, audience: str, ttl_s: int = 3600) -> str:
    """Mint a token (the dev endpoint and tests; production tokens come from the app's backend)."""
    now = int(time.time())
    return jwt.encode({"sub": user_id, "role": role, "aud": audience, "iat": now, "exp": now + ttl_s}, key)
