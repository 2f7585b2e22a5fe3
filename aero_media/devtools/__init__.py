"""What never ships in a user's media: stand-in PE images, the sample-pack generator and expander, test certificates."""
