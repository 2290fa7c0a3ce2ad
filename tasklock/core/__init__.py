"""The lock core: ``Lock`` (a named, owner-tokened lock with a lifetime), its renewal, the
pool child's lock journal, and the plans that define its behaviour once for every face."""
