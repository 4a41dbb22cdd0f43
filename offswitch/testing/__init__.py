"""Tools for testing switches: tiny offline models (``offswitch.testing.tiny``)."""
