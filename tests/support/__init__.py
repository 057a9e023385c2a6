"""Helpers shared by the tests: fakes, scripted services, data sets, harnesses.

Fixtures live in the ``conftest.py`` files and nothing imports a conftest; helpers a
benchmark needs as well (ports, waiting for SERVING, services in process) are public,
in :mod:`switchboard_server.testing`.
"""
