"""The campaign model: config, calendar, targets, themes, templates and the plan.

Pure: nothing here opens a network connection or a database, imports a channel plugin,
or reads the clock. Every function that needs "now" takes it as an argument. The engine
(`broadcaster.engine`) wires the model to channels and the delivery log.

May import: the standard library, pydantic, PyYAML, Jinja2, phonenumbers, lunar_python,
`broadcaster.vocab`, `broadcaster.errors`, `broadcaster.led` (pure too).
"""
