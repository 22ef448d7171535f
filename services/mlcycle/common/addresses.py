"""How one process dials another's HTTP API: its URL and the header that carries a key.

Shared by the command-line clients (``mlcycle.clients``) and by services that call a peer
(the labeler's console calls inference and the trainer), which may not import the clients.
"""

from __future__ import annotations

# Addresses a server listens on that a client cannot dial as such.
WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def service_url(host: str, port: int) -> str:
    """``http://host:port`` (an IPv6 address in brackets)."""
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def dialable_host(host: str) -> str:
    """The address a client dials for a server listening on ``host``."""
    return "127.0.0.1" if host in WILDCARD_HOSTS else host


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The headers that carry ``api_key`` (none without a key)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}
