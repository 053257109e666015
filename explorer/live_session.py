"""The Live SMC page's run across reruns: start, stop, supersede, finish, last run.

The run in flight (an ``Admission`` from ``Gate.live``) and the last finished or
stopped one live in session state under ``session_keys.LIVE_ACTIVE`` / ``LIVE_LAST``.
Every way a run ends goes through one lifecycle: finish the ``LiveRun`` (a history
entry with the records decoded so far), remember it in the session's history (the
Runs page), and keep it as the last run::

    session = LiveSession(st.session_state)
    entry = session.stop()          # Stop: None when nothing ran
    session.start(admitted)         # Run: a run in flight is superseded (kept in history)
    session.discard()               # the server refused it: never started later
    entry = session.finish()        # the run ended (or hit the run-time cap)
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from explorer import history
from explorer import session_keys as keys
from explorer.gate import Admission
from explorer.history import RunEntry

__all__ = ["LiveSession"]


class LiveSession:
    """One visitor's Live SMC run in flight and last run, kept in session ``state``."""

    def __init__(self, state: MutableMapping[str, Any]) -> None:
        self.state = state

    @property
    def active(self) -> Admission | None:
        """The admitted run in flight (resumed on every rerun until it ends)."""
        return self.state.get(keys.LIVE_ACTIVE)

    @property
    def last(self) -> RunEntry | None:
        """The last run that finished or was stopped with at least one step."""
        return self.state.get(keys.LIVE_LAST)

    def start(self, admitted: Admission) -> None:
        """Make ``admitted`` the run in flight; one already decoding is kept in history."""
        active = self.active
        if active is not None and active.live is not None and active.live.records:
            history.remember(self.state, active.finish())
        self.state[keys.LIVE_ACTIVE] = admitted

    def stop(self) -> RunEntry | None:
        """Stop the run in flight: its decoded part is kept (nothing if no step was decoded).

        Returns the stopped entry, or None when no run was in flight.
        """
        if self.active is None:
            return None
        entry = self._end()
        if entry.records:  # a Stop before the first token leaves nothing to keep
            self._keep(entry)
        return entry

    def discard(self) -> None:
        """Forget a run the server refused (busy, queue full): it must never start later on
        its own, at the next rerun, with the age of the refused click."""
        self.state.pop(keys.LIVE_ACTIVE, None)

    def finish(self) -> RunEntry:
        """The run in flight ended (complete or at the run-time cap): keep it as the last run."""
        entry = self._end()
        self._keep(entry)
        return entry

    def _end(self) -> RunEntry:
        entry = self.state[keys.LIVE_ACTIVE].finish()
        del self.state[keys.LIVE_ACTIVE]
        return entry

    def _keep(self, entry: RunEntry) -> None:
        history.remember(self.state, entry)
        self.state[keys.LIVE_LAST] = entry
