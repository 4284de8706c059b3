//! The layers of a backend's stack, one file each; [`crate::stack`] puts them in order.

mod call_budget;
mod record;

pub use call_budget::{CallBudget, CallBudgetLayer};
pub use record::{Record, RecordLayer};
