"""The embedded synthetic benchmark: scenes, pixels, texts, generation and the on-disk writer."""
