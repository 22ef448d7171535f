"""Plots for the HTML reports: a matplotlib figure drawn and inlined as a base64 PNG.

A bare ``Figure`` is not registered with pyplot (nothing to close, no global
backend switch): saving it renders through Agg, so a report builds on a
headless server. matplotlib is imported here, on first use, so services
that never write a report do not load it.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from html import escape
from typing import Any

Draw = Callable[[Any, Any], None]  # (figure, data) -> draws on the figure


def inline_figure(
    draw: Draw,
    data: Any,
    *,
    alt: str,
    plot: str,
    size: tuple[float, float] = (7.5, 4.5),
    dpi: int = 110,
) -> str:
    """``draw(fig, data)`` and return a ``<figure>`` holding the PNG inline."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    draw(fig, data)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    fig.clear()
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f"<figure data-plot='{escape(plot)}'><img alt='{escape(alt)}' "
        f"src='data:image/png;base64,{encoded}'></figure>"
    )
