"""Switchboard servers: classification, context and orchestration behind Envoy sidecars."""
