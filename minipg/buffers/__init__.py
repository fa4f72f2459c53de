"""Experience storage: on-policy rollouts and off-policy replay (preallocated arrays)."""
