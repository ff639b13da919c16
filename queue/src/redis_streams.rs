//! The Redis Streams transport: `{prefix}:jobs` read by the consumer group `workers`, and
//! `{prefix}:events` read by the consumer group `servers`. Each message carries its JSON in
//! the field `data`.

use std::time::Duration;

use async_trait::async_trait;
use kokushi_shared::job::{EvalJob, WorkerEvent};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::{Delivery, JobQueue, QueueError, Receipt};

const JOB_GROUP: &str = "workers";
const EVENT_GROUP: &str = "servers";

/// A queue on Redis Streams.
pub struct RedisQueue {
    /// The URL without credentials, for messages.
    shown_url: String,
    jobs_key: String,
    events_key: String,
    /// For commands that answer at once.
    conn: MultiplexedConnection,
    /// Blocking reads hold a connection for as long as they wait, so they get their own and
    /// never delay a publish.
    blocking: Mutex<MultiplexedConnection>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("url", &self.shown_url)
            .field("jobs_key", &self.jobs_key)
            .finish_non_exhaustive()
    }
}

/// `redis://user:secret@host/0` → `redis://host/0`, so logs never carry a password.
fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl RedisQueue {
    /// Connects and creates the streams and consumer groups if they do not exist yet.
    /// `prefix` namespaces the keys (tests use a fresh one each).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let shown_url = without_credentials(url);
        let err = |source| QueueError::Redis {
            url: shown_url.clone(),
            source,
        };
        let client = redis::Client::open(url).map_err(err)?;
        let config =
            redis::AsyncConnectionConfig::new().set_connection_timeout(Duration::from_secs(5));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(err)?;
        let blocking = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(err)?;
        let jobs_key = format!("{prefix}:jobs");
        let events_key = format!("{prefix}:events");
        for (key, group) in [(&jobs_key, JOB_GROUP), (&events_key, EVENT_GROUP)] {
            // Start the group at the beginning of the stream so that messages published before
            // the first reader connected are still delivered.
            let created: Result<(), redis::RedisError> =
                conn.xgroup_create_mkstream(key, group, "0").await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(err(e)),
            }
        }
        Ok(Self {
            shown_url,
            jobs_key,
            events_key,
            conn,
            blocking: Mutex::new(blocking),
        })
    }

    fn err(&self, source: redis::RedisError) -> QueueError {
        QueueError::Redis {
            url: self.shown_url.clone(),
            source,
        }
    }

    async fn add<T: serde::Serialize>(&self, key: &str, item: &T) -> Result<(), QueueError> {
        // Serialising our own types cannot fail; if it ever did, the message would be empty
        // and the reader would report it as malformed.
        let data = serde_json::to_string(item).unwrap_or_default();
        let mut conn = self.conn.clone();
        let _id: String = conn
            .xadd(key, "*", &[("data", data)])
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn read<T: DeserializeOwned>(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        wait: Duration,
        max: usize,
        kind: &'static str,
    ) -> Result<Vec<Delivery<T>>, QueueError> {
        let mut opts = StreamReadOptions::default()
            .group(group, consumer)
            .count(max);
        if !wait.is_zero() {
            opts = opts.block(usize::try_from(wait.as_millis()).unwrap_or(usize::MAX));
        }
        let mut conn = self.blocking.lock().await;
        let reply: Option<StreamReadReply> = conn
            .xread_options(&[key], &[">"], &opts)
            .await
            .map_err(|e| self.err(e))?;
        drop(conn);
        let mut out = Vec::new();
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in stream.ids {
                let data: String = entry.get("data").unwrap_or_default();
                let item = serde_json::from_str(&data).map_err(|source| QueueError::Malformed {
                    stream: key.to_owned(),
                    id: entry.id.clone(),
                    kind,
                    source,
                })?;
                out.push(Delivery {
                    item,
                    receipt: Receipt(entry.id),
                });
            }
        }
        Ok(out)
    }

    async fn ack(&self, key: &str, group: &str, receipts: &[Receipt]) -> Result<(), QueueError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = receipts.iter().map(|r| r.0.as_str()).collect();
        let mut conn = self.conn.clone();
        let _acked: i64 = conn.xack(key, group, &ids).await.map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[async_trait]
impl JobQueue for RedisQueue {
    async fn publish_job(&self, job: &EvalJob) -> Result<(), QueueError> {
        self.add(&self.jobs_key, job).await
    }

    async fn claim_job(
        &self,
        consumer: &str,
        wait: Duration,
    ) -> Result<Option<Delivery<EvalJob>>, QueueError> {
        let key = self.jobs_key.clone();
        let jobs = self.read(&key, JOB_GROUP, consumer, wait, 1, "job").await?;
        Ok(jobs.into_iter().next())
    }

    async fn ack_job(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.ack(&self.jobs_key, JOB_GROUP, std::slice::from_ref(receipt))
            .await
    }

    async fn publish_event(&self, event: &WorkerEvent) -> Result<(), QueueError> {
        self.add(&self.events_key, event).await
    }

    async fn read_events(
        &self,
        consumer: &str,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Delivery<WorkerEvent>>, QueueError> {
        let key = self.events_key.clone();
        self.read(&key, EVENT_GROUP, consumer, wait, max, "worker event")
            .await
    }

    async fn ack_events(&self, receipts: &[Receipt]) -> Result<(), QueueError> {
        self.ack(&self.events_key, EVENT_GROUP, receipts).await
    }

    fn describe(&self) -> String {
        format!("redis streams at {} ({})", self.shown_url, self.jobs_key)
    }
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn credentials_never_reach_a_message() {
        assert_eq!(
            without_credentials("redis://user:secret@10.0.0.1:6379/0"),
            "redis://10.0.0.1:6379/0"
        );
        assert_eq!(
            without_credentials("redis://127.0.0.1/"),
            "redis://127.0.0.1/"
        );
    }
}
