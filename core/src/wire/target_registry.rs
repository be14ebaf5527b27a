use super::*;
use crate::targets::health::Report as AttemptReport;
use crate::targets::{Listing, NewTarget, Outcome, TargetRecord, WithSecret};
pub use crate::targets::{PatchRequest, PausedRequest, TargetId};

object! {
    binding = "TARGET_REGISTRY";
    /// Every API-made target, without its secrets' values, and every
    /// target's health.
    List = "/list": Empty => Listing;
    /// Makes a target and its first secret.
    Create = "/create": NewTarget => Outcome<WithSecret>;
    /// Changes a target's url, events, rate or description.
    Patch = "/patch": PatchRequest => Outcome<TargetRecord>;
    /// A new secret; the old ones sign on for the overlap.
    Rotate = "/rotate": TargetId => Outcome<WithSecret>;
    /// Disables or enables a target of either source.
    SetPaused = "/paused": PausedRequest => Outcome<Empty>;
    /// Removes a target; shards dead-letter its pending forwards.
    Delete = "/delete": TargetId => Outcome<Empty>;
    /// A shard's attempts since its last report, per target.
    Report = "/report": Vec<AttemptReport> => Empty;
    /// Hands over what waits: the newest version to every shard of
    /// every layout (the shard map asks when it records a layout).
    Settle = "/settle": Empty => Empty;
}

/// The one registry's object name.
pub const NAME: &str = "targets";
