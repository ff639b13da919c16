//! The Redis Streams transport: `{prefix}:jobs` read by the consumer group `workers`, and
//! `{prefix}:events` read by the consumer group `servers`. Each message carries its JSON in
//! the field `data`. Beside them: `{prefix}:answered:{job_id}`, the set of problem ids whose
//! answers a job's workers have published (written in one transaction with the answer's
//! event), and `{prefix}:epoch`, a random value whose disappearance means Redis lost its data.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kokushi_shared::job::{Job, Priority, WorkerEvent};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimReply, StreamPendingCountReply, StreamReadOptions, StreamReadReply,
};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::{Delivery, JobQueue, QueueError, Receipt};

const JOB_GROUP: &str = "workers";
const EVENT_GROUP: &str = "servers";
/// What a receipt of the urgent lane starts with.
const URGENT_RECEIPT: &str = "high/";
/// Between a job receipt's stream key and its entry id (no key contains it).
const STREAM_SEPARATOR: char = '\u{1f}';
/// How often a claim looks at every stream it reads (one script call) while it waits for a job.
const CLAIM_POLL: Duration = Duration::from_millis(250);
/// How long a job's answered set (or cancellation) outlives its last write.
const ANSWERED_TTL_SECS: i64 = 7 * 24 * 3600;

/// A queue on Redis Streams.
pub struct RedisQueue {
    /// The URL without credentials, for messages.
    shown_url: String,
    prefix: String,
    jobs_key: String,
    /// The lane of `high` jobs, read before `jobs_key`.
    urgent_key: String,
    events_key: String,
    epoch_key: String,
    /// A job or event unacknowledged for this long is taken over from its consumer.
    visibility: Duration,
    /// Whether pending events of earlier server processes have been swept once.
    events_swept: AtomicBool,

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
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(err)?;
        let blocking = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(err)?;
        let queue = Self {
            shown_url,
            prefix: prefix.to_owned(),
            jobs_key: format!("{prefix}:jobs"),
            urgent_key: format!("{prefix}:jobs:high"),
            events_key: format!("{prefix}:events"),
            epoch_key: format!("{prefix}:epoch"),
            visibility: crate::DEFAULT_VISIBILITY_TIMEOUT,
            events_swept: AtomicBool::new(false),
            conn: conn.clone(),
            blocking: Mutex::new(blocking),
        };
        // The epoch is left to servers ([`JobQueue::lost_messages`]): a worker that connected
        // after a loss must not hide it by setting one.
        queue.ensure_groups().await?;
        Ok(queue)
    }

    /// Sets how long a claimed job (or a delivered event) may go unacknowledged without a
    /// heartbeat before another consumer takes it over.
    pub fn with_visibility_timeout(mut self, visibility: Duration) -> Self {
        self.visibility = visibility;
        self
    }

    /// Creates the streams and consumer groups if they do not exist (at start, and again after
    /// Redis lost them).
    async fn ensure_groups(&self) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let mut streams: Vec<(String, &str)> = self
            .all_job_keys()
            .into_iter()
            .map(|key| (key, JOB_GROUP))
            .collect();
        streams.push((self.events_key.clone(), EVENT_GROUP));
        for (key, group) in &streams {
            let (key, group) = (key.as_str(), *group);
            // Start the group at the beginning of the stream so that messages published before
            // the first reader connected are still delivered.
            let created: Result<(), redis::RedisError> =
                conn.xgroup_create_mkstream(key, group, "0").await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        Ok(())
    }

    fn answered_key(&self, job_id: i64) -> String {
        format!("{}:answered:{job_id}", self.prefix)
    }

    fn worker_key(&self, name: &str) -> String {
        format!("{}:worker:{name}", self.prefix)
    }

    fn cancelled_key(&self, job_id: i64) -> String {
        format!("{}:cancelled:{job_id}", self.prefix)
    }

    /// The stream jobs of `priority` and memory class `class` wait in: the two lanes of old
    /// for class 0, a stream beside each for every other class (`{lane}:m24` for the 24 GiB
    /// class, `{lane}:more` past the last).
    fn job_key(&self, priority: Priority, class: usize) -> String {
        let lane = match priority {
            Priority::High => &self.urgent_key,
            Priority::Normal => &self.jobs_key,
        };
        match crate::MEMORY_CLASSES_GIB.get(class) {
            Some(0) => lane.clone(),
            Some(gib) => format!("{lane}:m{gib}"),
            None => format!("{lane}:more"),
        }
    }

    /// Every job stream: urgent lanes first, each lane's classes largest first.
    fn all_job_keys(&self) -> Vec<String> {
        self.job_keys_within(u64::MAX)
    }

    /// The job streams a worker holding `capacity` bytes reads, in the order it reads them:
    /// urgent before normal, and in each the largest class first.
    fn job_keys_within(&self, capacity: u64) -> Vec<String> {
        let classes = crate::classes_within(capacity);
        [Priority::High, Priority::Normal]
            .into_iter()
            .flat_map(|p| classes.iter().map(move |&c| (p, c)))
            .map(|(p, c)| self.job_key(p, c))
            .collect()
    }

    /// A job receipt names its stream: `<stream key>␟<id>`; the older forms `high/<id>` (the
    /// urgent lane) and `<id>` (the normal lane) are still understood.
    fn job_stream<'r>(&self, receipt: &'r Receipt) -> (String, &'r str) {
        if let Some((key, id)) = receipt.0.split_once(STREAM_SEPARATOR) {
            return (key.to_owned(), id);
        }
        match receipt.0.strip_prefix(URGENT_RECEIPT) {
            Some(id) => (self.urgent_key.clone(), id),
            None => (self.jobs_key.clone(), &receipt.0),
        }
    }

    fn mark_stream(key: &str, deliveries: &mut [Delivery<Job>]) {
        for d in deliveries {
            d.receipt = Receipt(format!("{key}{STREAM_SEPARATOR}{}", d.receipt.0));
        }
    }

    /// Parses stream entries into deliveries.
    fn deliveries<T: DeserializeOwned>(
        key: &str,
        kind: &'static str,
        entries: Vec<redis::streams::StreamId>,
    ) -> Result<Vec<Delivery<T>>, QueueError> {
        entries
            .into_iter()
            .map(|entry| {
                let data: String = entry.get("data").unwrap_or_default();
                let item = serde_json::from_str(&data).map_err(|source| QueueError::Malformed {
                    stream: key.to_owned(),
                    id: entry.id.clone(),
                    kind,
                    source,
                })?;
                Ok(Delivery {
                    item,
                    receipt: Receipt(entry.id),
                    attempt: 1,
                })
            })
            .collect()
    }

    /// Takes over up to `max` messages pending longer than `min_idle` with other consumers.
    async fn autoclaim<T: DeserializeOwned>(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
        kind: &'static str,
    ) -> Result<Vec<Delivery<T>>, QueueError> {
        let mut conn = self.conn.clone();
        let reply: Result<StreamAutoClaimReply, redis::RedisError> = redis::cmd("XAUTOCLAIM")
            .arg(key)
            .arg(group)
            .arg(consumer)
            .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
            .arg("0-0")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut conn)
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_groups().await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Self::deliveries::<T>(key, kind, reply.claimed)?;
        for delivery in &mut out {
            let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(key)
                .arg(group)
                .arg(&delivery.receipt.0)
                .arg(&delivery.receipt.0)
                .arg(1)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            delivery.attempt = pending
                .ids
                .first()
                .map_or(1, |p| u32::try_from(p.times_delivered).unwrap_or(u32::MAX));
        }
        Ok(out)
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
        let reply: Result<Option<StreamReadReply>, redis::RedisError> =
            conn.xread_options(&[key], &[">"], &opts).await;
        drop(conn);
        let reply = match reply {
            Ok(reply) => reply,
            // The group is gone with Redis's data: make it again; the next read gets what comes.
            Err(e) if e.code() == Some("NOGROUP") => {
                tracing::warn!(
                    stream = key,
                    "consumer group missing (Redis lost its data?); recreating it"
                );
                self.ensure_groups().await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            out.extend(Self::deliveries(key, kind, stream.ids)?);
        }
        Ok(out)
    }

    /// The first new job of `keys`, read in their order, one entry at most: one round trip
    /// (a script reading each stream in turn until one has an entry).
    async fn read_first(
        &self,
        keys: &[String],
        consumer: &str,
    ) -> Result<Option<Delivery<Job>>, QueueError> {
        static READ_FIRST: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "for _, key in ipairs(KEYS) do \
                   local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], \
                                            'COUNT', 1, 'STREAMS', key, '>') \
                   if reply then return reply end \
                 end \
                 return false",
            )
        });
        let mut invocation = READ_FIRST.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        invocation.arg(JOB_GROUP).arg(consumer);
        let mut conn = self.conn.clone();
        let reply: Result<Option<StreamReadReply>, redis::RedisError> =
            invocation.invoke_async(&mut conn).await;
        let reply = match reply {
            Ok(reply) => reply,
            // The group is gone with Redis's data: make it again; the next read gets what comes.
            Err(e) if e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP") => {
                tracing::warn!("consumer group missing (Redis lost its data?); recreating it");
                self.ensure_groups().await?;
                return Ok(None);
            }
            Err(e) => return Err(self.err(e)),
        };
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            let mut jobs = Self::deliveries(&stream.key, "job", stream.ids)?;
            Self::mark_stream(&stream.key, &mut jobs);
            if let Some(job) = jobs.into_iter().next() {
                return Ok(Some(job));
            }
        }
        Ok(None)
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
    async fn publish_job(&self, job: &Job) -> Result<(), QueueError> {
        // A job published (again) carries exactly the questions the database still lacks:
        // answers noted for an earlier delivery no longer apply.
        let data = serde_json::to_string(job).unwrap_or_default();
        let lane = &self.job_key(job.priority(), crate::memory_class(job.needs().memory));
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .del(self.answered_key(job.job_id()))
            .ignore()
            .xadd(lane, "*", &[("data", data)])
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn claim_job_within(
        &self,
        consumer: &str,
        wait: Duration,
        capacity: u64,
    ) -> Result<Option<Delivery<Job>>, QueueError> {
        // One stream at a time, one entry at most: reading several streams in one XREADGROUP
        // could deliver an entry from each, claiming jobs this worker will not run.
        let keys = self.job_keys_within(capacity);
        // First a job whose worker stopped heartbeating, then a new one; high before normal.
        for key in &keys {
            let mut orphaned = self
                .autoclaim(key, JOB_GROUP, consumer, self.visibility, 1, "job")
                .await?;
            Self::mark_stream(key, &mut orphaned);
            if let Some(job) = orphaned.into_iter().next() {
                return Ok(Some(job));
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(job) = self.read_first(&keys, consumer).await? {
                return Ok(Some(job));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep((deadline - now).min(CLAIM_POLL)).await;
        }
    }

    async fn cancel_job(&self, job_id: i64, attempt: u32) -> Result<(), QueueError> {
        // The key holds the latest attempt cancelled. Attempts only grow, and a job's cancel
        // names its current attempt, so setting it is enough.
        let mut conn = self.conn.clone();
        let _: () = conn
            .set_ex(
                self.cancelled_key(job_id),
                attempt,
                ANSWERED_TTL_SECS.unsigned_abs(),
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn is_cancelled(&self, job_id: i64, attempt: u32) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let latest: Option<String> = conn
            .get(self.cancelled_key(job_id))
            .await
            .map_err(|e| self.err(e))?;
        // A key written before attempts were counted holds "1": the first attempt.
        Ok(latest
            .and_then(|v| v.trim().parse::<u32>().ok())
            .is_some_and(|latest| latest >= attempt))
    }

    async fn heartbeat_job(&self, consumer: &str, receipt: &Receipt) -> Result<(), QueueError> {
        // XCLAIM to oneself resets the message's idle time; JUSTID leaves its delivery count.
        let (stream, id) = self.job_stream(receipt);
        let mut conn = self.conn.clone();
        let _: Vec<String> = redis::cmd("XCLAIM")
            .arg(stream)
            .arg(JOB_GROUP)
            .arg(consumer)
            .arg(0)
            .arg(id)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn release_job(&self, consumer: &str, receipt: &Receipt) -> Result<(), QueueError> {
        // The message stays pending with this consumer but looks idle for weeks, so the next
        // XAUTOCLAIM (whatever its visibility timeout) hands it to another worker.
        let (stream, id) = self.job_stream(receipt);
        let mut conn = self.conn.clone();
        let _: Vec<String> = redis::cmd("XCLAIM")
            .arg(stream)
            .arg(JOB_GROUP)
            .arg(consumer)
            .arg(0)
            .arg(id)
            .arg("IDLE")
            .arg(u64::from(u32::MAX))
            .arg("JUSTID")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn answered(&self, job_id: i64) -> Result<HashSet<String>, QueueError> {
        let mut conn = self.conn.clone();
        conn.smembers(self.answered_key(job_id))
            .await
            .map_err(|e| self.err(e))
    }

    async fn report_worker(
        &self,
        info: &kokushi_shared::api::WorkerInfo,
        ttl: Duration,
    ) -> Result<(), QueueError> {
        let data = serde_json::to_string(info).unwrap_or_default();
        let mut conn = self.conn.clone();
        let _: () = conn
            .set_ex(self.worker_key(&info.name), data, ttl.as_secs().max(1))
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<kokushi_shared::api::WorkerInfo>, QueueError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:worker:*", self.prefix);
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        keys.sort();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        // An entry that expired between SCAN and MGET is simply gone; a malformed one is skipped.
        Ok(values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_str(&v).ok())
            .collect())
    }

    async fn lost_messages(&self) -> Result<bool, QueueError> {
        // No epoch: Redis is new, or lost its data since a server last set one. The server whose
        // SET NX wins re-publishes; the others see its epoch from then on.
        let mut conn = self.conn.clone();
        let current: Option<String> = conn.get(&self.epoch_key).await.map_err(|e| self.err(e))?;
        if current.is_some() {
            return Ok(false);
        }
        self.ensure_groups().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(&self.epoch_key)
            .arg(new_epoch())
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(set.is_some())
    }

    async fn ack_job(&self, receipt: &Receipt) -> Result<(), QueueError> {
        let (stream, id) = self.job_stream(receipt);
        self.ack(&stream, JOB_GROUP, &[Receipt(id.to_owned())])
            .await
    }

    async fn publish_event(&self, event: &WorkerEvent) -> Result<(), QueueError> {
        let Some((job_id, problem_id)) = event.answered() else {
            return self.add(&self.events_key, event).await;
        };
        // The answer and the note that it exists go together or not at all, so a worker that
        // takes the job over neither repeats nor skips a question.
        let data = serde_json::to_string(event).unwrap_or_default();
        let answered = self.answered_key(job_id);
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .xadd(&self.events_key, "*", &[("data", data)])
            .ignore()
            .sadd(&answered, problem_id)
            .ignore()
            .expire(&answered, ANSWERED_TTL_SECS)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn read_events(
        &self,
        consumer: &str,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Delivery<WorkerEvent>>, QueueError> {
        let key = self.events_key.clone();
        // Events delivered to a server that stopped before acknowledging them: at the first
        // read all of them (ingestion is idempotent), afterwards those idle too long.
        let min_idle = if self.events_swept.swap(true, Ordering::Relaxed) {
            self.visibility
        } else {
            Duration::ZERO
        };
        let orphaned = self
            .autoclaim(&key, EVENT_GROUP, consumer, min_idle, max, "worker event")
            .await?;
        if !orphaned.is_empty() {
            return Ok(orphaned);
        }
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

/// A value that differs between processes and instants.
fn new_epoch() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}", std::process::id())
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
