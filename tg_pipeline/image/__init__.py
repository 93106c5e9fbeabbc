"""Step 4 and 5: build the image, bring it to where it runs (registry or SSH transfer), prune old ones."""
