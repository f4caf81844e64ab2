"""Matplotlib output shared by the HTML pages (drift report, journey-map report).

Pages are self-contained files, so figures are inlined as base64 PNG data URIs; the
``Agg`` backend is selected on use, never at import, so importing needs no display.
"""

from __future__ import annotations

import base64
import io
from typing import Any

__all__ = ["figure_to_data_uri"]


def figure_to_data_uri(fig: Any, *, dpi: int = 110) -> str:
    """``data:image/png;base64,...`` of a matplotlib figure (the figure is closed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
