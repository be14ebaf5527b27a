use crate::shard::{Ask, Layouts};

object! {
    binding = "SHARD_MAP";
    /// Every layout, after recording the asker's count: as the first
    /// layout if none is yet, as a new one (starting a lead later) if a
    /// newer version asks for another count, else as a request.
    Resolve = "/resolve": Ask => Layouts;
}

/// The one map's object name.
pub const NAME: &str = "shard-map";
