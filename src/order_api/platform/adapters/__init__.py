"""The adapters door: the cache, pub-sub and Redis connection, each one interface with an
in-process and a Redis implementation. Other packages import these names from here only."""

from order_api.platform.adapters.cache import Cache, CacheDep, InProcessCache, RedisCache
from order_api.platform.adapters.pubsub import InProcessPubSub, PubSub, RedisPubSub
from order_api.platform.adapters.redis_connection import RedisDep, connect_redis, redis_pool

__all__ = [
    "Cache",
    "CacheDep",
    "InProcessCache",
    "InProcessPubSub",
    "PubSub",
    "RedisCache",
    "RedisDep",
    "RedisPubSub",
    "connect_redis",
    "redis_pool",
]
