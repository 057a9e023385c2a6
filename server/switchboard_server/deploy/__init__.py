"""Deployment forms rendered from the topology: Docker Compose and Kubernetes."""
