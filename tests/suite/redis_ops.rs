//! The Redis wrappers on their own, against a real server.

use dataflow::{DecodeError, Field, StreamId};
use processor::redis::Letter;

use crate::support::harness::Test;
use crate::support::{payloads, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(a_dead_letter_that_fails_acknowledges_nothing, tokio = 2),
        trial!(
            acknowledging_loads_the_script_when_redis_has_forgotten_it,
            tokio = 2
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The dead-letter call the sink makes, for one refused entry read by consumer `c`.
async fn move_to_dead_letter(
    env: &mut TestEnv,
    letter: &Letter,
) -> Result<(), processor::redis::RedisError> {
    processor::redis::dead_letter(
        &mut env.redis,
        &env.stream,
        &env.group,
        &env.dead_letter,
        "c",
        std::slice::from_ref(letter),
    )
    .await
}

/// If the dead letter cannot be written, the entry must stay pending: never acknowledged
/// without its dead letter.
async fn a_dead_letter_that_fails_acknowledges_nothing() {
    let mut env = TestEnv::new("dlq_fails").await;
    let id = env
        .publish_fields(&[("payload".to_owned(), "[]".to_owned())])
        .await;
    processor::redis::ensure_group(&mut env.redis, &env.stream, &env.group, "0")
        .await
        .expect("group");
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&env.group)
        .arg("c")
        .arg("STREAMS")
        .arg(&env.stream)
        .arg(">")
        .query_async(&mut env.redis)
        .await
        .expect("read");
    assert_eq!(env.pending().await, 1);
    let bad = Letter {
        id: id.parse().expect("a stream id"),
        fields: vec![("payload".into(), "[]".into())],
        reason: DecodeError::new(Field::Payload, "not an object").to_string(),
    };

    // the dead-letter key holds a string: XADD fails at run time
    let _: () = redis::cmd("SET")
        .arg(&env.dead_letter)
        .arg("oops")
        .query_async(&mut env.redis)
        .await
        .expect("SET");
    let dead_letter = env.dead_letter.clone();
    assert!(move_to_dead_letter(&mut env, &bad).await.is_err());
    assert_eq!(env.pending().await, 1, "acknowledged without a dead letter");
    assert!(
        processor::redis::check_dead_letter_stream(&mut env.redis, &dead_letter)
            .await
            .is_err(),
        "start-up refuses a dead-letter key of another type"
    );

    // with a usable key, the same call moves and acknowledges it
    let _: () = redis::cmd("DEL")
        .arg(&dead_letter)
        .query_async(&mut env.redis)
        .await
        .expect("DEL");
    move_to_dead_letter(&mut env, &bad)
        .await
        .expect("dead letter");
    assert_eq!(env.pending().await, 0);
    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["source_id"], id);
    assert_eq!(letters[0]["error"], "payload: not an object");
}

/// The acknowledgement script is sent by its hash; a server that does not know it (its first
/// use, or Redis restarted, which forgets scripts) gets it loaded and the call repeated, and the
/// acknowledgement and the group's position come back as usual.
async fn acknowledging_loads_the_script_when_redis_has_forgotten_it() {
    let mut env = TestEnv::new("ack_noscript").await;
    let ids: Vec<StreamId> = env
        .publish(&payloads("d", 1, 3))
        .await
        .iter()
        .map(|id| id.parse().expect("a stream id"))
        .collect();
    let group = env.group.clone();
    env.create_group(&group, "0").await;
    env.deliver("c", 1).await;
    assert_eq!(env.pending().await, 3);

    for (acknowledge, oldest_pending) in [(&ids[..2], Some(ids[2])), (&ids[2..], None)] {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut env.redis)
            .await
            .expect("SCRIPT FLUSH");
        let (acked, position) =
            processor::redis::ack_and_locate(&mut env.redis, &env.stream, &env.group, acknowledge)
                .await
                .expect("acknowledged");
        assert_eq!(acked, acknowledge.len() as u64);
        let position = position.expect("the group exists");
        assert_eq!(position.last_delivered, ids[2]);
        assert_eq!(position.oldest_pending, oldest_pending);
    }
    assert_eq!(env.pending().await, 0);
}
