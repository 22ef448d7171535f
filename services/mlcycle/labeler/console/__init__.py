"""The reviewers' console: server-rendered pages under ``/console`` on the labeler.

Every asset (templates, CSS, JavaScript) ships in this package; nothing is fetched from
elsewhere. See :mod:`.routes` for the pages and :mod:`.session` for keys and CSRF.
"""

from mlcycle.labeler.console.routes import console_router

__all__ = ["console_router"]
