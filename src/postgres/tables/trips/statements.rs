//! The trips writer's statements, prepared once per connection. Each takes arrays (one element
//! per device, or per row) so an epoch costs the same round trips whatever its devices.

use tokio_postgres::{Client, Statement};

use super::rows::{LOCK_REMEMBERED, RUN_ARRAYS, RUN_COLUMNS};

/// The statements, prepared on one connection.
pub(super) struct Statements {
    /// Each device's trip lock, and its version where it moved (`LOCK_REMEMBERED`).
    pub(super) lock: Statement,
    /// Per device: the latest stored run (trip or short run) starting before the epoch's first
    /// fix, with its kind and `open`; the latest end among stored runs starting from that fix to
    /// the right-hand probe (only probed for when one of them starts among the epoch's fixes:
    /// else it is the first one's, or there is none); the newest fix after the epoch's last
    /// (only looked for when `$5`, the device's newest fix as the writer remembers it, is NULL);
    /// the first of those stored runs, with its kind and `open`.
    pub(super) neighbours: Statement,
    /// The fixes of each device's region.
    pub(super) fixes: Statement,
    /// Per device, for new fixes `$3..=$4` inside its run `$2..=$5`: the stored fixes from the
    /// last one before them to the first one after (see [`dataflow::trips::inside`]).
    pub(super) around: Statement,
    /// The stored runs (both kinds) starting in each device's region.
    pub(super) stored: Statement,
    /// Inserts or updates trips (in place: the key does not change).
    pub(super) upsert_trips: Statement,
    /// Inserts or updates short runs.
    pub(super) upsert_runs: Statement,
    /// Deletes trips by key.
    pub(super) delete_trips: Statement,
    /// Deletes short runs by key.
    pub(super) delete_runs: Statement,
    /// Closes trips by key.
    pub(super) close: Statement,
}

/// `SELECT` list of a run's columns from alias `r`.
fn columns(alias: &str) -> String {
    RUN_COLUMNS
        .split(", ")
        .map(|column| format!("{alias}.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The body of a lateral subquery giving, per device `n.d`, the first stored run (trip or short
/// run, with its kind and `open`) by `r.start_ts` in `order` (`ASC`, `DESC`) among those
/// matching `condition` (over `r`).
fn nearest_run(condition: &str, order: &str) -> String {
    let r = columns("r");
    format!(
        "(SELECT true AS trip, {r}, r.open FROM trips r
           WHERE r.device_id = n.d AND {condition} ORDER BY r.start_ts {order} LIMIT 1)
         UNION ALL
         (SELECT false, {r}, false FROM trip_runs r
           WHERE r.device_id = n.d AND {condition} ORDER BY r.start_ts {order} LIMIT 1)
         ORDER BY start_ts {order} LIMIT 1"
    )
}

/// Inserts runs from `RunArrays` into `table` (`trips` with `open`, or `trip_runs`), updating a
/// row whose key is there already.
pub(super) fn upsert(table: &str, open: bool) -> String {
    let updates: Vec<String> = RUN_COLUMNS
        .split(", ")
        .filter(|column| *column != "start_ts")
        .chain(open.then_some("open"))
        .map(|column| format!("{column} = excluded.{column}"))
        .collect();
    let (open_column, open_array) = if open {
        (", open", ", $11::bool[]")
    } else {
        ("", "")
    };
    format!(
        "INSERT INTO {table} (device_id, {RUN_COLUMNS}{open_column}) \
         SELECT * FROM unnest({RUN_ARRAYS}{open_array}) \
         ON CONFLICT (device_id, start_ts) DO UPDATE SET {}",
        updates.join(", ")
    )
}

fn delete(table: &str) -> String {
    format!(
        "DELETE FROM {table} t USING unnest($1::text[], $2::timestamptz[]) AS k(d, s) \
         WHERE t.device_id = k.d AND t.start_ts = k.s"
    )
}

impl Statements {
    pub(super) async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        let r = columns("r");
        let l = columns("l");
        let f = columns("f");
        // the stored runs starting from the epoch's first fix to the right-hand probe
        let reach = "r.start_ts >= n.a AND r.start_ts <= n.p";
        let left = nearest_run("r.start_ts < n.a", "DESC");
        let first = nearest_run(reach, "ASC");
        Ok(Statements {
            lock: client.prepare(LOCK_REMEMBERED).await?,
            neighbours: client
                .prepare(&format!(
                    "SELECT n.i, l.trip, {l}, l.open,
                            CASE WHEN f.start_ts IS NULL THEN NULL
                                 WHEN f.start_ts > n.b THEN f.end_ts
                                 ELSE (SELECT max(x.end_ts) FROM (
                                 SELECT r.end_ts FROM trips r WHERE r.device_id = n.d AND {reach}
                                 UNION ALL
                                 SELECT r.end_ts FROM trip_runs r
                                  WHERE r.device_id = n.d AND {reach}) AS x) END,
                            CASE WHEN n.k IS NULL THEN (SELECT max(p.ts) FROM positions p
                              WHERE p.device_id = n.d AND p.ts > n.b) END,
                            f.trip, {f}, f.open
                     FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[],
                                 $4::timestamptz[], $5::timestamptz[])
                          WITH ORDINALITY AS n(d, a, b, p, k, i)
                     LEFT JOIN LATERAL ({left}) AS l ON true
                     LEFT JOIN LATERAL ({first}) AS f ON true"
                ))
                .await?,
            fixes: client
                .prepare(
                    "SELECT n.i, p.ts, p.latitude, p.longitude, p.speed \
                     FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) \
                          WITH ORDINALITY AS n(d, f, e, i) \
                     JOIN positions p ON p.device_id = n.d AND p.ts >= n.f AND p.ts <= n.e \
                     ORDER BY n.i, p.ts",
                )
                .await?,
            around: client
                .prepare(
                    "SELECT n.i, p.ts, p.latitude, p.longitude, p.speed \
                     FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], \
                                 $4::timestamptz[], $5::timestamptz[]) \
                          WITH ORDINALITY AS n(d, s, a, b, l, i) \
                     CROSS JOIN LATERAL ( \
                       (SELECT p.ts, p.latitude, p.longitude, p.speed FROM positions p \
                         WHERE p.device_id = n.d AND p.ts >= n.s AND p.ts < n.a \
                         ORDER BY p.ts DESC LIMIT 1) \
                       UNION ALL \
                       SELECT p.ts, p.latitude, p.longitude, p.speed FROM positions p \
                        WHERE p.device_id = n.d AND p.ts >= n.a AND p.ts <= n.b \
                       UNION ALL \
                       (SELECT p.ts, p.latitude, p.longitude, p.speed FROM positions p \
                         WHERE p.device_id = n.d AND p.ts > n.b AND p.ts <= n.l \
                         ORDER BY p.ts LIMIT 1)) AS p \
                     ORDER BY n.i, p.ts",
                )
                .await?,
            stored: client
                .prepare(&format!(
                    "SELECT n.i, true, {r}, r.open
                     FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
                          WITH ORDINALITY AS n(d, f, e, i)
                     JOIN trips r ON r.device_id = n.d AND r.start_ts >= n.f AND r.start_ts <= n.e
                     UNION ALL
                     SELECT n.i, false, {r}, false
                     FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
                          WITH ORDINALITY AS n(d, f, e, i)
                     JOIN trip_runs r ON r.device_id = n.d AND r.start_ts >= n.f
                      AND r.start_ts <= n.e"
                ))
                .await?,
            upsert_trips: client.prepare(&upsert("trips", true)).await?,
            upsert_runs: client.prepare(&upsert("trip_runs", false)).await?,
            delete_trips: client.prepare(&delete("trips")).await?,
            delete_runs: client.prepare(&delete("trip_runs")).await?,
            close: client
                .prepare(
                    "UPDATE trips t SET open = false \
                     FROM unnest($1::text[], $2::timestamptz[]) AS k(d, s) \
                     WHERE t.device_id = k.d AND t.start_ts = k.s AND t.open",
                )
                .await?,
        })
    }
}
