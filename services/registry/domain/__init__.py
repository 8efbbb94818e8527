"""Registry's rules, pure: no I/O, commands in, events out."""
