"""A broker's membership of a KRaft cluster (Kafka's BrokerServer, the parts that face the other
nodes): what a node with `broker` in `process.roles` runs when `controller.quorum.voters` (or
`controller.quorum.bootstrap.servers`) names a controller.

- It registers with the controller and heartbeats (node/lifecycle.py), learns the metadata by
  fetching `__cluster_metadata` (metadata/loader.py), and hands every new image to the replica
  manager (replica/manager.py), which opens, leads and follows the partitions assigned here.
- One replica fetcher (replica/fetcher.py) runs per leader this node follows, each over its own
  connection, started when the first partition follows that leader and ended with the last.
- Requests that change metadata (CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs,
  IncrementalAlterConfigs, ElectLeaders, AlterPartitionReassignments; a Metadata request
  auto-creating a topic) go to the controller, as KRaft brokers forward them; the
  answer is given once this node's image has the change, so a client that asks again right
  after sees it.
- What clients are told of the cluster comes from the image: the topics, the live (unfenced)
  brokers with their address on the listener the client came in on, every partition's leader,
  leader epoch, replicas, ISR and offline replicas.

Every link to another node is a NodeChannel (node/channel.py) on `inter.broker.listener.name`
(the controller's: its listener in controller.quorum.voters), cut by the node's controls
(`isolate`) and slowed by them (`slow`, replica fetches only).
"""

import dataclasses
import logging
import uuid

import trio

from trioka.node.channel import NodeChannel
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.cluster")

# How long a metadata change forwarded to the controller may take to reach this node's image.
METADATA_PROPAGATION_TIMEOUT_S = 30.0


def controller_address(config) -> tuple[int, str, int]:
    """(node id, host, port) of the controller: the one voter of `controller.quorum.voters`
    (`id@host:port`), or the first of `controller.quorum.bootstrap.servers` (id -1)."""
    voters = [v.strip() for v in config.controller_quorum_voters.split(",") if v.strip()]
    if voters:
        if len(voters) > 1:
            raise ValueError(f"controller.quorum.voters lists {len(voters)} voters; trioka's "
                             f"quorum has exactly one (a multi-voter Raft quorum is out of scope)")
        node, _, address = voters[0].partition("@")
        host, _, port = address.rpartition(":")
        return int(node), host.strip("[]"), int(port)
    first = config.controller_quorum_bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return -1, host.strip("[]"), int(port)


@dataclasses.dataclass(frozen=True)
class ClusterTopic:
    """A topic as the metadata image has it, with the attributes handlers read of a topic."""
    name: str
    topic_id: uuid.UUID
    num_partitions: int
    configs: dict


@dataclasses.dataclass(frozen=True)
class PartitionView:
    """One partition as Metadata / DescribeTopicPartitions report it."""
    index: int
    leader: int
    leader_epoch: int
    replicas: list
    isr: list
    offline: list


class ClusterLink:
    def __init__(self, broker):
        from trioka.replica.manager import ReplicaManager
        self.broker = broker
        self.config = broker.config
        # Registration, heartbeats, metadata, replication: the liveness of the cluster, on real
        # time also when the broker's clock is virtual (broker.network_clock).
        self.clock = broker.network_clock
        self.node_id = broker.node_id
        self.controller_id, self.controller_host, self.controller_port = \
            controller_address(self.config)
        self.lifecycle = None
        self.loader = None
        self.replicas = ReplicaManager(
            node_id=self.node_id, logs=broker.logs, clock=self.clock, config=self.config,
            send_alter_partition=self._send_alter_partition, broker_epoch=self.broker_epoch)
        self._tls_contexts: dict = {}    # listener name -> client TLS context (tls_context)
        # listener name -> the broker's SASL login there (security/sasl/broker_login.py), for
        # the inter-broker and controller listeners that use SASL; a configuration that cannot
        # log in stops the node here (ValueError naming the key).
        from trioka.security.sasl.broker_login import cluster_logins
        self._sasl_logins = cluster_logins(self.config)
        self._alter_channel = self.controller_channel("alter-partition")
        self._admin_channel = self.controller_channel("forwarding")
        self._admin_lock = trio.Lock()
        self._forwarded = 0     # the correlation id of the last request forwarded in an Envelope
        self._fetchers: dict[int, trio.CancelScope] = {}
        self._image_changed = trio.Event()
        # Set once registered, caught up with the metadata and unfenced: clients may come.
        self.ready = trio.Event()

    # ---------------------------------------------------------------------------- channels

    def controller_channel(self, purpose: str) -> NodeChannel:
        names = sorted(self.controller_listener_names())
        return NodeChannel(self.controller_host, self.controller_port, clock=self.clock,
                           client_id=f"trioka-node-{self.node_id}-{purpose}",
                           request_timeout_ms=self.config.request_timeout_ms,
                           controls=self.broker.node_controls,
                           ssl_context=self.tls_context(names[0]) if names else None,
                           sasl=self._sasl_logins.get(names[0].upper()) if names else None)

    def broker_channel(self, broker_id: int, purpose: str) -> NodeChannel | None:
        """A channel to another broker's inter-broker listener, None while it is unknown."""
        image = self.image
        registration = image.brokers.get(broker_id) if image is not None else None
        if registration is None:
            return None
        name = self.inter_broker_listener_name()
        endpoint = registration.listeners.get(name) or next(iter(registration.listeners.values()),
                                                            None)
        if endpoint is None:
            return None
        return NodeChannel(endpoint.host, endpoint.port, clock=self.clock,
                           client_id=f"trioka-node-{self.node_id}-{purpose}",
                           request_timeout_ms=self.config.replica_socket_timeout_ms,
                           controls=self.broker.node_controls,
                           ssl_context=self.tls_context(name), sasl=self._sasl_logins.get(name))

    def inter_broker_listener_name(self) -> str:
        """inter.broker.listener.name, or the listener of security.inter.broker.protocol."""
        from trioka.config import inter_broker_listener
        return inter_broker_listener(self.config, self.broker.listeners)

    def tls_context(self, listener_name: str):
        """The client TLS context for reaching a node's `listener_name` listener when its
        protocol is SSL or SASL_SSL (this broker's keystore as its certificate, as Kafka
        brokers do), else None. Made once per listener name."""
        if self.security_protocol(listener_name) not in ("SSL", "SASL_SSL"):
            return None
        contexts = self._tls_contexts
        if listener_name not in contexts:
            from trioka.security.tls import client_context
            contexts[listener_name] = client_context(self.config, listener_name)
        return contexts[listener_name]

    def controller_listener_names(self) -> set[str]:
        return {n.strip() for n in self.config.controller_listener_names.split(",") if n.strip()}

    # ---------------------------------------------------------------------------- state

    @property
    def image(self):
        return self.loader.image if self.loader is not None else None

    def broker_epoch(self) -> int:
        return self.lifecycle.broker_epoch if self.lifecycle is not None else -1

    def _publish(self, image, records) -> None:
        # Dynamic broker configs first: the replicas read the defaults they make.
        self.broker.apply_dynamic_configs(image.broker_configs(""),
                                          image.broker_configs(str(self.node_id)))
        self.replicas.publish(image, records)
        # Client quotas (security/quotas.py) from the image's ClientQuotaRecords.
        self.broker.client_quotas.load_image(image.client_quotas)
        self._start_fetchers()
        # The renamed dirs of replicas no longer held here go in a worker thread.
        doomed = self.broker.logs.take_deleted_dirs()
        if doomed and self.broker.nursery is not None:
            self.broker.nursery.start_soon(self._remove_dirs, doomed)
        self._image_changed.set()
        self._image_changed = trio.Event()

    async def _remove_dirs(self, directories: list[str]) -> None:
        for directory in directories:
            await trio.to_thread.run_sync(self.broker.logs.files.remove_tree, directory)

    # ---------------------------------------------------------------------------- running

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Register, follow the metadata, replicate; until cancelled."""
        from trioka.metadata.loader import MetadataLoader
        from trioka.node.lifecycle import BrokerLifecycleManager
        if self.broker.logs.cluster_id_made_up:
            self.broker.logs.adopt_cluster_id(await self.controller_cluster_id())
        listeners = []
        controller_names = self.controller_listener_names()
        for listener in self.broker.listeners:
            if listener.name in controller_names:
                continue
            host, port = self.broker.advertised_address(listener)
            listeners.append((listener.name, host, port, self.security_protocol(listener.name)))
        self.loader = MetadataLoader(node_id=self.node_id, cluster_id=self.broker.cluster_id,
                                     channel=self.controller_channel("metadata"),
                                     clock=self.clock, publish=self._publish)
        self.lifecycle = BrokerLifecycleManager(
            node_id=self.node_id, cluster_id=self.broker.cluster_id, rack=self.broker.rack,
            listeners=listeners, channel=self.controller_channel("heartbeat"), clock=self.clock,
            heartbeat_interval_ms=self.config.broker_heartbeat_interval_ms,
            session_timeout_ms=self.config.broker_session_timeout_ms,
            metadata_offset=lambda: self.loader.next_offset - 1,
            features=self.supported_features())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.loader.run)
            nursery.start_soon(self.replicas.run_isr_expiration)
            nursery.start_soon(self.replicas.run_alter_partition_sender)
            await nursery.start(self.lifecycle.run)
            task_status.started()
            await self.lifecycle.unfenced.wait()
            await self.loader.caught_up.wait()
            self.ready.set()

    async def controller_cluster_id(self) -> str:
        """The cluster id the controller has (DescribeCluster on its listener), for a node whose
        fresh log dir has none configured; retried until the controller answers."""
        from trioka.wire.protocol import request_class
        Request = request_class(ApiKey.DESCRIBE_CLUSTER)
        channel = self.controller_channel("cluster-id")
        try:
            while True:
                try:
                    response = await channel.request(
                        ApiKey.DESCRIBE_CLUSTER,
                        Request(include_cluster_authorized_operations=False, endpoint_type=2))
                    if response.cluster_id:
                        return response.cluster_id
                except OSError as e:
                    log.info("node %d: waiting for the controller: %s", self.node_id, e)
                await self.clock.sleep(0.2)
        finally:
            await channel.aclose()

    def security_protocol(self, listener_name: str) -> str:
        from trioka.config import security_protocol_map
        return security_protocol_map(self.config).get(listener_name.upper(), listener_name)

    def supported_features(self) -> dict:
        from trioka.config import supported_features
        from trioka.metadata.records import METADATA_VERSION, METADATA_VERSION_LEVEL
        features = dict(supported_features(self.config))
        features[METADATA_VERSION] = (1, METADATA_VERSION_LEVEL)
        return features

    def _start_fetchers(self) -> None:
        nursery = self.broker.nursery
        if nursery is None:
            return
        for leader_id in self.replicas.leaders_followed():
            if leader_id not in self._fetchers:
                nursery.start_soon(self._run_fetcher, leader_id)

    async def _run_fetcher(self, leader_id: int) -> None:
        from trioka.replica.fetcher import ReplicaFetcher
        with trio.CancelScope() as scope:
            self._fetchers[leader_id] = scope
            channel = None
            try:
                while channel is None:
                    channel = self.broker_channel(leader_id, f"fetcher-{leader_id}")
                    if channel is None:
                        with self.clock.move_on_after(1.0):
                            await self._image_changed.wait()
                        if not self.replicas.follower_partitions(leader_id):
                            return
                fetcher = ReplicaFetcher(
                    node_id=self.node_id, leader_id=leader_id, channel=channel,
                    replicas=self.replicas, clock=self.clock, config=self.config,
                    broker_epoch=self.broker_epoch, controls=self.broker.node_controls)
                await fetcher.run()
            except Exception:
                log.exception("the fetcher of leader %d failed", leader_id)
            finally:
                if self._fetchers.get(leader_id) is scope:
                    del self._fetchers[leader_id]
                if channel is not None:
                    with trio.CancelScope(shield=True):
                        await channel.aclose()
        # Partitions may have come back to this leader meanwhile.
        if self.replicas.follower_partitions(leader_id) and leader_id not in self._fetchers \
                and self.broker.nursery is not None:
            await self.clock.sleep(self.config.replica_fetch_backoff_ms / 1000)
            self._start_fetchers()

    async def _send_alter_partition(self, request):
        return await self._alter_channel.request(ApiKey.ALTER_PARTITION, request)

    async def controlled_shutdown(self, timeout_s: float) -> None:
        """Kafka's controlled shutdown: ask the controller to move this node's leaderships away
        and wait (bounded) until it says the node may stop."""
        if self.lifecycle is not None:
            await self.lifecycle.controlled_shutdown(timeout_s)

    # ----------------------------------------------------------------- what clients see

    def topic(self, name: str) -> ClusterTopic | None:
        image = self.image
        topic = image.topic(name) if image is not None else None
        if topic is None:
            return None
        return ClusterTopic(topic.name, topic.topic_id, len(topic.partitions),
                            image.topic_configs(name))

    def topic_by_id(self, topic_id) -> ClusterTopic | None:
        image = self.image
        topic = image.topics.get(topic_id) if image is not None else None
        return None if topic is None else self.topic(topic.name)

    def topic_names(self) -> list[str]:
        image = self.image
        return sorted(image.topics_by_name) if image is not None else []

    def partitions_of(self, name: str, listener_name: str | None) -> list[PartitionView]:
        image = self.image
        topic = image.topic(name)
        out = []
        for index in sorted(topic.partitions):
            p = topic.partitions[index]
            out.append(PartitionView(index, p.leader, p.leader_epoch, list(p.replicas),
                                     list(p.isr), image.offline_replicas(p, listener_name)))
        return out

    def live_brokers(self, listener_name: str | None) -> list[tuple[int, str, int, str | None]]:
        """(id, host, port, rack) of the unfenced brokers with that listener (KRaft's
        metadata cache lists only those)."""
        return self.registered_brokers(listener_name, fenced=False)

    def registered_brokers(self, listener_name: str | None, *, fenced: bool
                           ) -> list[tuple[int, str, int, str | None]]:
        """(id, host, port, rack) of the registered brokers with that listener that are fenced
        (`fenced`) or not."""
        image = self.image
        out = []
        if image is None:
            return out
        for broker_id in sorted(image.brokers):
            registration = image.brokers[broker_id]
            if registration.fenced != fenced:
                continue
            endpoint = registration.listeners.get(listener_name) if listener_name else None
            if endpoint is None:
                if listener_name is not None:
                    continue
                endpoint = next(iter(registration.listeners.values()), None)
                if endpoint is None:
                    continue
            out.append((broker_id, endpoint.host, endpoint.port, registration.rack))
        return out

    def controller_id_for_clients(self) -> int:
        """Kafka's KRaft brokers tell clients a live broker as the controller (clients cannot
        reach the controller itself): the lowest id, so the answer is stable."""
        brokers = self.live_brokers(None)
        return brokers[0][0] if brokers else -1

    # ------------------------------------------------------------ changes via the controller

    async def forward(self, api_key: int, request, version: int | None = None, ctx=None):
        """Send a metadata-changing request to the controller (KRaft forwarding) at the version
        the client sent it; the answer, or KafkaError(REQUEST_TIMED_OUT) when the controller
        cannot be reached. With the client's RequestContext (`ctx`), the client's request goes
        in an Envelope that names the client (apis/envelope.py), and the client's connection is
        muted for the throttle time the controller answers (Kafka's sendForwardedResponse)."""
        from trioka.apis import envelope
        try:
            async with self._admin_lock:
                if ctx is None:
                    return await self._admin_channel.request(api_key, request, version=version)
                self._forwarded += 1
                wrapped = envelope.wrap(api_key, version, request, ctx, self._forwarded)
                answer = await self._admin_channel.request(ApiKey.ENVELOPE, wrapped, version=0)
        except OSError as e:
            raise KafkaError(ErrorCode.REQUEST_TIMED_OUT,
                             f"The controller could not be reached: {e}") from None
        response = envelope.unwrap(api_key, version, request, answer)
        from trioka.security.quotas import mute
        mute(self.broker, ctx, getattr(response, "throttle_time_ms", 0) or 0)
        return response

    async def wait_for_metadata(self, condition, timeout_s: float =
                                METADATA_PROPAGATION_TIMEOUT_S) -> bool:
        """Wait until `condition()` holds of this node's image (a change the controller made
        has reached it). False at the timeout."""
        deadline = self.clock.monotonic() + timeout_s
        while not condition():
            if self.clock.monotonic() >= deadline:
                return False
            event = self._image_changed
            with self.clock.move_on_at(deadline):
                await event.wait()
        return True

    async def create_topics(self, request, version: int | None = None, ctx=None):
        """CreateTopics, forwarded; answered once the topics created are in this node's image."""
        response = await self.forward(ApiKey.CREATE_TOPICS, request, version, ctx)
        if not request.validate_only:
            made = [t.name for t in response.topics if t.error_code == 0]
            await self.wait_for_metadata(
                lambda: all(self.image.topic(name) is not None for name in made))
        return response

    async def delete_topics(self, request, version: int | None = None, ctx=None):
        """DeleteTopics, forwarded; answered once the topics deleted are gone from the image."""
        response = await self.forward(ApiKey.DELETE_TOPICS, request, version, ctx)
        gone = [r.name for r in response.responses if r.error_code == 0 and r.name]
        await self.wait_for_metadata(
            lambda: all(self.image.topic(name) is None for name in gone))
        return response

    async def create_partitions(self, request, version: int | None = None, ctx=None):
        """CreatePartitions, forwarded; answered once the new partitions are in the image."""
        response = await self.forward(ApiKey.CREATE_PARTITIONS, request, version, ctx)
        if not request.validate_only:
            counts = {t.name: t.count for t in request.topics}
            grown = [r.name for r in response.results if r.error_code == 0]

            def arrived() -> bool:
                for name in grown:
                    topic = self.image.topic(name)
                    if topic is None or len(topic.partitions) < counts[name]:
                        return False
                return True
            await self.wait_for_metadata(arrived)
        return response

    def partition_in_image(self, topic_name: str, partition_index: int):
        image = self.image
        topic = image.topic(topic_name) if image is not None else None
        return topic.partitions.get(partition_index) if topic is not None else None

    async def alter_configs(self, api_key: int, request, expected: dict,
                            version: int | None = None):
        """IncrementalAlterConfigs / AlterConfigs, forwarded; answered once the image holds, for
        every resource altered, the values `expected` says ({(resource type, name): {config
        name: value, None for a config removed}})."""
        response = await self.forward(api_key, request, version)
        if not request.validate_only:
            done = [(r.resource_type, r.resource_name) for r in response.responses
                    if r.error_code == 0 and (r.resource_type, r.resource_name) in expected]

            def arrived() -> bool:
                for resource_type, name in done:
                    have = self.image.configs.get((resource_type, name), {})
                    if any(have.get(k) != v for k, v in expected[resource_type, name].items()):
                        return False
                return True
            await self.wait_for_metadata(arrived)
        return response

    async def elect_leaders(self, request, preferred: bool, version: int | None = None):
        """ElectLeaders, forwarded; answered once the image shows the leaders elected (the
        preferred replica, or any leader for an unclean election)."""
        response = await self.forward(ApiKey.ELECT_LEADERS, request, version)
        elected = [(t.topic, p.partition_id) for t in response.replica_election_results
                   for p in t.partition_result if p.error_code == 0]

        def arrived() -> bool:
            for topic, index in elected:
                partition = self.partition_in_image(topic, index)
                if partition is not None and not (partition.has_preferred_leader if preferred
                                                  else partition.has_leader):
                    return False
            return True
        await self.wait_for_metadata(arrived)
        return response

    async def alter_partition_reassignments(self, request, version: int | None = None):
        """AlterPartitionReassignments, forwarded; answered once the image shows each
        reassignment started (or completed), or cancelled."""
        response = await self.forward(ApiKey.ALTER_PARTITION_REASSIGNMENTS, request, version)
        targets = {(t.name, p.partition_index): p.replicas
                   for t in request.topics for p in t.partitions}
        changed = [(t.name, p.partition_index) for t in response.responses
                   for p in t.partitions if p.error_code == 0]

        def arrived() -> bool:
            for key in changed:
                partition = self.partition_in_image(*key)
                if partition is None:
                    continue
                target = targets.get(key)
                if target is None and partition.is_reassigning:
                    return False
                if target is not None and not set(target) <= set(partition.replicas):
                    return False
            return True
        await self.wait_for_metadata(arrived)
        return response

    async def list_partition_reassignments(self, request, version: int | None = None):
        """ListPartitionReassignments, answered by the controller (it knows the reassignments
        this node's image may not show yet)."""
        return await self.forward(ApiKey.LIST_PARTITION_REASSIGNMENTS, request, version)
