"""Model rollouts: variants at the callers' sidecars, the runtime policy, the shadow
comparator and ``switchboard rollout``."""
