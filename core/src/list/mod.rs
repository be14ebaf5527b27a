//! List Messages in Bandwidth's shape: the rows we keep per recipient, the
//! query parameters (`query`), the SQL each shard runs (`plan`), the stored
//! columns and what an update writes (`columns`), opaque page
//! tokens, and the merge of per-shard pages into one stable,
//! keyset-paginated answer.
//!
//! Rows are sorted by an immutable key (the sort field, then message id and
//! recipient), so pages never repeat or skip a row while new events arrive:
//! a status change updates a row in place, and a new message lands at its
//! own key, outside pages already handed out.

pub mod columns;
mod page;
mod plan;
mod query;
mod row;

pub use columns::ColumnValue;
pub use page::*;
pub use plan::{count_plan, page_plan, total_count, SqlPlan};
pub use query::*;
pub use row::*;
