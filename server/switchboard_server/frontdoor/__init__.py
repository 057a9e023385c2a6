"""The front door: health and reflection for everything the edge exposes.

Envoy routes by path, and a ``grpc.health.v1.Health/Check`` names its service in the
request body, so no route can send it to the right service. The edge therefore routes
``/grpc.health.v1.Health/`` and ``/grpc.reflection.`` to this small server, which
answers health from the edge Envoy's own view of its clusters and reflection for every
exposed service (see :mod:`.domain` for the rule, :mod:`.server` for the server).
"""
