"""Friendly errors: what a visitor reads when a page fails, never a traceback.

``app.py`` runs every page inside ``friendly_errors(st.error)``. A failure a visitor can
cause (a bad trace, a bad value: ``ValueError``, ``ArithmeticError``, ...) and any bug
alike end as one escaped line that says what went wrong and what to do; the traceback
goes to the server log (``explorer.errors``) only. Streamlit's own control flow
(``st.stop``, reruns) derives from ``BaseException`` and passes through untouched.

The exception text is visitor-controlled (it may quote an upload or a link), so it is
cut and Markdown-escaped before it reaches ``show``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from explorer.inputs import escape_markdown

__all__ = ["friendly_errors", "visitor_message"]

log = logging.getLogger(__name__)

_EXPECTED = (ValueError, ArithmeticError, TypeError, KeyError, IndexError, OSError)


def visitor_message(err: Exception) -> str:
    """One escaped line for the page: the error's kind and its (cut) message."""
    if isinstance(err, _EXPECTED):
        detail = escape_markdown(str(err) or type(err).__name__, max_chars=300)
        return (
            f"Something in this page's input could not be used ({type(err).__name__}: "
            f"{detail}). Change the input, or go back to the Runs page and pick another run."
        )
    return (
        f"This page failed ({type(err).__name__}). The details are in the server log; "
        "reload the page to start again."
    )


@contextlib.contextmanager
def friendly_errors(show: Callable[[str], object]) -> Iterator[None]:
    """Run a page; an ``Exception`` becomes ``show(visitor_message(err))`` and a log entry."""
    try:
        yield
    except Exception as err:  # every failure a page can raise; BaseException passes
        log.exception("page failed: %s", type(err).__name__)
        show(visitor_message(err))
