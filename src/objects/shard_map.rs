//! `ShardMap`: one Durable Object that holds the shard layout in force
//! (`bw_ledger_core::shard`). The first Worker that asks records its
//! `LEDGER_SHARDS` as the layout; every Worker afterwards routes by the
//! recorded count, whatever its own var says, and a differing var is kept
//! as a request that `GET /shards` shows (the Worker logs it). Each ask is read and decided with
//! no await in between, so two Workers asking at once cannot both record.

use bw_ledger_core::shard::{current_requests, record, Ask, Layout, Layouts, Record, Requested};
use bw_ledger_core::wire::shard_map::{self, Resolve};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use crate::clock::now_ms;
use crate::object_call::{reply, request};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS layout (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        count INTEGER NOT NULL,
        since_ms INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS requested (
        count INTEGER PRIMARY KEY,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL
    )",
];

#[durable_object]
pub struct ShardMap {
    sql: SqlStorage,
}

impl DurableObject for ShardMap {
    fn new(state: State, _env: Env) -> Self {
        Self { sql: state.storage().sql() }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        for stmt in SCHEMA {
            self.sql.exec(stmt, None)?;
        }
        match shard_map::Call::from_path(&req.path()) {
            Some(shard_map::Call::Resolve) => {
                let ask = request::<Resolve>(&mut req).await?;
                self.resolve(ask, now_ms())?;
                reply::<Resolve>(&self.layouts(now_ms())?)
            }
            None => Response::error("unknown shard map method", 404),
        }
    }
}

impl ShardMap {
    fn held(&self) -> Result<Option<Layout>> {
        let rows: Vec<Layout> =
            self.sql.exec("SELECT count, since_ms AS sinceMs FROM layout WHERE id = 1", None)?.to_array()?;
        Ok(rows.into_iter().next())
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

    /// Records what the ask decides (`bw_ledger_core::shard::record`).
    fn resolve(&self, ask: Ask, now: i64) -> Result<()> {
        let noted = self.requested(Some(ask.count))?.into_iter().next();
        match record(self.held()?, noted, ask, now) {
            Record::InForce(layout) => {
                self.sql.exec(
                    "INSERT INTO layout (id, count, since_ms) VALUES (1, ?, ?)",
                    vec![i64::from(layout.count).into(), layout.since_ms.into()],
                )?;
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
        Ok(())
    }

    fn layouts(&self, now: i64) -> Result<Layouts> {
        let Some(in_force) = self.held()? else {
            return Err(worker::Error::RustError("no shard layout recorded".into()));
        };
        Ok(Layouts { in_force, requested: current_requests(self.requested(None)?, now) })
    }
}
