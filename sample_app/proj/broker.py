"""kombu's Redis transport with a failover fix (CELERY_BROKER_TRANSPORT, docs/failover.md).

A worker takes a message off its queue (BRPOP), then records it as unacknowledged with a second
write. When the primary stops answering between the two, that write fails and the message is in
no queue and no unacked set: lost for good. Here the record is retried through new connections,
which reach the new primary once the endpoint's name has moved. Only that write is retried: a
client-wide retry (redis-py's retry_on_timeout) also retries the health check of the worker's
BRPOP connection, reconnecting it under kombu, which then never reads the message it popped.
"""

import logging
import time

from kombu.transport import redis
from redis.exceptions import ConnectionError, TimeoutError

logger = logging.getLogger(__name__)

# How long a failover takes to move the name: each attempt on the silent old primary waits out
# socket_timeout (5 s); ElastiCache moves the name within seconds of the promotion.
RECORD_RETRY_SECONDS = 30.0


class QoS(redis.QoS):
    def append(self, message, delivery_tag):
        deadline = time.monotonic() + RECORD_RETRY_SECONDS
        while True:
            try:
                return super().append(message, delivery_tag)
            except (ConnectionError, TimeoutError) as error:
                # Both writes (ZADD, HSET) are idempotent: one that went through is harmless.
                if time.monotonic() >= deadline:
                    raise
                logger.warning("Recording message %s as unacked failed (%r); retrying", delivery_tag, error)
                time.sleep(1.0)


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
