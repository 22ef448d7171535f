"""How mlcycle's Redis clients log in: the password and the CA, from the settings, in one place.

The password stays out of the URL (``MLCYCLE_REDIS_PASSWORD``), so the URL can be logged;
``rediss://`` turns TLS on and ``MLCYCLE_REDIS_CA_FILE`` names the CA that verifies the
server. :func:`redacted` hides a password that was put in the URL all the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from mlcycle.common.settings import CacheSettings


class ConnectionOptions(TypedDict, total=False):
    """The ``redis.Redis.from_url(url, ...)`` options that log in and verify the server."""

    password: str
    ssl_ca_certs: str


def connection_options(cache: CacheSettings) -> ConnectionOptions:
    """``redis.Redis.from_url(url, **options)`` options for the settings' password and CA."""
    cache.check_tls()
    options = ConnectionOptions()
    if cache.redis_password:
        options["password"] = cache.redis_password
    if cache.redis_ca_file is not None:
        options["ssl_ca_certs"] = str(cache.redis_ca_file)
    return options


def redacted(url: str) -> str:
    """``url`` with any password in it replaced by ``***``, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
