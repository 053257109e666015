"""The app's services: everything the Streamlit pages need besides widgets and charts.

Three layers, dependencies pointing one way::

    powersmc_core   the library (engine, models, exact tools, figures, traces); no streamlit
        ^
    explorer        this package: demo settings, input policy, THE policy gate, queue,
        ^           run store, live-run controller, history, uploads, health probe
    app.py + app_pages/   thin page scripts: widgets -> one service call -> charts

Every sampler run and every upload goes through ``explorer.gate`` (clamps to the caps,
encodes the prompt, takes a queue slot, enforces the run-time cap, journals the run);
its runs yield typed events (``explorer.events``). What pages share lives here too:
``page_kit`` (model, prompt picker, settings from the library's knobs, gated runs),
``views`` (live charts, particle table, run summary, comparison), ``live_session`` (the
Live SMC run across reruns) and ``session_keys`` (every session-state key, named once).
Modules import each other without cycles (a test checks); importing the package
itself imports nothing, so ``python -m explorer.health`` stays light.
"""
