"""Blueprints that need more than the always-on routes in papyrus.routes."""
