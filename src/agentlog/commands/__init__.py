"""The read side of the CLI: ls, show, tail, verify, ca."""
