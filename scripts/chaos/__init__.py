"""``make chaos``: the mesh under load while its parts are killed, stopped, frozen and
faulted, with an audit after each scenario that every acknowledged turn is recorded
exactly once and no failed turn is (issue 22, point 7). Figures: docs/reliability.md.

``python -m scripts.chaos [--quick] [--only NAME ...] [--json PATH]``.
"""
