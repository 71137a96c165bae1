"""LED screens: charsets and line wrapping, the per-screen playlist and its proven
anti-fraud rotation, and the files a screen or its controller software reads.

Pure: no network, no database, no clock (every function that needs "now" takes it).
The engine (`broadcaster.engine.led`) feeds it the deliveries and the calendar's theme,
the web service serves what it builds.

May import: the standard library and `broadcaster.errors`.
"""
