"""Who is using the console, and proof that a POST comes from its own pages.

With keys on, the login page takes an API key and keeps it in an ``HttpOnly``,
``SameSite=Strict`` cookie scoped to ``/console``; each request is then checked like an
API call carrying that key (:class:`~mlcycle.common.http.RouteAccess` with the console's
route table, :data:`mlcycle.contracts.access.CONSOLE_SCOPES`). With keys off every visitor
may do everything, and labels are recorded under the name the login page was given
(``local`` until then).

CSRF: besides ``SameSite=Strict``, every POST must echo the per-browser token of the
``mlcycle_console_csrf`` cookie, in the ``X-CSRF-Token`` header (the console's script) or
the ``csrf`` form field (the login and logout forms). A cross-site page can do neither.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import quote, unquote

from fastapi import Request, Response

from mlcycle.common.errors import Forbidden
from mlcycle.common.http import RouteAccess
from mlcycle.common.keys import Caller, KeyRing, Scope
from mlcycle.contracts.access import CONSOLE_OPEN_ROUTES, CONSOLE_SCOPES

COOKIE_PATH = "/console"
KEY_COOKIE = "mlcycle_console_key"
REVIEWER_COOKIE = "mlcycle_console_reviewer"
CSRF_COOKIE = "mlcycle_console_csrf"
CSRF_HEADER = "x-csrf-token"
# What an admin's action came to, shown once by the page it redirects to.
NOTICE_COOKIE = "mlcycle_console_notice"
NOTICE_MAX_AGE_S = 60
DEFAULT_REVIEWER = "local"
# A working day; the key itself does not expire, the browser's copy of it does.
COOKIE_MAX_AGE_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    """One request's view of the console: who (if anyone) and what they may do."""

    caller: Caller | None
    keys_required: bool
    reviewer_name: str
    csrf: str

    @property
    def signed_in(self) -> bool:
        return self.caller is not None

    @property
    def can_label(self) -> bool:
        return self.caller is not None and self.caller.allows(Scope.LABEL)

    @property
    def is_admin(self) -> bool:
        return self.caller is not None and self.caller.allows(Scope.ADMIN)

    @property
    def who(self) -> str:
        """The name labels are recorded as."""
        if self.keys_required and self.caller is not None:
            return self.caller.name
        return self.reviewer_name


class ConsoleAccess:
    """Keys from the console's cookie, checked against the console's route table."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self.routes = RouteAccess(ring, CONSOLE_SCOPES, open_routes=CONSOLE_OPEN_ROUTES)

    @property
    def keys_required(self) -> bool:
        return self.routes.keys_required

    def caller(self, request: Request) -> Caller:
        """The caller of this console route; 401 without a valid key, 403 without its scope."""
        return self.routes.authorize(request, request.cookies.get(KEY_COOKIE))

    def session(self, request: Request, caller: Caller | None) -> Session:
        reviewer = request.cookies.get(REVIEWER_COOKIE) or DEFAULT_REVIEWER
        return Session(caller, self.keys_required, reviewer, csrf_token(request))

    def identify(self, secret: str) -> Caller | None:
        """The caller a secret typed on the login page stands for (None: not a key)."""
        key = self.ring.identify(secret) if secret else None
        return Caller(key.name, key.scopes, legacy=key.legacy) if key else None


def csrf_token(request: Request) -> str:
    """This browser's CSRF token (a fresh one when it has none yet; :func:`keep` sets it)."""
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)


def check_csrf(request: Request, sent: str | None) -> None:
    """403 unless ``sent`` (or the X-CSRF-Token header) matches the browser's CSRF cookie."""
    expected = request.cookies.get(CSRF_COOKIE) or ""
    presented = sent or request.headers.get(CSRF_HEADER) or ""
    if not expected or not hmac.compare_digest(expected.encode(), presented.encode()):
        raise Forbidden(
            "the console's CSRF token is missing or wrong: reload the page and try again",
            details={"header": CSRF_HEADER},
        )


def _cookie(response: Response, name: str, value: str, max_age: int = COOKIE_MAX_AGE_S) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=False,  # a loopback stack speaks plain HTTP; behind TLS the proxy adds Secure
    )


def keep(response: Response, session: Session) -> Response:
    """Set the CSRF cookie the page's token came from."""
    _cookie(response, CSRF_COOKIE, session.csrf)
    return response


def sign_in(response: Response, *, secret: str | None, reviewer: str | None) -> None:
    """Keep the key (keys on) or the reviewer's name (keys off) in the console's cookies."""
    if secret:
        _cookie(response, KEY_COOKIE, secret)
    if reviewer:
        _cookie(response, REVIEWER_COOKIE, reviewer)


def sign_out(response: Response) -> None:
    for name in (KEY_COOKIE, REVIEWER_COOKIE):
        response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="strict")


def leave_notice(response: Response, message: str) -> None:
    """Have the next page say ``message`` (after a redirect, so a reload does not redo it)."""
    _cookie(response, NOTICE_COOKIE, quote(message), max_age=NOTICE_MAX_AGE_S)


def notice_of(request: Request) -> str | None:
    """The notice left for this page, if any."""
    notice = request.cookies.get(NOTICE_COOKIE)
    return unquote(notice)[:1000] if notice else None


def forget_notice(response: Response) -> None:
    response.delete_cookie(NOTICE_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
