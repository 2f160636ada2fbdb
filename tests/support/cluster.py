"""A 3-node OpenBao HA cluster on loopback, for failover tests.

Each node is a real `bao server` process (tests/support/bao.py's BaoServer)
started from its own config file: integrated storage (`storage "raft"` with
`retry_join` blocks naming the other nodes), a TLS `listener "tcp"` with a
server certificate for 127.0.0.1, and `api_addr`/`cluster_addr` on their own
free ports. Node 1 is initialised (one key share) and unsealed; the others
join it through `retry_join` and are unsealed with the same key. The cluster
is then set up the way tests/support/bao.py sets up the dev server for
pushes: KV v2 at secret/, policy `certs`, AppRole role `certs`.

    cluster = RaftCluster.start(tmp_path, performance_multiplier=1)
    try:
        active, standby = cluster.active(), cluster.standbys()[0]
        cluster.kill(active)                 # SIGKILL, no goodbye to the peers
        new_active, elected_after = cluster.wait_for_new_active(active)
        cluster.restart(active)              # same config and raft data, unsealed, rejoins
    finally:
        cluster.stop()

What OpenBao 2.7 standbys do (observed here): a standby answers reads from
its own raft replica (`disable_standby_reads` defaults to false), so a read
right after a write may not see it yet; it forwards writes to the active
node over the cluster port, and when that forwarding fails (the active node
died, even after applying the write) it answers 307 with the old active
node's address until a new one is elected. With raft's default timing
(`performance_multiplier` 5) a new active node took 11 to 22 s here after
SIGKILL; with 1, about 4 s.

A lagging standby: `RaftCluster.start(workdir, lagging=True)` advertises the
last node's `cluster_addr` on a tests/support/lag_relay.py relay in front of
its real cluster listener, so everything the active node replicates to it
passes through the relay. `cluster.set_lag(2.0)` then makes that node (a
standby: node 1 is always the first active node) learn every write about 2 s
late; reads sent to it answer from its stale replica in the meantime.

    cluster = RaftCluster.start(tmp_path, lagging=True)
    cluster.set_lag(2.0)
    cluster.lagging.addr                     # the API address of the lagging standby

One cluster serves a whole pytest session (tests/integration/conftest.py:
`raft_cluster`, started with `lagging=True`, no lag until set). After each
test `cluster.heal()` restarts the nodes it killed, takes the lag away and
waits until autopilot counts every node a healthy voter; a test that needs
the lagging node as a standby calls `cluster.make_standby(cluster.lagging)`
(a step-down cannot move raft's leadership: the node is killed and rejoins).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
import typing as t
from pathlib import Path

from bao import APPROLE_ROLES, POLICIES, TOKEN_TTL, BaoError, BaoServer
from identities import CertificateAuthority
from lag_relay import LagRelay

CLUSTER_NAME = "certautopilot-test"
SIZE = 3
# Autopilot keeps a joined node a non-voter until it has been healthy this
# long (10 s by default); a leader killed before the promotion leaves no
# quorum. A short time keeps the fixture fast; elections are untouched.
STABILIZATION_TIME = "2s"
FORM_TIMEOUT = 60.0
ELECTION_TIMEOUT = 60.0
# Restarted nodes rejoining, autopilot's stabilisation, and an election if the quorum was lost.
HEAL_TIMEOUT = 120.0

HEALTH_ACTIVE = 200
HEALTH_STANDBY = 429


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free TCP ports on loopback (held open together so none repeats)."""
    probes = []
    try:
        for _index in range(count):
            probe = socket.socket()
            probe.bind((host, 0))
            probes.append(probe)
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


class ClusterNode:
    """One node: its name, addresses, config file and, once started, its BaoServer."""

    def __init__(
        self, *, name: str, workdir: Path, api_port: int, cluster_port: int, advertised_cluster_port: int | None = None
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.api_port = api_port
        self.cluster_port = cluster_port
        self.addr = f"https://127.0.0.1:{api_port}"
        # What the peers dial: the node's own cluster listener, or a relay in front of it.
        self.cluster_addr = f"https://127.0.0.1:{advertised_cluster_port or cluster_port}"
        self.config_path = workdir / "server.hcl"
        self.server: BaoServer | None = None
        self.killed = False

    def __repr__(self) -> str:
        return f"<{self.name} {self.addr}{' killed' if self.killed else ''}>"

    def write_config(
        self,
        *,
        peers: t.Sequence[ClusterNode],
        ca_cert: str,
        cert: str,
        key: str,
        performance_multiplier: int | None = None,
    ) -> None:
        data_dir = self.workdir / "raft"
        data_dir.mkdir(parents=True, exist_ok=True)
        joins = "".join(
            "  retry_join {\n"
            f"    leader_api_addr = {json.dumps(peer.addr)}\n"
            f"    leader_ca_cert_file = {json.dumps(ca_cert)}\n"
            "  }\n"
            for peer in peers
        )
        self.config_path.write_text(
            f"cluster_name = {json.dumps(CLUSTER_NAME)}\n"
            f"api_addr = {json.dumps(self.addr)}\n"
            f"cluster_addr = {json.dumps(self.cluster_addr)}\n"
            "disable_mlock = true\n"
            "ui = false\n"
            'storage "raft" {\n'
            f"  path = {json.dumps(str(data_dir))}\n"
            f"  node_id = {json.dumps(self.name)}\n"
            + (f"  performance_multiplier = {performance_multiplier}\n" if performance_multiplier else "")
            + f"{joins}"
            "}\n"
            'listener "tcp" {\n'
            f'  address = "127.0.0.1:{self.api_port}"\n'
            f'  cluster_address = "127.0.0.1:{self.cluster_port}"\n'
            f"  tls_cert_file = {json.dumps(cert)}\n"
            f"  tls_key_file = {json.dumps(key)}\n"
            "}\n"
        )

    @property
    def alive(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    def health(self) -> int | None:
        """sys/health's status (200 active, 429 standby, 503 sealed, 501 uninitialised); None if no answer."""
        if not self.alive:
            return None
        try:
            status, _body = self.server.api("GET", "sys/health", token="", timeout=2)
        except Exception:  # noqa: BLE001 - any failure to answer counts as "no answer"
            return None
        return status


class RaftCluster:
    """Three raft nodes on loopback sharing one unseal key and root token."""

    def __init__(self, workdir: Path, nodes: list[ClusterNode], ca_cert: str) -> None:
        self.workdir = workdir
        self.nodes = nodes
        self.ca_cert = ca_cert
        self.unseal_key = ""
        self.root_token = ""
        self.role_id = ""
        self.lagging: ClusterNode | None = None
        self.relay: LagRelay | None = None

    @classmethod
    def start(
        cls, workdir: Path, *, size: int = SIZE, performance_multiplier: int | None = None, lagging: bool = False
    ) -> RaftCluster:
        """Start, initialise, unseal and provision a `size`-node cluster; stops what it started on failure.

        `performance_multiplier` scales raft's timing (heartbeat and election
        timeouts); None keeps OpenBao's default (5), 1 is the fastest.
        `lagging` puts a delay relay on the last node's cluster address (no
        delay until set_lag()).
        """
        workdir.mkdir(parents=True, exist_ok=True)
        tls_dir = workdir / "tls"
        tls_dir.mkdir(exist_ok=True)
        authority = CertificateAuthority("certautopilot test cluster CA")
        server_cert = authority.issue_server("127.0.0.1", "localhost")
        ca_cert = tls_dir / "ca.pem"
        ca_cert.write_text(authority.cert_pem)
        cert, key = tls_dir / "server.pem", tls_dir / "server-key.pem"
        cert.write_text(server_cert.cert_pem)
        key.touch(mode=0o600)
        key.write_text(server_cert.key_pem)

        ports = free_ports(2 * size)
        relay = LagRelay(target_port=ports[-1]) if lagging else None
        nodes = [
            ClusterNode(
                name=f"node{index + 1}",
                workdir=workdir / f"node{index + 1}",
                api_port=ports[2 * index],
                cluster_port=ports[2 * index + 1],
                advertised_cluster_port=relay.port if relay and index == size - 1 else None,
            )
            for index in range(size)
        ]
        for node in nodes:
            node.write_config(
                peers=[peer for peer in nodes if peer is not node],
                ca_cert=str(ca_cert),
                cert=str(cert),
                key=str(key),
                performance_multiplier=performance_multiplier,
            )
        cluster = cls(workdir, nodes, str(ca_cert))
        if relay:
            cluster.relay, cluster.lagging = relay, nodes[-1]
        try:
            cluster._form()
            cluster._provision()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    # -- forming the cluster ------------------------------------------------

    def _form(self) -> None:
        first, *others = self.nodes
        first.server = BaoServer.start(
            first.workdir, first.config_path, addr=first.addr, ca_cert=self.ca_cert, initialize=True
        )
        self.unseal_key, self.root_token = first.server.unseal_key, first.server.root_token
        self._ok(
            first.server.api(
                "POST",
                "sys/storage/raft/autopilot/configuration",
                {"server_stabilization_time": STABILIZATION_TIME},
            ),
            "autopilot configuration",
        )
        for node in others:
            node.server = BaoServer.start(
                node.workdir, node.config_path, addr=node.addr, ca_cert=self.ca_cert, initialize=False
            )
            node.server.unseal_key, node.server.root_token = self.unseal_key, self.root_token
        for node in others:
            self._unseal_joining(node)
        self.wait_for_voters(len(self.nodes))

    def _unseal_joining(self, node: ClusterNode) -> None:
        # retry_join runs in the background; the unseal key answers the
        # leader's join challenge, and the node ends up an unsealed standby.
        deadline = time.monotonic() + FORM_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            if node.health() == HEALTH_STANDBY:
                return
            try:
                status, body = node.server.api("PUT", "sys/unseal", {"key": self.unseal_key}, token="", timeout=5)
                last = f"sys/unseal answered {status}: {body}"
            except Exception as exc:  # noqa: BLE001
                last = str(exc)
            time.sleep(0.3)
        raise BaoError(f"{node.name} did not join as an unsealed standby: {last}\n{node.server.log_tail()}")

    def raft_servers(self) -> list[dict[str, t.Any]]:
        """sys/storage/raft/configuration's servers, asked of the active node."""
        status, body = self.active().server.api("GET", "sys/storage/raft/configuration")
        self._ok((status, body), "raft configuration")
        return body["data"]["config"]["servers"]

    def wait_for_voters(self, count: int, *, timeout: float = FORM_TIMEOUT) -> None:
        """Until `count` raft peers are voters (autopilot promotes joiners after stabilisation)."""
        deadline = time.monotonic() + timeout
        servers: list[dict[str, t.Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(BaoError, OSError, KeyError, TypeError):
                servers = self.raft_servers()
                if sum(1 for server in servers if server.get("voter")) >= count:
                    return
            time.sleep(0.25)
        raise BaoError(f"raft peers did not become {count} voters within {timeout:.0f}s: {servers}")

    def _provision(self) -> None:
        """KV v2 at secret/, policy certs and AppRole role certs, as root on the active node."""
        server = self.active().server
        self._ok(server.api("POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}), "mount secret")
        self._ok(server.api("PUT", "sys/policies/acl/certs", {"policy": POLICIES["certs"]}), "policy certs")
        self._ok(server.api("POST", "sys/auth/approle", {"type": "approle"}), "enable approle")
        self._ok(
            server.api("POST", "auth/approle/role/certs", {**APPROLE_ROLES["certs"], "token_ttl": TOKEN_TTL}),
            "AppRole role certs",
        )
        self.role_id = server.approle_role_id("certs")
        self._wait_for_kv_upgrade("secret")

    def _wait_for_kv_upgrade(self, mount: str, *, timeout: float = FORM_TIMEOUT) -> None:
        # A new KV v2 mount answers 400 "Waiting for the primary to upgrade
        # from non-versioned to versioned data" on a standby until the
        # active node's upgrade marker has reached it.
        deadline = time.monotonic() + timeout
        pending = list(self.nodes)
        while pending and time.monotonic() < deadline:
            pending = [node for node in pending if node.server.api("GET", f"{mount}/data/kv-upgrade-probe")[0] != 404]
            if pending:
                time.sleep(0.2)
        if pending:
            raise BaoError(f"KV v2 mount {mount}/ not ready within {timeout:.0f}s on {pending}")

    # -- the cluster at work ------------------------------------------------

    def active(self) -> ClusterNode:
        """The node that answers sys/health as active (waits up to ELECTION_TIMEOUT for one)."""
        deadline = time.monotonic() + ELECTION_TIMEOUT
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.health() == HEALTH_ACTIVE:
                    return node
            time.sleep(0.1)
        raise BaoError(f"no active node within {ELECTION_TIMEOUT:.0f}s: {self.describe()}")

    def standbys(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.health() == HEALTH_STANDBY]

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL: the node says nothing to its peers, as in a crash or a power cut."""
        if node.alive:
            node.server.process.send_signal(signal.SIGKILL)
            node.server.process.wait(timeout=10)
        node.killed = True

    def restart(self, node: ClusterNode) -> None:
        """Start a killed node again from its config and raft data, and unseal it; it rejoins on its own."""
        if node.alive:
            return
        node.server = BaoServer.start(
            node.workdir, node.config_path, addr=node.addr, ca_cert=self.ca_cert, initialize=False
        )
        node.server.unseal_key, node.server.root_token = self.unseal_key, self.root_token
        node.server.unseal(wait=False)
        node.killed = False

    def wait_for_new_active(self, old: ClusterNode, *, timeout: float = ELECTION_TIMEOUT) -> tuple[ClusterNode, float]:
        """The node elected after `old` died, and the seconds from this call until it answered as active."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            for node in self.nodes:
                if node is not old and node.health() == HEALTH_ACTIVE:
                    return node, time.monotonic() - started
            time.sleep(0.1)
        raise BaoError(f"no new active node within {timeout:.0f}s of losing {old.name}: {self.describe()}")

    def new_approle_secret_id(self) -> str:
        status, body = self.active().server.api("POST", "auth/approle/role/certs/secret-id", {})
        self._ok((status, body), "secret-id for AppRole role certs")
        return body["data"]["secret_id"]

    def autopilot_state(self) -> dict[str, t.Any]:
        """sys/storage/raft/autopilot/state, asked of the active node: `healthy`, `voters`, `servers` by node id."""
        status, body = self.active().server.api("GET", "sys/storage/raft/autopilot/state", timeout=5)
        self._ok((status, body), "autopilot state")
        return body["data"]

    def healthy(self) -> bool:
        """Every node running, unsealed and answering; autopilot counts each a healthy voter."""
        if any(node.health() not in (HEALTH_ACTIVE, HEALTH_STANDBY) for node in self.nodes):
            return False
        try:
            state = self.autopilot_state()
        except (BaoError, OSError, KeyError, TypeError):
            return False
        servers = state.get("servers") or {}
        return (
            bool(state.get("healthy"))
            and len(state.get("voters") or []) == len(self.nodes)
            and all(servers.get(node.name, {}).get("healthy") for node in self.nodes)
        )

    def heal(self, *, timeout: float = HEAL_TIMEOUT) -> None:
        """Back to a cluster a test can start from: every node up and healthy, no lag.

        A test that kills nodes or adds lag leaves the cluster this way for the next one (one cluster serves a
        whole pytest session). Restarted nodes rejoin from their own raft data; nothing written is undone.
        """
        if self.relay is not None:
            self.relay.delay = 0.0
        for node in self.nodes:
            if not node.alive:
                self.restart(node)
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise BaoError(f"the cluster did not heal within {timeout:.0f}s: {self.describe()}")
            time.sleep(0.25)

    def make_standby(self, node: ClusterNode) -> None:
        """If `node` is the active node, make another one active (an election) and bring `node` back as a standby.

        With raft the active node is the raft leader, which a step-down leaves in place: the node is killed, the
        others elect a leader among themselves, and the node rejoins as a follower.
        """
        if node.health() != HEALTH_ACTIVE:
            return
        self.kill(node)
        self.wait_for_new_active(node)
        self.heal()

    def set_lag(self, seconds: float) -> None:
        """From now on the lagging node receives what the active node replicates `seconds` late."""
        if self.relay is None:
            raise BaoError("this cluster was started without lagging=True")
        self.relay.delay = seconds

    def describe(self) -> str:
        return ", ".join(f"{node.name}={node.health()}" for node in self.nodes)

    def stop(self) -> None:
        """Kill every node that is still running: nothing of the cluster outlives it.

        Not SIGTERM one by one: the last node waits for peers that are gone, about 10 s, before it exits.
        """
        for node in self.nodes:
            if node.server is not None:
                self.kill(node)
                node.server.stop()
        if self.relay is not None:
            self.relay.stop()

    @staticmethod
    def _ok(answer: tuple[int, t.Any], what: str) -> None:
        status, body = answer
        if status not in (200, 204):
            raise BaoError(f"{what}: HTTP {status}: {body}")
