"""Notifiers: where events go. One module per type; `registry` lists them and finds plugins."""
