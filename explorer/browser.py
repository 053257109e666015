"""What the real-browser test and the load test share: Debian's Chromium and its flags.

Playwright cannot download its own browsers on these machines, so both drive
``/usr/bin/chromium`` (``apt-get install chromium``). The network is closed: no
background fetches, no GPU, no sandbox (root in a container).
"""

from __future__ import annotations

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "COUNT_CHARTS_WITH_DATA"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
)

# A JavaScript function: how many Plotly charts on the page have data. Plotly 7 ships
# numeric arrays as {dtype, bdata} (base64) objects: those count as data too.
COUNT_CHARTS_WITH_DATA = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).filter(
    el => Array.isArray(el.data) && el.data.some(t => ['x', 'y', 'z'].some(k => {
        const v = t[k];
        return Boolean(v) && ((v.length || 0) > 0 || (typeof v.bdata === 'string' && v.bdata.length > 0));
    }))).length"""
