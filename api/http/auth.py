"""Who may change things: a bearer token for every mutating call, or loopback only when none is configured."""

from __future__ import annotations

import ipaddress
import secrets

from fastapi import Depends, HTTPException, Request

from api.http.server import ServerState, server_state

OPERATOR_HEADER = "x-operator"


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def operator(request: Request, server: ServerState = Depends(server_state)) -> str | None:
    """Refuses a mutating call the caller may not make; returns the operator named in `X-Operator`, if any."""
    token = server.settings.api_token
    named = (request.headers.get(OPERATOR_HEADER) or "").strip()[:100] or None
    if token is None:
        # No token: a server that `aitrader serve` bound to loopback; refuse anything that still arrives from elsewhere.
        client = request.client.host if request.client else None
        if not is_loopback(client):
            raise HTTPException(403, "no API token is configured, so changes are accepted from loopback only; set AITRADER_API_TOKEN")
        return named
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise HTTPException(401, "this call needs `Authorization: Bearer <AITRADER_API_TOKEN>`", headers={"WWW-Authenticate": "Bearer"})
    return named
