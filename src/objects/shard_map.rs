//! `ShardMap`: one Durable Object that holds the shard layouts
//! (`bw_ledger_core::shard`). The first Worker that asks records its
//! `LEDGER_SHARDS` as the first layout. A Worker of a newer version asking
//! for another count records a layout that starts a lead from now; an
//! older version's count is kept as a request that `GET /shards` shows.
//! Layouts are only ever appended. Each ask is read and decided with no
//! await in between, so two Workers asking at once cannot both record.

use std::cell::Cell;

use bw_ledger_core::shard::{
    current_requests, record, valid_for, Ask, Held, Layout, Layouts, Record, Requested, LEAD_MS,
};
use bw_ledger_core::wire::shard_map::{self, Resolve};
use bw_ledger_core::wire::{target_registry, Empty};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use crate::clock::now_ms;
use crate::object_call::{call, reply, request};

const SCHEMA: &[&str] = &[
    // The one layout of the build before layouts could change; read once,
    // into `layouts`, below.
    "CREATE TABLE IF NOT EXISTS layout (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        count INTEGER NOT NULL,
        since_ms INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS layouts (
        since_ms INTEGER PRIMARY KEY,
        count INTEGER NOT NULL,
        version_ms INTEGER NOT NULL
    )",
    "INSERT INTO layouts (since_ms, count, version_ms)
        SELECT since_ms, count, 0 FROM layout WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM layouts)",
    "CREATE TABLE IF NOT EXISTS requested (
        count INTEGER PRIMARY KEY,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL
    )",
];

#[durable_object]
pub struct ShardMap {
    state: State,
    env: Env,
    sql: SqlStorage,
    lead_ms: i64,
    /// Whether this instance has applied `SCHEMA`.
    ready: Cell<bool>,
}

/// How soon a failed hand-over of the targets to a new layout is retried.
const RETRY_MS: i64 = 5_000;

impl DurableObject for ShardMap {
    fn new(state: State, env: Env) -> Self {
        Self { sql: state.storage().sql(), lead_ms: lead_ms(&env), ready: Cell::new(false), state, env }
    }

    /// Retries handing the targets to a new layout's shards.
    async fn alarm(&self) -> Result<Response> {
        self.hand_targets().await?;
        Response::empty()
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if !self.ready.get() {
            for stmt in SCHEMA {
                self.sql.exec(stmt, None)?;
            }
            self.ready.set(true);
        }
        match shard_map::Call::from_path(&req.path()) {
            Some(shard_map::Call::Resolve) => {
                let ask = request::<Resolve>(&mut req).await?;
                let now = now_ms();
                let mut held = self.held()?;
                let decided = self.resolve(&held, ask, now)?;
                if let Record::First(new) | Record::Next(new) = decided {
                    held.push(new);
                }
                // Read before the await: a layout another ask records
                // meanwhile starts after this answer's horizon.
                let answer = self.layouts(&held, now)?;
                if matches!(decided, Record::Next(_)) {
                    self.hand_targets().await?;
                }
                reply::<Resolve>(&answer)
            }
            None => Response::error("unknown shard map method", 404),
        }
    }
}

/// How far ahead a new layout starts: [`LEAD_MS`]; the fault-injection
/// build lets a test shorten it (`TEST_SHARD_LEAD_MS`).
fn lead_ms(_env: &Env) -> i64 {
    #[cfg(feature = "test-hooks")]
    if let Some(ms) = _env.var("TEST_SHARD_LEAD_MS").ok().and_then(|v| v.to_string().parse().ok()) {
        return ms;
    }
    LEAD_MS
}

impl ShardMap {
    fn held(&self) -> Result<Vec<Held>> {
        #[derive(serde::Deserialize)]
        struct Row {
            count: u32,
            since_ms: i64,
            version_ms: i64,
        }
        let rows: Vec<Row> =
            self.sql.exec("SELECT count, since_ms, version_ms FROM layouts ORDER BY since_ms", None)?.to_array()?;
        Ok(rows
            .into_iter()
            .map(|r| Held { layout: Layout { count: r.count, since_ms: r.since_ms }, version_ms: r.version_ms })
            .collect())
    }

    fn requested(&self, count: Option<u32>) -> Result<Vec<Requested>> {
        let (where_, args) = match count {
            Some(c) => (" WHERE count = ?", vec![i64::from(c).into()]),
            None => ("", vec![]),
        };
        let sql =
            format!("SELECT count, first_seen_ms AS firstSeenMs, last_seen_ms AS lastSeenMs FROM requested{where_}");
        self.sql.exec(&sql, Some(args))?.to_array()
    }

    /// A new layout's shards get the API-made forwarding targets before it
    /// starts (the registry hands its newest version to every shard of
    /// every layout); retried by the alarm until the registry has.
    async fn hand_targets(&self) -> Result<()> {
        if let Err(e) = call::<target_registry::Settle>(&self.env, target_registry::NAME, &Empty {}).await {
            crate::log::log_warn!("shard layout: targets not yet handed to the new layout's shards ({e:?}); retrying");
            self.state.storage().set_alarm(RETRY_MS).await?;
        }
        Ok(())
    }

    /// Records what the ask decides (`bw_ledger_core::shard::record`),
    /// given the layouts `held`, and says what that was.
    fn resolve(&self, held: &[Held], ask: Ask, now: i64) -> Result<Record> {
        let noted = self.requested(Some(ask.count))?.into_iter().next();
        let decided = record(held, noted, ask, now, self.lead_ms);
        match decided {
            Record::First(held) | Record::Next(held) => {
                self.sql.exec(
                    "INSERT INTO layouts (since_ms, count, version_ms) VALUES (?, ?, ?)",
                    vec![held.layout.since_ms.into(), i64::from(held.layout.count).into(), held.version_ms.into()],
                )?;
                if held.layout.since_ms > now {
                    crate::log::log_warn!(
                        "shard layout: {} shards from {} (asked by a newer version)",
                        held.layout.count,
                        bw_ledger_core::time::format_rfc3339_ms(held.layout.since_ms)
                    );
                }
            }
            Record::Request(r) => {
                self.sql.exec(
                    "INSERT INTO requested (count, first_seen_ms, last_seen_ms) VALUES (?, ?, ?)
                     ON CONFLICT (count) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
                    vec![i64::from(r.count).into(), r.first_seen_ms.into(), r.last_seen_ms.into()],
                )?;
            }
            Record::Nothing => {}
        }
        Ok(decided)
    }

    fn layouts(&self, held: &[Held], now: i64) -> Result<Layouts> {
        let layouts: Vec<Layout> = held.iter().map(|h| h.layout).collect();
        let Some(newest) = layouts.last().copied() else {
            return Err(worker::Error::RustError("no shard layout recorded".into()));
        };
        Ok(Layouts {
            // A build from before layouts changed routes everything by this.
            in_force: layouts[0],
            requested: current_requests(self.requested(None)?, newest.count, now),
            valid_ms: valid_for(self.lead_ms),
            horizon_ms: now + self.lead_ms,
            layouts,
        })
    }
}
