"""System checks, registered from ``TaskLockConfig.ready``: the lock cache, the settings, the
tasks (time limits, uniqueness, visibility timeout) and the Redis topology."""
