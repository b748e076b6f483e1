//! `MemoryStore` against the public conformance suite, plus its own limits:
//! capacity, recovery through expiry, and concurrent use.

use std::time::{Duration, SystemTime};

use session_layer::{Created, ErrorKind, Id, MemoryStore, Record, Rotated, SessionStore, Updated};

mod conformance {
    session_layer::store_conformance_tests!(|| async { session_layer::MemoryStore::default() });
}

fn record(lifetime: Duration) -> Record {
    let now = SystemTime::now();
    Record {
        id: Id::generate().expect("os rng"),
        version: 1,
        data: b"{}"[..].into(),
        created_at: now,
        expires_at: now + lifetime,
    }
}

#[tokio::test]
async fn a_full_store_refuses_a_new_session() {
    let store = MemoryStore::with_capacity(3);
    let live: Vec<Record> = (0..3).map(|_| record(Duration::from_secs(60))).collect();
    for record in &live {
        assert_eq!(store.create(record).await.expect("room"), Created::Created);
    }

    let error = store
        .create(&record(Duration::from_secs(60)))
        .await
        .expect_err("the store is full");
    assert_eq!(error.kind(), ErrorKind::Capacity);
    assert_eq!(
        error.to_string(),
        "session store is full: every record in the memory store is live"
    );
    assert_eq!(store.len(), 3);
    for record in &live {
        assert!(
            store.load(&record.id).await.expect("load").is_some(),
            "a live session was evicted"
        );
    }

    // Logging one out makes room again.
    let first = live.first().expect("three records");
    store.delete(&first.id).await.expect("delete");
    let next = record(Duration::from_secs(60));
    assert_eq!(store.create(&next).await.expect("room"), Created::Created);
    assert_eq!(store.len(), 3);
}

#[tokio::test]
async fn a_retired_record_counts_against_the_capacity() {
    let store = MemoryStore::with_capacity(2);
    let old = record(Duration::from_secs(60));
    let other = record(Duration::from_secs(60));
    for record in [&old, &other] {
        assert_eq!(store.create(record).await.expect("room"), Created::Created);
    }
    let moved = Record {
        id: Id::generate().expect("os rng"),
        version: 2,
        ..old.clone()
    };
    let retired = Record {
        version: 2,
        data: b"retired"[..].into(),
        ..old.clone()
    };

    // Leaving a retired record needs a slot that a full store does not have.
    let refused = store.rotate(&old.id, 1, &moved, Some(&retired)).await;
    assert_eq!(
        refused.map_err(|error| error.kind()),
        Err(ErrorKind::Capacity)
    );
    assert_eq!(store.len(), 2);
    let kept = store.load(&old.id).await.expect("load").expect("intact");
    assert_eq!((kept.version, &kept.data), (1, &old.data));
    assert!(store.load(&moved.id).await.expect("load").is_none());

    // With a free slot it goes through, and both ids hold a record.
    store.delete(&other.id).await.expect("delete");
    let rotated = store.rotate(&old.id, 1, &moved, Some(&retired)).await;
    assert_eq!(rotated.expect("room"), Rotated::Rotated);
    assert_eq!(store.len(), 2);
    let left = store.load(&old.id).await.expect("load").expect("retired");
    assert_eq!((left.version, &left.data), (2, &retired.data));

    // A rotation that leaves nothing behind moves the record: no room needed.
    let onward = Record {
        id: Id::generate().expect("os rng"),
        version: 3,
        ..moved.clone()
    };
    let rotated = store.rotate(&moved.id, 2, &onward, None).await;
    assert_eq!(rotated.expect("no room needed"), Rotated::Rotated);
    assert_eq!(store.len(), 2);
}

#[tokio::test]
async fn a_full_store_recovers_once_records_expire() {
    let store = MemoryStore::with_capacity(50);
    for _ in 0..50 {
        let short = record(Duration::from_millis(50));
        assert_eq!(store.create(&short).await.expect("room"), Created::Created);
    }
    let refused = store.create(&record(Duration::from_secs(60))).await;
    assert_eq!(
        refused.map_err(|error| error.kind()),
        Err(ErrorKind::Capacity)
    );

    // Once they have expired, every one of them gives its place to a new
    // session: some are removed by the purge work of each create, the rest
    // when a create finds the store full.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let next: Vec<Record> = (0..50).map(|_| record(Duration::from_secs(60))).collect();
    for record in &next {
        let created = store.create(record).await;
        assert_eq!(
            created.expect("expired records make room"),
            Created::Created
        );
    }
    assert_eq!(store.len(), 50);
    for record in &next {
        assert!(store.load(&record.id).await.expect("load").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tasks_leave_the_expected_count() {
    const TASKS: usize = 16;
    const PER_TASK: usize = 500;
    let store = MemoryStore::default();
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut kept = Vec::new();
                for n in 0..PER_TASK {
                    let first = record(Duration::from_secs(60));
                    assert_eq!(store.create(&first).await.expect("room"), Created::Created);
                    let second = Record {
                        version: 2,
                        data: n.to_string().into_bytes().into(),
                        ..first.clone()
                    };
                    assert_eq!(
                        store.update(&second, 1).await.expect("update"),
                        Updated::Updated
                    );
                    if n % 2 == 0 {
                        store.delete(&first.id).await.expect("delete");
                    } else {
                        kept.push(second);
                    }
                }
                kept
            })
        })
        .collect();

    let mut kept = Vec::new();
    for handle in handles {
        kept.extend(handle.await.expect("task"));
    }
    assert_eq!(kept.len(), TASKS * PER_TASK / 2);
    assert_eq!(store.len(), kept.len());
    for record in &kept {
        let loaded = store
            .load(&record.id)
            .await
            .expect("load")
            .expect("kept record");
        assert_eq!((loaded.version, &loaded.data), (2, &record.data));
    }
}

#[tokio::test]
async fn clones_share_the_records() {
    let store = MemoryStore::with_capacity(10);
    let handle = store.clone();
    let record = record(Duration::from_secs(60));
    assert_eq!(store.create(&record).await.expect("room"), Created::Created);
    assert_eq!(handle.len(), 1);
    assert!(!handle.is_empty());
    assert_eq!(handle.capacity(), 10);
    assert!(handle.load(&record.id).await.expect("load").is_some());
    assert_eq!(MemoryStore::new().capacity(), MemoryStore::DEFAULT_CAPACITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_pass_the_capacity() {
    const CAPACITY: usize = 1_000;
    let store = MemoryStore::with_capacity(CAPACITY);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut created = 0;
                for _ in 0..250 {
                    match store.create(&record(Duration::from_secs(60))).await {
                        Ok(outcome) => {
                            assert_eq!(outcome, Created::Created, "a fresh id was taken");
                            created += 1;
                        }
                        Err(error) => assert_eq!(error.kind(), ErrorKind::Capacity),
                    }
                    assert!(store.len() <= CAPACITY);
                }
                created
            })
        })
        .collect();
    let mut created = 0;
    for handle in handles {
        created += handle.await.expect("task");
    }
    assert_eq!(created, CAPACITY);
    assert_eq!(store.len(), CAPACITY);
}
