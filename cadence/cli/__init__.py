"""The `cadence` command: thin shells that parse, call one function, and print."""
