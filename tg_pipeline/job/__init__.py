"""Step 1: the job as payload bytes (pickling) and the checks that stop bad input before a build."""
