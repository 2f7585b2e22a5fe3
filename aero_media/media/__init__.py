"""Media: the reproducible ISO, zip (and FAT) writers, the drivers ISO and Guest Tools assembly, the batch
scripts and their templates, the notices, and verification by reading every medium back."""
