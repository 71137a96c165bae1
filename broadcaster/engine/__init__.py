"""The delivery engine: wiring (`app`), dispatch, the runner, executors, rate limits,
claims and the plugin registry.

May import: the model, the delivery log, the channel contract, requests, APScheduler,
tenacity. Knows nothing about HTTP routes or pages (that is `broadcaster.web`).
"""
