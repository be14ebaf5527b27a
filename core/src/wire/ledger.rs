use super::*;
use crate::idempotency;
use crate::lifecycle;
use crate::list::{ListQuery, ShardPage};
use crate::outbox::{OutboxItem, ReplayRequest, TargetStats};

object! {
    binding = "LEDGER";
    /// A group of callbacks stored in one call and one commit, one reply
    /// per batch in order (see [`crate::group`]).
    Ingest = "/ingest": Vec<IngestBatch> => Vec<IngestReply>;
    /// A message's events and identity conflicts.
    Message = "/message": MessageQuery => MessageRecords;
    /// A page of the shard's quarantine, most recently seen first,
    /// without bodies, and how many items it holds.
    QuarantineIndex = "/quarantine/index": crate::quarantine::QuarantinePageQuery => crate::quarantine::QuarantineIndex;
    /// The raw bodies of these quarantine items (by content hash).
    QuarantineBodies = "/quarantine/bodies": Vec<String> => Vec<crate::quarantine::QuarantineBody>;
    /// Reads a send's idempotency record as earlier builds kept it.
    IdemPeek = "/idempotency/peek": idempotency::IdemPeek => Option<idempotency::IdempotencyRecord>;
    /// One shard's page and count of a list query.
    List = "/list": ListQuery => ShardPage;
    /// Outbox counts per target.
    OutboxStats = "/outbox/stats": Empty => Vec<TargetStats>;
    /// Dead-lettered outbox items.
    OutboxDead = "/outbox/dead": DeadQuery => Vec<OutboxItem>;
    /// Queues outbox items again, keeping their webhook ids.
    OutboxReplay = "/outbox/replay": ReplayRequest => ReplayReply;
    /// A live subscriber is listening: publish again.
    LiveOn = "/live-on": Empty => Empty;
    /// One batch of retention (`crate::lifecycle`).
    Sweep = "/sweep": lifecycle::SweepRequest => lifecycle::SweepReply;
    /// One batch of an erasure by number.
    Erase = "/erase": lifecycle::EraseRequest => lifecycle::EraseReply;
    /// One page of an export.
    Export = "/export": lifecycle::ExportQuery => lifecycle::ExportPage;
    /// Recipient outcomes by hour and error codes (`crate::stats`).
    Outcomes = "/outcomes": crate::stats::OutcomeQuery => crate::stats::ShardOutcomes;
    /// The shard's figures for `GET /metrics`.
    Metrics = "/metrics": Empty => crate::metrics::ShardMetrics;
    /// One archived media file's row and its message's numbers.
    Media = "/media": crate::media::MediaQuery => crate::media::MediaLookup;
    /// Queues changes from elsewhere (the opt-out book) into the
    /// outbox, once per webhook id; answers the rows queued.
    QueueChanges = "/queue-changes": Vec<QueuedChange> => u32;
    /// The registry's targets at a version; an older one than the
    /// shard holds is ignored (`crate::targets`).
    Targets = "/targets": crate::targets::TargetSnapshot => Empty;
    /// Deletes dead-lettered outbox items of a target.
    OutboxDiscard = "/outbox/discard": crate::outbox::DiscardRequest => DiscardReply;
}

/// Shard `index`'s object name (`crate::shard` picks the index).
pub use crate::shard::shard_name as name;
