"""The commands staff and ops type: each a library function taking the config file and
its options, returning an Answer (`cli` parses and prints)."""
