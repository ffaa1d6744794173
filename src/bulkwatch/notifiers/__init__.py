"""Notifiers: where events go. One module per type, registered in `registry`."""
