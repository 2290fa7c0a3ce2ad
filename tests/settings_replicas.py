"""The test settings for a worker whose locks need a replica that the test Redis lacks."""

from tests.settings import *  # noqa: F403

TASKLOCK = {"REPLICAS": 1, "REPLICA_TIMEOUT": 0.05}
