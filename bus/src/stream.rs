//! One append-only stream with positions, blocking reads and trimming.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

/// A position in a stream: the first entry is at 1; 0 means "before everything". 128
/// bits, so a Redis stream entry id (milliseconds, sequence) is a position too.
pub type Position = u128;

/// An append-only stream. Readers ask for entries from a position; entries stay until
/// trimmed, so a reader may re-read from its last checkpoint after a failure.
#[derive(Debug)]
pub struct Stream<T> {
    inner: Mutex<Inner<T>>,
    notify: Notify,
}

#[derive(Debug)]
struct Inner<T> {
    /// Position of `entries[0]`.
    first: Position,
    entries: VecDeque<T>,
    closed: bool,
}

impl<T> Default for Stream<T> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                first: 1,
                entries: VecDeque::new(),
                closed: false,
            }),
            notify: Notify::new(),
        }
    }
}

impl<T: Clone> Stream<T> {
    /// Appends an entry and returns its position.
    pub fn append(&self, item: T) -> Position {
        let pos = {
            let mut inner = self.lock();
            assert!(!inner.closed, "append to a closed stream");
            inner.entries.push_back(item);
            inner.first + inner.entries.len() as Position - 1
        };
        self.notify.notify_waiters();
        pos
    }

    /// Position of the last entry appended (0 when none).
    pub fn head(&self) -> Position {
        let inner = self.lock();
        inner.first + inner.entries.len() as Position - 1
    }

    /// Up to `max` entries from position `from` on, waiting for at least one. `None`
    /// once the stream is closed and `from` is past its end.
    ///
    /// # Panics
    /// When `from` was already trimmed: a reader must never ask for what it has
    /// acknowledged as durable.
    pub async fn read(&self, from: Position, max: usize) -> Option<Vec<(Position, T)>> {
        loop {
            let notified = self.notify.notified();
            {
                let inner = self.lock();
                assert!(from >= inner.first, "read below the trimmed start of a stream");
                let skip = (from - inner.first) as usize;
                if skip < inner.entries.len() {
                    return Some(
                        inner
                            .entries
                            .iter()
                            .skip(skip)
                            .take(max.max(1))
                            .enumerate()
                            .map(|(i, e)| (from + i as Position, e.clone()))
                            .collect(),
                    );
                }
                if inner.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Forgets entries at positions `<= upto`: the consumer has made them durable.
    pub fn trim(&self, upto: Position) {
        let mut inner = self.lock();
        while inner.first <= upto && inner.entries.pop_front().is_some() {
            inner.first += 1;
        }
    }

    /// No more appends; readers drain what is left and then get `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_reader_waits_for_appends_and_sees_the_close() {
        let s = Arc::new(Stream::<u32>::default());
        let reader = {
            let s = s.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut from = 1;
                while let Some(batch) = s.read(from, 2).await {
                    for (pos, v) in batch {
                        seen.push(v);
                        from = pos + 1;
                    }
                }
                seen
            })
        };
        for i in 0..5 {
            s.append(i);
            tokio::task::yield_now().await;
        }
        s.close();
        assert_eq!(reader.await.unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn trimmed_entries_are_gone_and_the_rest_rereads() {
        let s = Stream::<u32>::default();
        for i in 10..15 {
            s.append(i);
        }
        s.trim(2);
        assert_eq!(s.head(), 5);
        let again = s.read(3, 10).await.unwrap();
        assert_eq!(again, vec![(3, 12), (4, 13), (5, 14)]);
    }
}
