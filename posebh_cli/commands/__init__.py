"""One module per CLI command: the glue that spans folders. `cli.py` calls these; nothing below imports them."""
