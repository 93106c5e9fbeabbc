"""Step 2 and 3: the sdist (source roots + payload + runtime), the Dockerfile, the pip requirements."""
