//! Calendar stores: vdir and Radicale folders of `.ics` files, and imipd's state.

pub mod answers;
pub mod apply;
mod bodies;
pub mod calendars;
pub mod collection;
mod hash;
pub mod layout;
pub mod patch;
pub mod process;
pub mod provenance;
mod queue_item;
pub mod scan;
pub mod state;
pub mod supersede;
pub mod watch;
pub mod write;
