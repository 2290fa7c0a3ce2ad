"""Small pieces users would otherwise copy from issue threads: cache clients for Redis Cluster."""
