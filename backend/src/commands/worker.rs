//! `kokushi worker`: a GPU node's worker. It takes evaluation and tuning jobs from Redis and
//! carries them out with the engine (`kokushi_worker::Worker`) until Ctrl-C or SIGTERM; remote
//! models only when allowed, and then only at the addresses its flags allow.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kokushi_queue::RedisQueue;
use kokushi_worker::{Worker, WorkerConfig};

use super::flags::{CapacityArgs, DeviceArgs, ReliabilityArgs, WorkerBatchArgs, base_urls};
use super::serve::shutdown_signal;

#[derive(Args)]
pub struct WorkerArgs {
    #[arg(long, env = "KOKUSHI_REDIS_URL")]
    redis_url: String,
    #[arg(long, env = "KOKUSHI_QUEUE_PREFIX", default_value = "kokushi")]
    queue_prefix: String,
    #[arg(long, env = "KOKUSHI_MODEL_STORE", default_value = "models")]
    model_store: PathBuf,
    /// The name this worker goes by on the queue (default: host-pid).
    #[arg(long, env = "KOKUSHI_WORKER_NAME")]
    name: Option<String>,
    /// Let jobs name remote models (openai:<base-url>#<model>): off by default. Even then the
    /// worker calls only public addresses, and sends its API key to none, except as
    /// --remote-allow and --remote-allow-private say.
    #[arg(long, env = "KOKUSHI_REMOTE_MODELS")]
    remote_models: bool,
    /// A base URL the worker may call at any address and send its API key to (repeat, or
    /// separate with commas), e.g. https://api.example.org/v1.
    #[arg(
        long = "remote-allow",
        env = "KOKUSHI_REMOTE_ALLOW",
        value_delimiter = ',',
        value_name = "BASE_URL"
    )]
    remote_allow: Vec<String>,
    /// Also call remote models at loopback, private and link-local addresses that are not on
    /// --remote-allow (without the key).
    #[arg(long, env = "KOKUSHI_REMOTE_ALLOW_PRIVATE")]
    remote_allow_private: bool,
    /// The environment variable holding the API key for remote models.
    #[arg(long, default_value = "OPENAI_API_KEY", value_name = "NAME")]
    api_key_env: String,
    #[command(flatten)]
    reliability: ReliabilityArgs,
    /// Deliveries of one job after which it is given up as a dead letter (its run fails with
    /// the reason).
    #[arg(long, env = "KOKUSHI_MAX_ATTEMPTS", default_value_t = 3)]
    max_attempts: u32,
    #[command(flatten)]
    batch: WorkerBatchArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    capacity: CapacityArgs,
}

pub async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    // Before anything else: a node that cannot use its device must not take jobs.
    let device = args.device.resolve()?;
    let memory = args.capacity.bytes()?;
    let queue = Arc::new(
        RedisQueue::connect(&args.redis_url, &args.queue_prefix)
            .await?
            .with_visibility_timeout(Duration::from_secs(args.reliability.visibility_timeout)),
    );
    let name = args
        .name
        .unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let allow = base_urls("--remote-allow", &args.remote_allow)?;
    let worker = Worker::new(
        queue,
        WorkerConfig {
            name,
            model_store: args.model_store,
            poll: Duration::from_secs(2),
            remote: args
                .remote_models
                .then(|| kokushi_worker::remote::RemoteOptions {
                    api_key_env: Some(args.api_key_env),
                    policy: kokushi_worker::remote::RemotePolicy {
                        allow,
                        allow_private: args.remote_allow_private,
                    },
                    ..kokushi_worker::remote::RemoteOptions::default()
                }),
            visibility_timeout: Duration::from_secs(args.reliability.visibility_timeout),
            max_attempts: args.max_attempts,
            batch: usize::from(args.batch.worker_batch),
            device,
            memory,
        },
    );
    worker.run_until_stopped(shutdown_signal()).await;
    Ok(())
}
