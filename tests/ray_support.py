"""A real local Ray cluster for the tests: a head node and a second node, each a set of
Ray processes on this machine with a resource label of its own (``arc_head``,
``arc_second``), so a test can tell where an actor landed and can kill one node.

Ray advertises each node at this machine's own interface address (it refuses loopback
for a cluster of more than one node); nothing leaves the machine. The cluster is shared
by every test of a session (starting one takes about five seconds) and this process is
its driver.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAD, SECOND = "arc_head", "arc_second"


@dataclass
class LocalCluster:
    cluster: Any  # ray.cluster_utils.Cluster
    second: Any  # the second node (ray's node handle): remove_second() kills it

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_second(self) -> None:
        """(Re)start the second node."""
        self.second = self.cluster.add_node(**_node_args(SECOND))
        self.cluster.wait_for_nodes()

    def remove_second(self) -> None:
        """Kill the second node's processes (raylet, its workers and actors)."""
        self.cluster.remove_node(self.second, allow_graceful=False)
        self.second = None


def _node_args(label: str) -> dict[str, Any]:
    return {"num_cpus": 2, "resources": {label: 1}, "object_store_memory": 80 * 1024**2}


def start_cluster() -> LocalCluster:
    import ray
    from ray.cluster_utils import Cluster

    # The toy plugin and the test-only plugins import from these folders: Ray's workers
    # inherit the nodes' environment, which is this process's.
    paths = [str(ROOT / "examples" / "arc_toy"), str(ROOT / "tests")]
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [os.environ.get("PYTHONPATH")])])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    temp = tempfile.mkdtemp(prefix="arcray", dir="/tmp")  # Ray's socket paths must stay short
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**_node_args(HEAD), "include_dashboard": False, "temp_dir": temp},
    )
    second = cluster.add_node(**_node_args(SECOND))
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, _temp_dir=temp)
    return LocalCluster(cluster, second)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalCluster]:
    """The session's local two-node cluster (this process is its driver)."""
    import ray

    local = start_cluster()
    try:
        yield local
    finally:
        ray.shutdown()
        local.cluster.shutdown()
