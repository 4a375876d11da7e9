"""Agents: RPP's multi-agent actor-critic, baseline policies and Stable-Baselines3 helpers."""
