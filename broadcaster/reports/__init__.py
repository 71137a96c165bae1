"""Audit reads and reports over the delivery log: the 一案三查 reach lookup, content
approval, weekly and monthly statistics (XLSX, CSV, HTML with charts, PNG).

May import `broadcaster.model`, `broadcaster.log` and `broadcaster.vocab`; never the web
service or the CLI (both call in here). Everything reads the log through SQL aggregates or
index ranges of a bounded size: nothing loads the log into memory.
"""
