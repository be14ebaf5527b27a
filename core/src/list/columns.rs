//! A list row as stored: its columns, defined once by the fields of
//! `ListRow` (`row.rs`, through [`list_row!`]), each field's stored value,
//! and which columns an update must write.

use crate::status::RecipientState;

/// A list row column's stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnValue {
    Int(i64),
    Text(String),
    Null,
}

/// A field type's stored form: lists as JSON text, states by name.
pub trait Column: Sized {
    fn to_column(&self) -> ColumnValue;
    fn from_column(v: ColumnValue) -> Result<Self, String>;
}

impl Column for String {
    fn to_column(&self) -> ColumnValue {
        ColumnValue::Text(self.clone())
    }
    fn from_column(v: ColumnValue) -> Result<Self, String> {
        match v {
            ColumnValue::Text(s) => Ok(s),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl Column for i64 {
    fn to_column(&self) -> ColumnValue {
        ColumnValue::Int(*self)
    }
    fn from_column(v: ColumnValue) -> Result<Self, String> {
        match v {
            ColumnValue::Int(n) => Ok(n),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl Column for Option<String> {
    fn to_column(&self) -> ColumnValue {
        self.clone().map_or(ColumnValue::Null, ColumnValue::Text)
    }
    fn from_column(v: ColumnValue) -> Result<Self, String> {
        match v {
            ColumnValue::Null => Ok(None),
            other => String::from_column(other).map(Some),
        }
    }
}

impl Column for Option<i64> {
    fn to_column(&self) -> ColumnValue {
        self.map_or(ColumnValue::Null, ColumnValue::Int)
    }
    fn from_column(v: ColumnValue) -> Result<Self, String> {
        match v {
            ColumnValue::Null => Ok(None),
            other => i64::from_column(other).map(Some),
        }
    }
}

impl Column for Vec<String> {
    fn to_column(&self) -> ColumnValue {
        ColumnValue::Text(serde_json::to_string(self).unwrap_or_else(|_| "[]".into()))
    }
    fn from_column(v: ColumnValue) -> Result<Self, String> {
        serde_json::from_str(&String::from_column(v)?).map_err(|e| e.to_string())
    }
}

impl Column for RecipientState {
    fn to_column(&self) -> ColumnValue {
        ColumnValue::Text(self.as_str().to_owned())
    }
    fn from_column(v: ColumnValue) -> Result<Self, String> {
        let name = String::from_column(v)?;
        RecipientState::parse(&name).ok_or_else(|| format!("no state {name:?}"))
    }
}

/// Defines the list row struct and, from its fields, `ROW_COLUMNS` (the
/// column list, for SQL), `INSERT_ROW` (the insert statement), and
/// `values`/`from_values` (a row as its stored values, in that order).
macro_rules! list_row {
    (@join $first:ident $(, $rest:ident)*) => { concat!(stringify!($first) $(, ", ", stringify!($rest))*) };
    (@mark $x:ident) => { ", ?" };
    (@marks $first:ident $(, $rest:ident)*) => { concat!("?" $(, list_row!(@mark $rest))*) };
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }
    ) => {
        $(#[$meta])*
        pub struct $name { $($(#[$fmeta])* pub $field: $ty,)* }

        /// Every column of a list row, in order, for SQL.
        pub const ROW_COLUMNS: &str = list_row!(@join $($field),*);

        /// Inserts one list row: its values in `ROW_COLUMNS` order.
        pub const INSERT_ROW: &str = concat!(
            "INSERT INTO message_rows (", list_row!(@join $($field),*), ") VALUES (", list_row!(@marks $($field),*), ")"
        );

        impl $name {
            /// Every column and its stored value, in `ROW_COLUMNS` order.
            pub fn values(&self) -> Vec<(&'static str, $crate::list::columns::ColumnValue)> {
                use $crate::list::columns::Column;
                vec![$((stringify!($field), self.$field.to_column()),)*]
            }

            /// The row stored as `values`, in `ROW_COLUMNS` order.
            pub fn from_values(values: Vec<$crate::list::columns::ColumnValue>) -> Result<Self, String> {
                use $crate::list::columns::Column;
                let mut values = values.into_iter();
                Ok(Self {
                    $($field: Column::from_column(values.next().ok_or(concat!("no column ", stringify!($field)))?)
                        .map_err(|e| format!("{}: {e}", stringify!($field)))?,)*
                })
            }

            /// The columns of `self` that differ from `before` (the same
            /// message and recipient as stored): all an update has to write.
            /// SQLite rewrites an index only when an update sets one of its
            /// columns, and Cloudflare bills every index entry written, so a
            /// status change that leaves the time, sender and recipient alone
            /// costs the row and the status index, not all five.
            pub fn changed_since(&self, before: &Self) -> Vec<(&'static str, $crate::list::columns::ColumnValue)> {
                self.values().into_iter().zip(before.values()).filter(|(a, b)| a.1 != b.1).map(|(a, _)| a).collect()
            }
        }
    };
}
pub(crate) use list_row;
