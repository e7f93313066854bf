//! Layer 4, the test suites, each a `cargo xtask` subcommand: [`echo`] (`guest-test`),
//! [`faults`] (`faults`) and [`bench`](mod@bench) (`bench`). A suite uses the layers below it
//! ([`crate::harness`], [`crate::guest`], [`crate::build`], [`crate::base`]), never
//! another suite.

pub mod bench;
pub mod echo;
pub mod faults;
