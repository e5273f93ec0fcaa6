//! The suite every layer passes, on Redis.

use presence::layer::conformance::{self, Cluster};
use presence::layer::LayerConfig;
use presence_redis::RedisLayer;

use crate::support::{config, node, RedisServer};

struct RedisCluster {
    server: RedisServer,
}

impl Cluster for RedisCluster {
    type Node = RedisLayer;

    async fn node(&self) -> RedisLayer {
        node(&self.server, "conformance")
    }

    async fn crash(&self, node: RedisLayer) {
        node.crash().await;
    }

    fn config(&self) -> LayerConfig {
        config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_layer_conforms() {
    conformance::run(RedisCluster { server: RedisServer::start() }).await;
}
