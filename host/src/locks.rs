//! Named async locks (one per integration id) that exist only while someone
//! holds or waits for them: ids come from requests, and asking about any
//! number of unknown ids must leave nothing behind.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

type Map = Mutex<HashMap<String, Slot>>;

struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Holders and waiters; the slot goes when the last one leaves.
    users: usize,
}

#[derive(Default)]
pub struct KeyedLocks {
    map: Arc<Map>,
}

/// Holds the lock of one key; dropping it releases the lock and, when no
/// one else holds or waits for it, forgets the key.
pub struct KeyedGuard {
    // Fields drop in order: the lock is released before the use is counted
    // out, so a new lock for the key is never made while this one is held.
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _use: Use,
}

/// One holder or waiter of a key. Counted out on drop, also when a waiting
/// request is cancelled.
struct Use {
    map: Arc<Map>,
    key: String,
}

impl Drop for Use {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = map.get_mut(&self.key) {
            slot.users -= 1;
            if slot.users == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> KeyedGuard {
        let (lock, using) = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            let slot = map.entry(key.to_string()).or_insert_with(|| Slot { lock: Arc::default(), users: 0 });
            slot.users += 1;
            (slot.lock.clone(), Use { map: self.map.clone(), key: key.to_string() })
        };
        KeyedGuard { _guard: lock.lock_owned().await, _use: using }
    }

    /// Keys currently held or waited for.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn unknown_keys_leave_nothing_behind() {
        let locks = KeyedLocks::default();
        for _ in 0..10_000 {
            let _guard = locks.lock(&uuid::Uuid::new_v4().to_string()).await;
            assert_eq!(locks.len(), 1);
        }
        assert!(locks.is_empty(), "{} keys stayed", locks.len());
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_the_key_stays_while_someone_waits() {
        let locks = Arc::new(KeyedLocks::default());
        let first = locks.lock("a").await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _second = locks.lock("a").await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the second holder got in while the first held the lock");
        let _other = locks.lock("b").await;
        assert_eq!(locks.len(), 2);
        drop(first);
        waiter.await.unwrap();
        assert_eq!(locks.len(), 1, "only b is still held");
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_nothing_behind() {
        let locks = Arc::new(KeyedLocks::default());
        let held = locks.lock("a").await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _never = locks.lock("a").await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiter.abort();
        let _ = waiter.await;
        drop(held);
        assert!(locks.is_empty());
    }
}
