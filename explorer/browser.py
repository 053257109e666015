"""What the real-browser test and the load test share: Debian's Chromium and its flags.

Playwright cannot download its own browsers on these machines, so both drive
``/usr/bin/chromium`` (``apt-get install chromium``). The network is closed: no
background fetches, no GPU, no sandbox (root in a container).
"""

from __future__ import annotations

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "COUNT_CHARTS_WITH_DATA",
    "READ_ALERTS",
    "READ_CHARTS",
    "READ_METRICS",
]

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

# A JavaScript function: every Plotly chart on the page as {key, traces}, where ``key`` is
# the Streamlit key of the chart's element (its ``st-key-…`` class, "" without one) and
# each trace is {name, type, x, y}. Arrays come back as lists; Plotly 7's {dtype, bdata}
# objects come back as they are (``tests/serving.py`` decodes them).
READ_CHARTS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => {
    const holder = el.closest('[class*="st-key-"]');
    const key = holder ? (Array.from(holder.classList).find(c => c.startsWith('st-key-')) || '')
        .slice('st-key-'.length) : '';
    const plain = v => (v && typeof v === 'object' && ArrayBuffer.isView(v)) ? Array.from(v) : v;
    const title = el.layout && el.layout.title ? (el.layout.title.text || el.layout.title) : '';
    return {key, title: typeof title === 'string' ? title : '', traces: (el.data || []).map(t => ({
        name: t.name === undefined ? null : t.name, type: t.type || 'scatter',
        x: plain(t.x) === undefined ? null : plain(t.x),
        y: plain(t.y) === undefined ? null : plain(t.y)}))};
})"""

# A JavaScript function: every st.metric on the page as {label, value, delta}.
READ_METRICS = """() => Array.from(document.querySelectorAll('[data-testid="stMetric"]')).map(m => {
    const text = id => { const e = m.querySelector(`[data-testid="${id}"]`); return e ? e.innerText.trim() : null; };
    return {label: text('stMetricLabel'), value: text('stMetricValue'), delta: text('stMetricDelta')};
})"""

# A JavaScript function: the text of every alert box (st.info/success/warning/error).
READ_ALERTS = """() => Array.from(document.querySelectorAll('[data-testid="stAlert"]'))
    .map(a => a.innerText.trim())"""
