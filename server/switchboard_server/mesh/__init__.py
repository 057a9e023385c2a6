"""The mesh: topology, Envoy config rendering and the local process runner."""
