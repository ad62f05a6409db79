"""``cbs-agent desk``: the reception desk in a browser (docs/desk.md)."""
