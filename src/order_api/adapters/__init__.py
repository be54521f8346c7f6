"""Outside services behind small interfaces, each with an in-process twin for embedded mode."""
