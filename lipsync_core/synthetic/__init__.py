"""The puppet world: a synthetic talking-face dataset with speaking styles."""
