use crate::targets::pace::{Slot as SlotReply, SlotRequest};

object! {
    binding = "TARGET_PACER";
    /// A send time that keeps the target's rate (`crate::targets::pace`).
    Slot = "/slot": SlotRequest => SlotReply;
}

/// Target `id`'s pacer: a digest, as for key guards.
pub fn name(id: &str) -> String {
    format!("pace-{}", &crate::identity::sha256_hex(id.as_bytes())[..32])
}
