//! Sign-in throttling: attempts counted per address, per (address, account) and per account
//! over a sliding window, each counted **when it starts** (so a burst sent in parallel cannot
//! slip past the limit while its checks run), an exponential back-off on an account that fails
//! from many addresses, and a cap on password checks running at once (argon2id costs memory and
//! CPU by design; an unbounded number of them is a way to stop a server).
//!
//! Kept in memory: each API node limits on its own, and a restart forgets (docs/accounts.md).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Attempts remembered per address, per (address, account) and per account.
#[derive(Debug)]
pub struct LoginLimiter {
    windows: Mutex<HashMap<String, VecDeque<Instant>>>,
    checks: Arc<Semaphore>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CONCURRENT_CHECKS)
    }
}

/// A sign-in attempt that has been counted; hand it back to [`LoginLimiter::succeeded`] when
/// the password was right. A failed attempt is simply dropped: it stays counted.
#[derive(Debug)]
pub struct Attempt {
    keys: [String; 3],
    at: Instant,
}

impl LoginLimiter {
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);
    /// Attempts that may fail for one account from one address within the window.
    pub const PER_ACCOUNT: usize = 5;
    /// Attempts that may fail from one address within the window, whatever the account.
    pub const PER_ADDRESS: usize = 30;
    /// Failures of one account, from any addresses, before each further attempt waits: 1 s
    /// after the 10th, then 2, 4, … up to [`LoginLimiter::MAX_BACKOFF`].
    pub const ACCOUNT_FREE: usize = 10;
    pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
    /// Password checks (argon2id) running at once by default.
    pub const DEFAULT_CONCURRENT_CHECKS: usize = 4;
    /// Keys kept at most; beyond, the half least recently used is dropped.
    const MAX_KEYS: usize = 100_000;

    /// A limiter that lets `concurrent_checks` password checks run at once.
    pub fn new(concurrent_checks: usize) -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
            checks: Arc::new(Semaphore::new(concurrent_checks.max(1))),
        }
    }

    fn keys(addr: Option<IpAddr>, username: &str) -> [String; 3] {
        // An IPv6 client holds a whole /64 (as an IPv4 client holds one address): one key for it.
        let addr = match addr {
            None => "?".to_owned(),
            Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
                let net = u128::from(v6) & (u128::MAX << 64);
                format!("{}/64", std::net::Ipv6Addr::from(net))
            }
            Some(IpAddr::V6(v6)) => v6
                .to_ipv4_mapped()
                .map_or_else(String::new, |v4| v4.to_string()),
            Some(v4) => v4.to_string(),
        };
        [
            format!("p {addr} {username}"),
            format!("a {addr}"),
            format!("u {username}"),
        ]
    }

    /// A permit to run one password check, or `None` while as many run as allowed.
    pub fn permit(&self) -> Option<OwnedSemaphorePermit> {
        self.checks.clone().try_acquire_owned().ok()
    }

    /// Counts an attempt to sign in as `username` from `addr`, or refuses it with the seconds
    /// to wait while a limit is reached.
    pub fn begin(&self, addr: Option<IpAddr>, username: &str) -> Result<Attempt, u64> {
        let now = Instant::now();
        let keys = Self::keys(addr, username);
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for key in &keys {
            if let Some(times) = map.get_mut(key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= Self::WINDOW)
                {
                    times.pop_front();
                }
            }
        }
        let count = |key: &String| map.get(key).map_or(0, VecDeque::len);
        let until_oldest_expires = |key: &String| {
            map.get(key).and_then(|t| t.front()).map_or(1, |oldest| {
                Self::WINDOW
                    .saturating_sub(now.duration_since(*oldest))
                    .as_secs()
                    .max(1)
            })
        };
        let [pair, address, account] = &keys;
        if count(pair) >= Self::PER_ACCOUNT {
            return Err(until_oldest_expires(pair));
        }
        if count(address) >= Self::PER_ADDRESS {
            return Err(until_oldest_expires(address));
        }
        let failures = count(account);
        if failures >= Self::ACCOUNT_FREE {
            let exponent = u32::try_from(failures - Self::ACCOUNT_FREE)
                .unwrap_or(u32::MAX)
                .min(16);
            let backoff = Duration::from_secs(1u64 << exponent).min(Self::MAX_BACKOFF);
            let last = map.get(account).and_then(|t| t.back()).copied();
            if let Some(last) = last {
                let since = now.duration_since(last);
                if since < backoff {
                    return Err((backoff - since).as_secs().max(1));
                }
            }
        }
        if map.len() + keys.len() > Self::MAX_KEYS {
            Self::evict(&mut map, now);
        }
        for key in &keys {
            map.entry(key.clone()).or_default().push_back(now);
        }
        Ok(Attempt { keys, at: now })
    }

    /// The password was right: that account's counts are cleared, and the attempt no longer
    /// counts against its address.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let [pair, address, account] = &attempt.keys;
        map.remove(pair);
        map.remove(account);
        if let Some(times) = map.get_mut(address)
            && let Some(i) = times.iter().rposition(|t| *t == attempt.at)
        {
            times.remove(i);
        }
    }

    /// Drops expired windows, then, if still too many, half of the keys: those of addresses
    /// before those of accounts, and among them the ones with the fewest attempts first — so
    /// that churning through fresh addresses and names cannot flush an account's back-off.
    fn evict(map: &mut HashMap<String, VecDeque<Instant>>, now: Instant) {
        map.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.duration_since(*t) < Self::WINDOW)
        });
        if map.len() < Self::MAX_KEYS / 2 {
            return;
        }
        let mut ranked: Vec<(bool, usize, Instant, String)> = map
            .iter()
            .map(|(key, times)| {
                (
                    key.starts_with("u "),
                    times.len(),
                    times.back().copied().unwrap_or(now),
                    key.clone(),
                )
            })
            .collect();
        ranked.sort_unstable();
        for (_, _, _, key) in ranked.iter().take(ranked.len() / 2) {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    #[test]
    fn the_limiter_refuses_after_too_many_attempts_and_forgets_on_success() {
        let limiter = LoginLimiter::default();
        let here = addr("127.0.0.1");
        for _ in 0..LoginLimiter::PER_ACCOUNT {
            drop(limiter.begin(here, "alice").expect("allowed"));
        }
        let wait = limiter.begin(here, "alice").expect_err("limited");
        assert!((1..=900).contains(&wait), "{wait}");
        let bob = limiter
            .begin(here, "bob")
            .expect("other accounts still may");
        limiter.succeeded(bob);
        // A success clears the account's counts (here: bob's, from another address too).
        let other = addr("10.0.0.9");
        let alice_elsewhere = limiter.begin(other, "alice").expect("another address may");
        limiter.succeeded(alice_elsewhere);
        assert!(
            limiter.begin(here, "alice").is_err(),
            "the pair window stays"
        );
    }

    #[test]
    fn attempts_count_when_they_start_not_when_they_fail() {
        // Five attempts in flight at once (none has failed yet): the sixth waits.
        let limiter = LoginLimiter::default();
        let here = addr("192.0.2.1");
        let in_flight: Vec<Attempt> = (0..LoginLimiter::PER_ACCOUNT)
            .map(|_| limiter.begin(here, "carol").expect("allowed"))
            .collect();
        assert!(limiter.begin(here, "carol").is_err());
        drop(in_flight);
    }

    #[test]
    fn an_account_failing_from_many_addresses_backs_off() {
        let limiter = LoginLimiter::default();
        for i in 0..LoginLimiter::ACCOUNT_FREE {
            let from = addr(&format!("198.51.100.{i}"));
            drop(limiter.begin(from, "dave").expect("the first ten are free"));
        }
        let wait = limiter
            .begin(addr("203.0.113.7"), "dave")
            .expect_err("the eleventh waits, from a new address too");
        assert!((1..=1).contains(&wait), "{wait}");
        assert!(limiter.begin(addr("203.0.113.7"), "erin").is_ok());
    }

    #[test]
    fn an_address_is_limited_whatever_the_accounts() {
        let limiter = LoginLimiter::default();
        let here = addr("192.0.2.2");
        for i in 0..LoginLimiter::PER_ADDRESS {
            drop(limiter.begin(here, &format!("user{i}")).expect("allowed"));
        }
        assert!(limiter.begin(here, "someone-new").is_err());
    }

    #[test]
    fn an_ipv6_client_is_one_address_per_64_network() {
        let limiter = LoginLimiter::default();
        for i in 0..LoginLimiter::PER_ACCOUNT {
            let from = addr(&format!("2001:db8:1:2::{i:x}"));
            drop(limiter.begin(from, "frank").expect("allowed"));
        }
        assert!(
            limiter
                .begin(addr("2001:db8:1:2:ffff::1"), "frank")
                .is_err(),
            "another address of the same /64 is the same client"
        );
        assert!(limiter.begin(addr("2001:db8:1:3::1"), "frank").is_ok());
    }

    #[test]
    fn password_checks_are_capped() {
        let limiter = LoginLimiter::new(2);
        let a = limiter.permit().expect("first");
        let _b = limiter.permit().expect("second");
        assert!(limiter.permit().is_none(), "a third waits");
        drop(a);
        assert!(limiter.permit().is_some());
    }
}
