"""The commands the framework side adds to `skylark` (check, compare, export, import) and
the README tables."""
