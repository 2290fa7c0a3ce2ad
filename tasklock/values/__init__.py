"""Values, names and this process: what a lock stores (holder metadata), the cache key of a
lock name, and who this process is. Imports nothing of tasklock but settings and errors."""
