"""Dead holders: freeing the locks of worker processes that died holding them (the journal
watcher in a worker's main process, and the reaper at worker start)."""
