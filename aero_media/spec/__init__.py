"""Specs: the YAML build specs, their schema, the device contract, and the frozen model they load into."""
