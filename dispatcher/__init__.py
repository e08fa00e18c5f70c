"""bucketrun's inbound side and shared domain (settings, services, events, routing, rendering, adapters)."""

__version__ = "0.1.0"
