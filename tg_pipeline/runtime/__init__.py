"""What runs inside the job's container (standard library only); copied into every job package."""
