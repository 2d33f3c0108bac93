"""Entities as OpenWhisk's controller checks them: names, kinds, bodies, triggers and rules."""
