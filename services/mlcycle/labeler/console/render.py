"""Templates and static files from the package; pages rendered with the session they need."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from mlcycle.labeler.console.session import Session, keep

PACKAGE = "mlcycle.labeler.console"
# The only files /console/static serves, with their media types.
STATIC_TYPES = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
# The pages' own assets only: no inline script, nothing from another origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# A label run's report inlines its style and its plots.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


class Pages:
    """The console's Jinja2 environment (autoescaped) and its static files."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader(PACKAGE, "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["percent"] = _percent
        self.env.filters["number"] = _number
        static = resources.files(PACKAGE).joinpath("static")
        self.static = {name: static.joinpath(name).read_bytes() for name in STATIC_TYPES}

    def render(
        self, name: str, session: Session, *, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        """Template ``name`` with ``session`` (and its CSRF cookie kept)."""
        html = self.env.get_template(name).render(session=session, **context)
        response = HTMLResponse(html, status_code=status_code, headers=_headers(CSP))
        return keep(response, session)  # type: ignore[return-value]

    def asset(self, name: str) -> Response | None:
        if name not in self.static:
            return None
        return Response(
            self.static[name],
            media_type=STATIC_TYPES[name],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )


def report_response(html: str) -> HTMLResponse:
    """A label run's report page as the labeler renders it, under a CSP of its own."""
    return HTMLResponse(html, headers=_headers(REPORT_CSP))


def _headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
