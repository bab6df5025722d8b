"""One ComponentResource per concern; __main__.py wires them in dependency order."""
