"""event-bridge: call-recording platforms in, CloudEvents out, nothing silently lost."""

__version__ = "0.1.0"
