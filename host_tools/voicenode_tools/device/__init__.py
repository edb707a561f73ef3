"""Talking to a board: ports, the mpremote transport, esptool, deploy."""
