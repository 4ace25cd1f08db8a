"""The `tfmtl` command-line tool."""
