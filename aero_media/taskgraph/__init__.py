"""The doit layer: task generators that wire the stages together, the file checker, code fingerprints,
the crash-safe dep file, the one-line reporter and Ctrl-C handling."""
