"""Mesh security: certificates, mTLS and RBAC between sidecars, the edge's JWT and rate limit."""
