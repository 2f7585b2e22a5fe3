"""The doit layer: task generators that wire the stages together, the file checker, code fingerprints."""
