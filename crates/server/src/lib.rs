//! The `switchyard` binary's library half: configuration, key resolution, wiring and the CLI.
//!
//! `main.rs` only parses arguments and calls [`cli::run`]; tests build an [`app::App`] the
//! same way the binary does.

pub mod app;
pub mod cli;
pub mod config;
pub mod keys;
pub mod listen;
pub mod logging;
mod models_cmd;
mod run_cmd;
