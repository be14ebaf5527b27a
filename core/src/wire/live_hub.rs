use super::*;

object! {
    binding = "LIVE";
    /// Changes to send to the subscribers that want them.
    Publish = "/publish": Vec<serde_json::Value> => Published;
}

/// The one hub's object name.
pub const NAME: &str = "live-hub";

/// Not a JSON method: `GET` with `Upgrade: websocket` and
/// `?sub=<Subscription JSON>&subprotocol=<bool>`.
pub const SUBSCRIBE_PATH: &str = "/subscribe";

/// What the hub did with a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Published {
    pub sent: u32,
    pub subscribers: u32,
}
