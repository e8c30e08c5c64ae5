"""The orders app: a view and a management command that publish OrderPlaced."""
