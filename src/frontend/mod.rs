//! Where the client's messages enter and leave the router.
//!
//! `stdio` is the MCP client's side: it reads and frames stdin, and it is the only code
//! that ever writes to stdout. `fd` gives both a non-blocking descriptor. Routing
//! decisions are the router's; this module only moves bytes and reports bad input.

pub mod fd;
pub mod stdio;
