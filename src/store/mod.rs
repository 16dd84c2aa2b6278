//! Calendar stores: vdir and Radicale folders of `.ics` files, and imipd's state.

pub mod layout;
pub mod patch;
pub mod state;
pub mod write;
